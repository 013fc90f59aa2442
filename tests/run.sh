#!/usr/bin/env bash
# The test command: provision what the tests need (idempotent), then run all of them.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bash "$top/tests/harness/setup.sh"
cd "$top"
exec .venv/bin/python -m pytest "$@"
