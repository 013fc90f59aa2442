"""One build of one image, as its watchers see it: the replayable, bounded log and who
follows it (the builder stops a build nobody follows; see ``Builder.abandon_after``)."""

import asyncio
from collections.abc import AsyncIterator, Callable


class Build:
    """One build of one image, watched by any number of clients.

    Events are kept from the start, so a watcher that joins late still sees the whole log,
    up to ``max_events`` lines and ``max_bytes`` of messages (a line is cut at
    ``max_line_bytes``): later lines are counted, not kept, so one build's log cannot take
    the service's memory. ``outcome`` is None while running, then "built" or "failed".
    ``watchers`` counts the clients following it now (see ``Builder.abandon_after``).
    """

    def __init__(self, image: str, max_events: int, max_bytes: int = 0,
                 max_line_bytes: int = 0, client: str = ""):
        self.image = image
        self.events: list[dict] = []
        self.outcome: str | None = None
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_line_bytes = max_line_bytes
        self.kept_bytes = 0
        self.dropped = 0
        self.client = client  # who started it (per-client caps and fair slots)
        self.watchers = 0
        self.abandoned = False  # stopped because nobody followed it
        self.on_unwatched: Callable[[Build], None] | None = None
        self._changed = asyncio.Condition()
        self.task: asyncio.Task | None = None

    def _cut(self, event: dict) -> dict:
        message = event.get("message")
        if self.max_line_bytes and isinstance(message, str) \
                and len(message) > self.max_line_bytes // 4:
            raw = message.encode(errors="replace")
            if len(raw) > self.max_line_bytes:
                kept = raw[:self.max_line_bytes].decode(errors="ignore")
                event = {**event, "message": f"{kept} [... {len(raw) - len(kept.encode())} "
                         "bytes of this line not shown]\n"}
        return event

    async def emit(self, event: dict) -> None:
        event = self._cut(event)
        size = len(event.get("message") or "")
        async with self._changed:
            if len(self.events) < self.max_events and \
                    (not self.max_bytes or self.kept_bytes + size <= self.max_bytes):
                self.events.append(event)
                self.kept_bytes += size
            else:
                if not self.dropped:
                    # said once, so watchers know the log goes on without them
                    self.events.append({"phase": event.get("phase", "building"),
                                        "message": "[the rest of this build's log is not "
                                        "kept; the build goes on]\n"})
                self.dropped += 1
            self._changed.notify_all()

    async def finish(self, outcome: str, event: dict) -> None:
        async with self._changed:
            self.events.append(event)
            self.outcome = outcome
            self._changed.notify_all()

    async def follow(self) -> AsyncIterator[dict]:
        """Yield every event of this build from its start until it ends."""
        seen = 0
        self.watchers += 1
        try:
            while True:
                async with self._changed:
                    await self._changed.wait_for(lambda: len(self.events) > seen or self.outcome)  # noqa: B023
                    new = self.events[seen:]
                    done = self.outcome is not None
                seen += len(new)
                for event in new:
                    yield event
                if done and seen >= len(self.events):
                    return
        finally:
            self.watchers -= 1
            if not self.watchers and self.outcome is None and self.on_unwatched:
                self.on_unwatched(self)
