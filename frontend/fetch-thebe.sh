#!/usr/bin/env bash
# Put thebe's browser bundle where binderlab serves it: frontend/static/vendor/thebe/
# (-> <host>/static/vendor/thebe/index.js), so course pages load thebe from the binderlab
# host they launch on. Idempotent; called by deploy/docker/setup.sh, and by the browser tests
# when it is missing. Never committed (see .gitignore). `fetch-thebe.sh --check` only tells
# (exit status 0/1) whether this version is in place.
#
# From the npm registry with `npm pack` (the package tarball, integrity-checked): `npm install
# thebe` would resolve thebe's whole dependency tree, and one of them does not resolve from
# every registry, but the tarball's lib/ already is a self-contained bundle (index.js, its
# chunks, thebe.css). Source maps and type declarations are left out.
set -euo pipefail
version=0.9.3
integrity="sha512-Rb/7kVhtlffXra3kIe7OuIGE7awsm2/fGWxw21DiNfnWLnUQiDl9AWqYdshPwZPG/5DzLpsJRPix2xtCPtJmQQ=="
dest="$(cd "$(dirname "$0")" && pwd)/static/vendor/thebe"
stamp="$dest/.thebe-package"

if [ -f "$dest/index.js" ] && [ "$(cat "$stamp" 2>/dev/null)" = "thebe@$version $integrity" ]; then
  exit 0
fi
[ "${1:-}" = "--check" ] && exit 1  # --check: only say (exit status) whether it is in place
command -v npm >/dev/null || { echo "fetch-thebe.sh: npm is needed (apt-get install -y npm)" >&2; exit 1; }
echo "== thebe $version (npm pack) -> $dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "thebe@$version" >/dev/null)
tarball="$tmp/thebe-$version.tgz"
got="sha512-$(node -e 'const c=require("crypto"),f=require("fs");
  process.stdout.write(c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$tarball")"
if [ "$got" != "$integrity" ]; then
  echo "fetch-thebe.sh: thebe-$version.tgz has integrity $got, expected $integrity" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$tmp" package/lib package/package.json
rm -rf "$dest.new"
mkdir -p "$dest.new"
(cd "$tmp/package/lib" && find . -maxdepth 1 -type f ! -name '*.map' -exec cp {} "$dest.new/" \;)
cp "$tmp/package/package.json" "$dest.new/package.json"
echo "thebe@$version $integrity" >"$dest.new/.thebe-package"
rm -rf "$dest"
mv "$dest.new" "$dest"
echo "thebe $version: $(ls "$dest" | wc -l) files in $dest"
