"""What `binderlab up` and `binderlab build` do with the builder's start-up checks."""

import logging

from binderlab.builders.preflight import Check


def require(checks: list[Check], log: logging.Logger) -> None:
    """Log the warnings; exit with every failed check's message (no traceback) if any."""
    for check in checks:
        if check.ok and check.warning:
            log.warning("%s: %s", check.name, check.message)
        elif check.ok:
            log.debug("%s: %s", check.name, check.message)
    failed = [c for c in checks if not c.ok]
    if failed:
        raise SystemExit("This host cannot build images:\n" + "\n".join(
            f"  - {c.name}: {c.message}" for c in failed))
