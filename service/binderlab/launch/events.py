"""The event stream's vocabulary: phases and fields as names, and the events themselves.

Every event a client of ``/build/<provider>/<spec>`` receives is made here, so the phases
and field names are spelled once; ``events.schema.json`` (next to this module) describes
the stream and the launch log for clients and tests, which validate against it.

A stream is: ``fetching`` (several), then ``building`` (repo2docker's log lines) or a cache
hit, ``built``, then ``waiting`` (queued for a GPU or a build slot) and ``launching``, and
it ends with exactly one ``ready`` or ``failed``.
"""

import json
from functools import cache
from pathlib import Path

FETCHING = "fetching"
BUILDING = "building"
BUILT = "built"
WAITING = "waiting"
LAUNCHING = "launching"
READY = "ready"
FAILED = "failed"
PHASES = (FETCHING, BUILDING, BUILT, WAITING, LAUNCHING, READY, FAILED)
FINAL = (READY, FAILED)

# fields (BinderHub's names where BinderHub has them)
PHASE = "phase"
MESSAGE = "message"
IMAGE_NAME = "imageName"  # built, and ready for build-only requests
STATUS_CODE = "status_code"  # failed: 4xx the request's or repository's fault, 5xx ours
QUEUE_POSITION = "queue_position"  # waiting for a GPU: 1 is next
URL = "url"
TOKEN = "token"
IMAGE = "image"
REPO_URL = "repo_url"
BINDER_REF_URL = "binder_ref_url"
BINDER_LAUNCH_HOST = "binder_launch_host"
BINDER_REQUEST = "binder_request"
BINDER_PERSISTENT_REQUEST = "binder_persistent_request"
GPUS = "gpus"  # ready: the device IDs the session got (absent for CPU sessions)
ENVIRONMENT_URL = "environment_url"  # ready: the environment record (GET, HTML or JSON)
GPU_BUDGET = "gpu_budget"  # ready: a logged-in GPU session's time left (gpus/budgets.py)
RENEWS_AT = "renews_at"  # failed (429 of a limit): when launching is allowed again, RFC 3339
RETRY_AFTER = "retry_after"  # failed (429 of a limit): seconds until then

SCHEMA_FILE = Path(__file__).with_name("events.schema.json")


@cache
def schema() -> dict:
    """The JSON schema of the stream's events (``$defs.launch_record``: the launch log)."""
    return json.loads(SCHEMA_FILE.read_text())


def event(phase: str, message: str, **fields) -> dict:
    """One event; ``message`` is a line of text for the log view (it ends with a newline)."""
    if not message.endswith("\n"):
        message += "\n"
    return {PHASE: phase, MESSAGE: message, **fields}


def failed(message: str, status_code: int, **fields) -> dict:
    """``fields``: a refusal's own (a used-up budget's RENEWS_AT and RETRY_AFTER)."""
    return event(FAILED, message, **{STATUS_CODE: status_code}, **fields)


def waiting(position: int, message: str) -> dict:
    return event(WAITING, message, **{QUEUE_POSITION: position})
