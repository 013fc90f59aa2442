"""Stopping subprocesses started in a session of their own (``start_new_session=True``)."""

import os
import signal


def kill_group(proc, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to ``proc``'s whole process group: its children (git's remote helpers,
    repo2docker's docker clients) go with it, or they outlive it and hold its pipes."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
