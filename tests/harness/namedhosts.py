"""Run code with host names that resolve how a test wants, without a DNS server.

The code runs in a mount namespace of its own whose /etc/hosts is a file of the test's
(TESTING.md, "Names that resolve how a test wants"): Python's resolver and git's curl both
read it, nothing else on the machine sees it. Names resolve to loopback addresses only.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


def available() -> bool:
    """unshare and mount need root (CAP_SYS_ADMIN)."""
    return os.geteuid() == 0 and shutil.which("unshare") is not None


def run_with_hosts(hosts: Path, script: str, args: dict, timeout: float = 120) -> dict:
    """Run ``script`` (Python source) with ``args`` as JSON on stdin, /etc/hosts bound to
    ``hosts``; return the JSON object it prints last. The script may rewrite ``hosts`` in
    place (same inode) to change what a name resolves to mid-run."""
    command = 'mount --bind "$1" /etc/hosts && exec "$2" -c "$3"'
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", command, "sh",
         str(hosts), sys.executable, script],
        input=json.dumps(args), capture_output=True, text=True, timeout=timeout,
    )
    if proc.returncode:
        raise AssertionError(f"script failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
