#!/usr/bin/env bash
# Provide everything binderlab's tests need on a Debian/Ubuntu machine, idempotently:
#   the test Docker engine (with the NVIDIA hook stub on its PATH), what an operator's
#   setup installs (deploy/docker/setup.sh, here with the test extras, editable),
#   debootstrap and Chromium, the browser-test npm packages, and the local base image the
#   test repositories start FROM. Each step checks first, so a second run takes seconds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
export DEBIAN_FRONTEND=noninteractive
step() { printf '\n== %s\n' "$*"; }

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
[ -x /usr/bin/docker ] || missing+=(docker.io)  # the BuildKit bridge (buildx) calls this client
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v chromium >/dev/null || missing+=(chromium)
command -v docker-registry >/dev/null || missing+=(docker-registry)  # registry tests
command -v htpasswd >/dev/null || missing+=(apache2-utils)  # registry auth (kubebuilder tests)
# deploy/docker tests: systemd's unit checker, nginx -t and logrotate, test certificates
command -v systemd-analyze >/dev/null || missing+=(systemd)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -x /usr/sbin/logrotate ] || missing+=(logrotate)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  step "apt-get install ${missing[*]}"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  # the tests run their own registry on 127.0.0.1; Debian's unit would listen on :5000
  if [ -d /run/systemd/system ] && systemctl is-enabled docker-registry >/dev/null 2>&1; then
    systemctl disable --now docker-registry
  fi
  # likewise nginx, when this run installed it: the deploy tests run their own on
  # 127.0.0.1; Debian's would take :80 (an nginx that was here before is left alone)
  if [[ " ${missing[*]} " == *" nginx "* ]] && [ -d /run/systemd/system ] && \
     systemctl is-enabled nginx >/dev/null 2>&1; then
    systemctl disable --now nginx
  fi
fi

step "Docker engine (test)"
bash "$here/dockerd.sh"
docker version --format 'engine {{.Server.Version}}'

BINDERLAB_PIP_ARGS="-e .[test]" bash "$top/deploy/docker/setup.sh"

if [ ! -d "$top/tests/browser/node_modules/playwright-core" ] || \
   [ "$top/tests/browser/package.json" -nt "$top/tests/browser/node_modules" ]; then
  step "browser test tools (npm: playwright-core)"
  (cd "$top/tests/browser" && npm install --no-fund --no-audit --ignore-scripts)
fi

step "test base image"
bash "$here/base-image.sh"
