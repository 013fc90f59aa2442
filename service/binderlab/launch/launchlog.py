"""The launch event log: one JSON object per line, for every launch that ended.

Like the public launch events of mybinder.org, it says what was launched and how it went,
never who launched it (no client address). Schema (version 1; the same as JSON schema in
events.schema.json, ``$defs.launch_record``, which clients and tests validate against):

| key | type | meaning |
| --- | --- | --- |
| `schema` | int | 1 |
| `timestamp` | str | end of the launch, UTC, ISO 8601 |
| `provider` | str | `gh`, `gl`, `git`, `gist` |
| `spec` | str | the spec as requested (with the ref the user gave) |
| `repo` | str | the repository's URL |
| `ref` | str | the resolved commit ("" when resolution failed) |
| `status` | str | `ready`, `built` (build only) or `failed` |
| `status_code` | int | HTTP-style code of a failure, else 200 |
| `build` | bool | whether this launch ran a build (false: cache hit or joined a build) |
| `image_kind` | str | `env` or `tree` ("" when no image was reached) |
| `gpus` | int | GPUs the session got |
| `duration` | float | seconds from request to the end |
"""

import json
import logging
import logging.handlers
from datetime import UTC, datetime
from pathlib import Path


class LaunchLog:
    def __init__(self, path: Path | None, max_bytes: int = 50_000_000, backups: int = 5):
        self.logger = logging.getLogger("binderlab.launches")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        for handler in list(self.logger.handlers):
            self.logger.removeHandler(handler)
        if path is not None:
            handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes,
                                                           backupCount=backups)
            handler.setFormatter(logging.Formatter("%(message)s"))
            self.logger.addHandler(handler)

    def record(self, **event) -> dict:
        entry = {"schema": 1,
                 "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
                 **event}
        self.logger.info(json.dumps(entry, sort_keys=True))
        return entry
