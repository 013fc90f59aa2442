"""What `binderlab up` and `binderlab build` do with the builder's start-up checks."""

import logging

from binderlab.builders.preflight import Check, check_engine_now, engine_message


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


class EngineFirst:
    """For commands that need the engine (`up`, `build`): ask it in the first step that
    uses it, so a host without a running engine gets a sentence, not a traceback."""

    def init_engine(self):
        try:
            super().init_engine()
            failed = check_engine_now(self.engine)
        except Exception as e:  # the Docker client asks the engine when it is created
            failed = Check("engine", False, engine_message(e))
        if failed is not None:
            raise SystemExit(f"This host cannot build images:\n  - engine: {failed.message}")
