#!/usr/bin/env bash
# Install binderlab as a systemd service on this machine (Debian/Ubuntu, as root),
# idempotently. Run it from a checkout at /opt/binderlab:
#   - setup.sh: Docker, git, Node.js + configurable-http-proxy, binderlab in /opt/binderlab/.venv
#   - a system user "binderlab" (group docker), home and state in /var/lib/binderlab
#   - /etc/binderlab/{binderlab_config.py,jupyterhub_config.py,binderlab.env}: only when
#     missing, so an upgrade never overwrites the operator's settings
#   - the unit (replaced on every run: customise it with `systemctl edit binderlab`), the
#     logrotate file and the nginx site (only when missing)
# DESTDIR=<dir> only writes the files, under <dir> (no user, no setup.sh, no systemctl).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
dest=${DESTDIR:-}

install_new() {  # MODE SRC DST: install unless the operator already has DST
  if [ -e "$dest$3" ]; then
    echo "kept      $3 (compare with $2 after upgrades)"
  else
    install -D -m "$1" "$2" "$dest$3"
    echo "installed $3"
  fi
}

if [ -z "$dest" ]; then
  if [ "$top" != /opt/binderlab ]; then
    echo "binderlab.service runs /opt/binderlab/.venv/bin/binderlab: clone to /opt/binderlab" >&2
    exit 1
  fi
  bash "$here/setup.sh"
  if ! id binderlab >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/binderlab --no-create-home \
      --shell /usr/sbin/nologin binderlab
  fi
  usermod -a -G docker binderlab
fi

install_new 0644 "$here/binderlab_config.py" /etc/binderlab/binderlab_config.py
install_new 0644 "$here/jupyterhub_config.py" /etc/binderlab/jupyterhub_config.py
install_new 0600 "$here/binderlab.env.example" /etc/binderlab/binderlab.env
install -D -m 0644 "$here/binderlab.service" "$dest/etc/systemd/system/binderlab.service"
echo "installed /etc/systemd/system/binderlab.service"
install_new 0644 "$here/logrotate.conf" /etc/logrotate.d/binderlab
install_new 0644 "$here/nginx/binderlab.conf" /etc/nginx/sites-available/binderlab

if [ -z "$dest" ]; then
  systemctl daemon-reload
  cat <<'NEXT'

Next: set your host name in /etc/binderlab/binderlab_config.py and
/etc/nginx/sites-available/binderlab, get a certificate, enable the site
(ln -s ../sites-available/binderlab /etc/nginx/sites-enabled/ && nginx -t && systemctl reload nginx),
then: systemctl enable --now binderlab
NEXT
fi
