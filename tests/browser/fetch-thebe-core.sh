#!/usr/bin/env bash
# thebe-core's browser bundle for the course-page test (what MyST's live cells are built on):
# tests/browser/vendor/thebe-core/ (git-ignored). Idempotent; `--check` only tells (exit
# status) whether this version is in place. Called by tests/harness/setup.sh.
#
# From the npm registry with `npm pack` (frontend/npm-bundle.sh, as for thebe): the tarball's
# dist/lib/ holds a self-contained bundle (thebe-core.min.js + chunks + thebe-core.css) that
# sets window.thebeCore.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/../../frontend/npm-bundle.sh" thebe-core 0.5.0 \
  "sha512-LIAbySgyoH8PPojNOwTwnjHta332CXtqVMPtgC3wBuIkHkgQpJYZUkWGvZR+T6pkgmjIei/WkKMFtV1jstXwWA==" \
  dist/lib thebe-core.min.js "$here/vendor/thebe-core" "$@"
