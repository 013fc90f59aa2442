#!/usr/bin/env bash
# Put thebe's browser bundle where binderlab serves it: frontend/static/vendor/thebe/
# (-> <host>/static/vendor/thebe/index.js), so course pages load thebe from the binderlab
# host they launch on. Idempotent; called by deploy/docker/setup.sh, and by the browser tests
# when it is missing. Never committed (see .gitignore). `fetch-thebe.sh --check` only tells
# (exit status 0/1) whether this version is in place.
#
# From the npm registry with `npm pack` (npm-bundle.sh: the package tarball, integrity-checked):
# the tarball's lib/ already is a self-contained bundle (index.js, its chunks, thebe.css).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/npm-bundle.sh" thebe 0.9.3 \
  "sha512-Rb/7kVhtlffXra3kIe7OuIGE7awsm2/fGWxw21DiNfnWLnUQiDl9AWqYdshPwZPG/5DzLpsJRPix2xtCPtJmQQ==" \
  lib index.js "$here/static/vendor/thebe" "$@"
