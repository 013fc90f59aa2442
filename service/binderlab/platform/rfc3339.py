"""Times as Docker and JupyterHub write them (RFC 3339, UTC, up to nanoseconds)."""

import re
from datetime import datetime

_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]00:00)?$")


def timestamp(stamp: str) -> float | None:
    """POSIX seconds of a UTC RFC 3339 time; None if it is not one."""
    match = _TIME.match(stamp or "")
    if not match:
        return None
    fraction = (match.group(2) or ".0")[:7]  # Python takes microseconds at most
    return datetime.fromisoformat(match.group(1) + fraction + "+00:00").timestamp()
