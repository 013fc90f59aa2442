"""Which session containers the reaper may remove (sessions/lifecycle.py).

A container still "created" may be a launch in progress: the spawner copies the commit's
content into it before it starts, and for a large repository that copy takes a while. Such
a container is never removed while its launch runs (the launcher names the users it is
starting), and otherwise only once it is older than the longest a start may take.
"""

from binderlab.contract import LABEL_USER
from binderlab.platform.rfc3339 import timestamp


def should_reap(attrs: dict, now: float, image_prefix: str, starting: set[str],
                stopped_grace: float = 120, created_grace: float = 120) -> bool:
    """True for a session container of this host that stopped ``stopped_grace`` seconds
    ago, or that was created ``created_grace`` seconds ago, never started and belongs to no
    launch in progress."""
    config = attrs.get("Config") or {}
    if not (config.get("Image") or "").startswith(image_prefix):
        return False
    labels = config.get("Labels") or {}
    state = attrs.get("State") or {}
    created = timestamp(attrs.get("Created", "")) or 0
    if state.get("Status") == "created":
        if labels.get(LABEL_USER) in starting:
            return False
        return now - created > created_grace
    since = max(timestamp(state.get("FinishedAt", "")) or 0, created)
    return now - since > stopped_grace
