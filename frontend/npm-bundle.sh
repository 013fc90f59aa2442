#!/usr/bin/env bash
# Unpack a browser bundle from an npm package tarball into a folder, integrity-checked and
# idempotent (used by fetch-thebe.sh and tests/browser/fetch-thebe-core.sh).
#
#   npm-bundle.sh NAME VERSION INTEGRITY LIBDIR MARKER DEST [--check]
#
# `npm pack NAME@VERSION` (the package tarball alone: `npm install` would resolve the whole
# dependency tree, and not every dependency resolves from every registry), its sha512 checked
# against INTEGRITY (npm's `dist.integrity`), then the files of the package's LIBDIR (a
# self-contained bundle; source maps left out) and its package.json go to DEST, replaced in
# one step. DEST/MARKER and a stamp naming NAME@VERSION and INTEGRITY say it is in place;
# --check only tells that (exit status 0/1).
set -euo pipefail
name=$1 version=$2 integrity=$3 libdir=$4 marker=$5 dest=$6
stamp="$dest/.package"
if [ -f "$dest/$marker" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$name@$version $integrity" ]; then
  exit 0
fi
[ "${7:-}" = "--check" ] && exit 1
command -v npm >/dev/null || { echo "npm-bundle.sh: npm is needed (apt-get install -y npm)" >&2; exit 1; }
echo "== $name $version (npm pack) -> $dest"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$name@$version" >/dev/null)
tarball="$tmp/$name-$version.tgz"
got="sha512-$(node -e 'const c=require("crypto"),f=require("fs");
  process.stdout.write(c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$tarball")"
if [ "$got" != "$integrity" ]; then
  echo "npm-bundle.sh: $name-$version.tgz has integrity $got, expected $integrity" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$tmp" "package/$libdir" package/package.json
rm -rf "$dest.new"
mkdir -p "$dest.new"
(cd "$tmp/package/$libdir" && find . -maxdepth 1 -type f ! -name '*.map' -exec cp {} "$dest.new/" \;)
cp "$tmp/package/package.json" "$dest.new/package.json"
echo "$name@$version $integrity" >"$dest.new/.package"
rm -rf "$dest"
mv "$dest.new" "$dest"
echo "$name $version: $(ls "$dest" | wc -l) files in $dest"
