"""A minimal client for binderlab's event stream, as BinderHub clients use it."""

import json
import time

import requests


def follow(url: str, timeout: float = 300, params: dict | None = None,
           headers: dict | None = None, session: requests.Session | None = None) -> list[dict]:
    """GET an event stream; return its events up to and including ready/failed.
    ``session``: a browser-like session whose cookies (a login) go with the request."""
    events = []
    deadline = time.monotonic() + timeout
    with (session or requests).get(url, params=params, headers={"Accept": "text/event-stream",
                                                   **(headers or {})},
                      stream=True, timeout=timeout) as response:
        if response.status_code != 200:
            return [{"phase": "http-error", "status_code": response.status_code,
                     "message": response.text}]
        for line in response.iter_lines(decode_unicode=True):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no ready/failed from {url} within {timeout} s")
            if not line or not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            events.append(event)
            if event.get("phase") in ("ready", "failed"):
                break
    return events


def phases(events: list[dict]) -> list[str]:
    """The distinct phases in order (building repeats collapsed)."""
    out = []
    for e in events:
        if not out or out[-1] != e["phase"]:
            out.append(e["phase"])
    return out
