#!/usr/bin/env bash
# Set up binderlab on one Debian/Ubuntu machine, idempotently:
#   - apt: the Docker engine (docker.io), git, Node.js + npm, python3-venv (when missing)
#   - a running Docker engine (systemd when present, else dockerd in the background)
#   - configurable-http-proxy (npm, global)
#   - thebe's browser bundle (npm pack) in frontend/static/vendor/thebe/
#   - binderlab in <repo>/.venv
# Then: .venv/bin/binderlab up
#
# BINDERLAB_PIP_ARGS replaces what is installed (default: the checkout, "."), e.g.
# BINDERLAB_PIP_ARGS='-e .[test]' for development.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
export DEBIAN_FRONTEND=noninteractive
step() { printf '\n== %s\n' "$*"; }

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v git >/dev/null || missing+=(git)
command -v npm >/dev/null || missing+=(nodejs npm)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  step "apt-get install ${missing[*]}"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! docker info >/dev/null 2>&1; then
  step "starting the Docker engine"
  if [ -d /run/systemd/system ]; then
    systemctl enable --now docker
  else
    nohup dockerd >/var/log/dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/dockerd.log" >&2; exit 1; }
fi

if ! command -v configurable-http-proxy >/dev/null; then
  step "configurable-http-proxy (npm)"
  npm install -g --no-fund --no-audit configurable-http-proxy@5
fi

# thebe's browser bundle, served at <host>/static/vendor/thebe/ for course pages (fetched
# before the install, so a wheel built from the checkout carries it too)
if ! bash "$top/frontend/fetch-thebe.sh" --check 2>/dev/null; then
  bash "$top/frontend/fetch-thebe.sh"
  rm -f "$top/.venv/.binderlab-installed"  # a non-editable install must pick it up
fi

step "binderlab in $top/.venv"
[ -x "$top/.venv/bin/python" ] || python3 -m venv "$top/.venv"
cd "$top"
read -r -a pip_args <<<"${BINDERLAB_PIP_ARGS:-.}"
stamp="$top/.venv/.binderlab-installed"
if [ ! -f "$stamp" ] || [ "$top/pyproject.toml" -nt "$stamp" ] || \
   [ "$(cat "$stamp")" != "${pip_args[*]}" ]; then
  "$top/.venv/bin/python" -m pip install -q --upgrade pip
  "$top/.venv/bin/python" -m pip install -q "${pip_args[@]}"
  echo "${pip_args[*]}" >"$stamp"
fi
echo "binderlab $("$top/.venv/bin/binderlab" --version) is installed: run .venv/bin/binderlab up"
