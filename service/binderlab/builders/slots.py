"""Build slots shared fairly between clients.

A plain semaphore serves builds first come, first served: one client that queues ten builds
holds every slot for hours while everyone else waits. ``FairSlots`` hands a free slot to the
waiting build whose client holds the fewest slots now, then whose client was served least
recently, then the longest waiting: clients take turns (round robin), however many builds
one of them queued.
"""

import asyncio
import itertools
from collections import Counter


class FairSlots:
    def __init__(self, size: int):
        self.size = max(1, size)
        self.held: Counter[str] = Counter()  # client -> slots held
        self._waiting: dict[int, tuple[str, asyncio.Future]] = {}
        self._order = itertools.count()
        self._last_grant: dict[str, int] = {}  # client -> when it was last given a slot

    @property
    def in_use(self) -> int:
        return sum(self.held.values())

    def busy(self) -> bool:
        return self.in_use >= self.size

    async def acquire(self, client: str) -> None:
        if not self.busy() and not self._waiting:
            self._give(client)
            return
        ticket = next(self._order)
        granted = asyncio.get_running_loop().create_future()
        self._waiting[ticket] = (client, granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(client)  # granted as it was cancelled: pass the slot on
            raise
        finally:
            self._waiting.pop(ticket, None)

    def _give(self, client: str) -> None:
        self.held[client] += 1
        self._last_grant[client] = next(self._order)

    def release(self, client: str) -> None:
        self.held[client] -= 1
        if self.held[client] <= 0:
            del self.held[client]
            if not any(c == client for c, _ in self._waiting.values()):
                self._last_grant.pop(client, None)  # bounded: only clients present now
        self._grant()

    def _grant(self) -> None:
        while not self.busy() and self._waiting:
            def turn(ticket):
                client = self._waiting[ticket][0]
                return self.held[client], self._last_grant.get(client, -1), ticket

            ticket = min(self._waiting, key=turn)
            client, granted = self._waiting.pop(ticket)
            if granted.done():
                continue
            self._give(client)
            granted.set_result(None)
