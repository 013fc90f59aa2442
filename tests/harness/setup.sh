#!/usr/bin/env bash
# Provide everything binderlab's tests need on a Debian/Ubuntu machine, idempotently:
#   apt packages (Docker engine, debootstrap, git, Node.js), a running dockerd,
#   configurable-http-proxy (npm), the project in .venv with its test extras,
#   and the local base image the test repositories start FROM.
# Each step checks first and skips what is already there, so a second run takes seconds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
export DEBIAN_FRONTEND=noninteractive

step() { printf '\n== %s\n' "$*"; }

need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
[ -x /usr/bin/docker ] || need_apt+=(docker.io)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v git >/dev/null || need_apt+=(git)
command -v npm >/dev/null || need_apt+=(nodejs npm)
command -v chromium >/dev/null || need_apt+=(chromium)
python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "apt-get install ${need_apt[*]}"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

step "Docker engine"
bash "$here/dockerd.sh"
docker version --format 'engine {{.Server.Version}}'

if ! command -v configurable-http-proxy >/dev/null; then
  step "configurable-http-proxy (npm)"
  npm install -g --no-fund --no-audit configurable-http-proxy@5
fi

step "binderlab and its test tools in $top/.venv"
[ -x "$top/.venv/bin/python" ] || python3 -m venv "$top/.venv"
stamp="$top/.venv/.binderlab-installed"
if [ ! -f "$stamp" ] || [ "$top/pyproject.toml" -nt "$stamp" ]; then
  "$top/.venv/bin/python" -m pip install -q --upgrade pip
  "$top/.venv/bin/python" -m pip install -q -e "$top[test]"
  touch "$stamp"
fi

if [ ! -d "$top/tests/browser/node_modules/playwright-core" ] || \
   [ "$top/tests/browser/package.json" -nt "$top/tests/browser/node_modules" ]; then
  step "browser test tools (npm: playwright-core, thebe)"
  (cd "$top/tests/browser" && npm install --no-fund --no-audit --ignore-scripts)
fi

step "test base image"
bash "$here/base-image.sh"
