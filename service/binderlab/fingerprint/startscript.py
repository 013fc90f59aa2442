"""A repository's `start` script in environment-keyed images.

repo2docker runs `start` when the session starts, not while it builds: its template only
makes the file executable (``RUN chmod +x``) and names it in ``R2D_ENTRYPOINT``, which
repo2docker's entrypoint puts in front of the server command. What the image needs to know
is therefore *that* there is a start script and *where* (``binder/start``, ``.binder/start``
or ``start``, as repo2docker's ``binder_path`` picks), not what it says. So a repository
whose only whole-content step is `start` is keyed by its environment plus that path, and
the session's `start` comes from the commit's content overlay, made executable there.

The env-only build context holds a placeholder at that path (so repo2docker's ``chmod``
finds a file and every commit builds the same image); the overlay replaces it. A session
started without the overlay runs the placeholder, which refuses to start rather than
silently skipping the repository's `start` (correctness first).
"""

import shutil
from pathlib import Path

REPO_DIR_VAR = "${REPO_DIR}/"

PLACEHOLDER = b"""#!/bin/sh
# binderlab: the repository's start script comes with the session's content (the content
# overlay of the commit being launched); this placeholder is what the shared image holds.
echo "binderlab: this session started without its repository's files, so its start" \\
     "script cannot run; launch it through binderlab." >&2
exit 1
"""


def relative_start(start_script: str | None) -> str:
    """The path of the start script inside the repository ("binder/start"), from what
    repo2docker's ``get_start_script`` returns ("${REPO_DIR}/binder/start"); "" for none."""
    if not start_script:
        return ""
    if start_script.startswith(REPO_DIR_VAR):
        return start_script[len(REPO_DIR_VAR):]
    raise ValueError(f"repo2docker named a start script outside the repository: "
                     f"{start_script}")


def write_env_context(source: Path, dest: Path, files: list[str], start: str) -> None:
    """Fill ``dest`` with the environment files of ``source`` and, when the environment has
    a start script, the placeholder at its path (never the commit's own script: images are
    shared by every commit with this environment)."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in files:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, dest / name, follow_symlinks=False)
    if start:
        target = dest / start
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(PLACEHOLDER)
        target.chmod(0o755)

