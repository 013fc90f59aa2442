#!/usr/bin/env bash
# Build the local base image the tests' repositories start FROM: Debian bookworm with a venv
# holding JupyterLab and JupyterHub (for jupyterhub-singleuser). No container registry can be
# reached here, so it is built from Debian packages (debootstrap) and PyPI, then imported.
#
# Idempotent: the image carries a label with the hash of this recipe; it is rebuilt only when
# the recipe changed or the image is missing, so CI machines that keep the engine's store
# skip the ~90 s build.
set -euo pipefail
#
# BINDERLAB_TEST_BASE_FULL=1 keeps rfc3987-syntax (see below), as images built for users
# have it: the benchmarks run on that image (bench/README.md), the tests on the lean one.
IMAGE=${BINDERLAB_TEST_BASE_IMAGE:-binderlab-test/base:latest}
FULL=${BINDERLAB_TEST_BASE_FULL:-0}
recipe_hash=$( (cat "$0"; echo "full=$FULL") | sha256sum | cut -c1-16)
have=$(docker image inspect -f '{{ index .Config.Labels "binderlab.test.recipe" }}' "$IMAGE" 2>/dev/null || true)
if [ "$have" = "$recipe_hash" ]; then
  echo "base image $IMAGE is up to date ($recipe_hash)"
  exit 0
fi
echo "building base image $IMAGE (recipe $recipe_hash)"
work=$(mktemp -d /var/tmp/binderlab-rootfs.XXXXXX)
rootfs=$work/rootfs
cleanup() {
  umount "$rootfs/proc" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
debootstrap --variant=minbase \
  --include=python3,python3-venv,python3-pip,git,ca-certificates,tini,passwd \
  bookworm "$rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log"; exit 1; }
# This machine reaches PyPI through a proxy with its own CA: let pip inside the chroot use it.
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
mount -t proc proc "$rootfs/proc"
chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
  PIP_DISABLE_PIP_VERSION_CHECK=1 FULL="$FULL" /bin/sh -euc '
    python3 -m venv /opt/venv
    /opt/venv/bin/pip install --no-cache-dir -q jupyterlab jupyterhub
    # jsonschema imports rfc3987-syntax whenever it is installed (jupyter-events asks for
    # it, to check "iri" formats in event schemas), and that module compiles an Earley
    # grammar at import: 1.1-1.3 s of CPU in the server start of every session (measured:
    # importing jupyter_server.serverapp + jupyterhub.singleuser takes 1.9-2.0 s of CPU with
    # it, 0.7-0.9 s without), hundreds of times a test run. Nothing in a session checks those
    # formats.
    [ "$FULL" = 1 ] || /opt/venv/bin/pip uninstall -y -q rfc3987-syntax
    # repo2docker runs the start command in a login shell, which resets PATH from
    # /etc/profile: put the venv on PATH there too.
    echo "export PATH=/opt/venv/bin:\$PATH" > /etc/profile.d/venv.sh
    useradd -m -u 1000 -s /bin/bash jovyan
    apt-get clean; rm -rf /var/lib/apt/lists/*
  '
umount "$rootfs/proc"
tar -C "$rootfs" -c . | docker import \
  -c 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENV LANG=C.UTF-8' \
  -c "LABEL binderlab.test.recipe=$recipe_hash" \
  -c 'CMD ["jupyter", "lab", "--ip=0.0.0.0"]' \
  - "$IMAGE" >/dev/null
echo "built $IMAGE"
