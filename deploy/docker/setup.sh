#!/usr/bin/env bash
# Set up binderlab on one Debian/Ubuntu machine, idempotently:
#   - apt: the Docker engine (docker.io), git, Node.js + npm, python3-venv (when missing)
#   - a running Docker engine (systemd when present, else dockerd in the background)
#   - a `docker buildx` that builds (repo2docker needs it): the one installed, else the
#     distribution's package (docker-buildx-plugin from Docker's repository, docker-buildx
#     from Debian 13 / Ubuntu 24.04), else binderlab's BuildKit bridge (Debian 12's
#     docker.io 20.10, which packages no buildx); then a test build proves it works
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

# ---- a builder: repo2docker runs `docker buildx build` with the `docker` on PATH ----------
bridge_src="$top/deploy/docker/docker-buildx-bridge"
bridge_dst=/usr/local/lib/docker/cli-plugins/docker-buildx
is_bridge() { grep -q "binderlab's BuildKit bridge" "$1" 2>/dev/null; }
install_bridge() {
  # atomically, so a build running at this moment never sees half a file
  mkdir -p "$(dirname "$bridge_dst")"
  install -m 0755 "$bridge_src" "$bridge_dst.new"
  mv -f "$bridge_dst.new" "$bridge_dst"
}
if [ -e "$bridge_dst" ] && is_bridge "$bridge_dst" && ! cmp -s "$bridge_src" "$bridge_dst"; then
  step "updating binderlab's BuildKit bridge ($bridge_dst)"
  install_bridge
fi
# a packaged buildx wins over the bridge, also later: add Docker's apt repository, run this
# script again, and the bridge makes way for docker-buildx-plugin
if ! docker buildx version >/dev/null 2>&1 || is_bridge "$bridge_dst"; then
  package=""
  for candidate in docker-buildx-plugin docker-buildx; do
    if apt-cache policy "$candidate" 2>/dev/null | grep -q '^ *Candidate: [0-9]'; then
      package=$candidate; break
    fi
  done
  if [ -n "$package" ]; then
    step "docker buildx: apt-get install $package"
    apt-get install -y -q --no-install-recommends "$package"
    if is_bridge "$bridge_dst"; then rm -f "$bridge_dst"; fi
  elif ! docker buildx version >/dev/null 2>&1; then
    step "docker buildx: binderlab's BuildKit bridge (no buildx package for this system)"
    [ -x /usr/bin/docker ] || apt-get install -y -q --no-install-recommends docker.io
    install_bridge
  fi
fi
if ! buildx=$(docker buildx version 2>&1); then
  echo "docker buildx does not work: $buildx" >&2
  echo "Install docker-buildx-plugin (Docker's repository) or docker-buildx, or see the" \
       "README's Set-up section." >&2
  exit 1
fi
echo "docker buildx: $buildx"
# a build with BuildKit (FROM scratch: nothing to pull), removed again
check_dir=$(mktemp -d)
check_tag="binderlab-setup-check:$$"
printf 'ok\n' >"$check_dir/ok"
printf 'FROM scratch\nCOPY --chmod=0644 ok /ok\n' >"$check_dir/Dockerfile"
if ! out=$(docker buildx build --progress plain --load --tag "$check_tag" "$check_dir" 2>&1); then
  rm -rf "$check_dir"
  printf '%s\n' "$out" | tail -n 20 >&2
  echo "A test build with docker buildx failed (above)." >&2
  exit 1
fi
rm -rf "$check_dir"
docker image rm "$check_tag" >/dev/null
echo "docker buildx builds"

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
