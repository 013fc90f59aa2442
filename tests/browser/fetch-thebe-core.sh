#!/usr/bin/env bash
# thebe-core's browser bundle for the course-page test (what MyST's live cells are built on):
# tests/browser/vendor/thebe-core/ (git-ignored). Idempotent; `--check` only tells (exit
# status) whether this version is in place. Called by tests/harness/setup.sh.
#
# From the npm registry with `npm pack` (the tarball, integrity-checked), as
# frontend/fetch-thebe.sh does for thebe: `npm install thebe-core` would resolve its whole
# JupyterLab dependency tree, but dist/lib/ already holds a self-contained bundle
# (thebe-core.min.js + chunks + thebe-core.css) that sets window.thebeCore.
set -euo pipefail
version=0.5.0
integrity="sha512-LIAbySgyoH8PPojNOwTwnjHta332CXtqVMPtgC3wBuIkHkgQpJYZUkWGvZR+T6pkgmjIei/WkKMFtV1jstXwWA=="
dest="$(cd "$(dirname "$0")" && pwd)/vendor/thebe-core"
stamp="$dest/.package"

if [ -f "$dest/thebe-core.min.js" ] && [ "$(cat "$stamp" 2>/dev/null)" = "thebe-core@$version $integrity" ]; then
  exit 0
fi
[ "${1:-}" = "--check" ] && exit 1
command -v npm >/dev/null || { echo "fetch-thebe-core.sh: npm is needed" >&2; exit 1; }
echo "== thebe-core $version (npm pack) -> $dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "thebe-core@$version" >/dev/null)
tarball="$tmp/thebe-core-$version.tgz"
got="sha512-$(node -e 'const c=require("crypto"),f=require("fs");
  process.stdout.write(c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$tarball")"
if [ "$got" != "$integrity" ]; then
  echo "fetch-thebe-core.sh: thebe-core-$version.tgz has integrity $got, expected $integrity" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$tmp" package/dist/lib package/package.json
rm -rf "$dest.new"
mkdir -p "$dest.new"
(cd "$tmp/package/dist/lib" && find . -maxdepth 1 -type f ! -name '*.map' -exec cp {} "$dest.new/" \;)
cp "$tmp/package/package.json" "$dest.new/package.json"
echo "thebe-core@$version $integrity" >"$dest.new/.package"
rm -rf "$dest"
mv "$dest.new" "$dest"
echo "thebe-core $version: $(ls "$dest" | wc -l) files in $dest"
