#!/usr/bin/env bash
# Start a Docker engine if none answers. On machines without systemd (CI, these sandboxes)
# dockerd runs in the background with its log in /var/log/binderlab-dockerd.log.
#
# The NVIDIA hook stub goes first on dockerd's PATH: Docker 20.10 enables device_requests
# (--gpus) only when `nvidia-container-runtime-hook` is found when it starts. The stub
# records its arguments and does nothing else; no GPU is touched.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if docker info >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null; then
  echo "dockerd is not installed: apt-get install -y docker.io" >&2
  exit 1
fi
# BuildKit's cache database does not survive an engine that was killed mid-write (seen
# here: the next build segfaulted dockerd in contenthash). It is only a cache: start clean.
# (a crashed engine also leaves its build containers' mounts behind there)
awk '$2 ~ "^/var/lib/docker/buildkit/" {print $2}' /proc/mounts | sort -r | \
  while read -r mount; do umount -l "$mount" || true; done
rm -rf /var/lib/docker/buildkit || echo "warning: could not clear BuildKit's cache" >&2
# --live-restore: sessions keep running while the engine restarts (tests restart it)
# The engine is shared and outlives any test run: it (and every containerd shim it starts)
# must not carry a test run's BINDERLAB_MARK_* markers, or the run's leftover check (and
# binderlab up's clean-up) would count it as theirs.
unset $(env | sed -n 's/^\(BINDERLAB_MARK_[A-Za-z0-9_]*\)=.*/\1/p')
PATH="$here/nvidia-stub:$PATH" nohup dockerd --live-restore >/var/log/binderlab-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 0.5
done
echo "dockerd did not answer within 30 s; its log:" >&2
tail -n 40 /var/log/binderlab-dockerd.log >&2
exit 1
