"""Build slots shared fairly between clients.

A plain semaphore serves builds first come, first served: one client that queues ten builds
holds every slot for hours while everyone else waits. ``FairSlots`` hands a free slot to the
waiting build whose client holds the fewest slots now (then the longest waiting), so one
client's builds take turns with everyone else's instead of going first.
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

    @property
    def in_use(self) -> int:
        return sum(self.held.values())

    def busy(self) -> bool:
        return self.in_use >= self.size

    async def acquire(self, client: str) -> None:
        if not self.busy() and not self._waiting:
            self.held[client] += 1
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

    def release(self, client: str) -> None:
        self.held[client] -= 1
        if self.held[client] <= 0:
            del self.held[client]
        self._grant()

    def _grant(self) -> None:
        while not self.busy() and self._waiting:
            # fewest slots held by the client first, then the oldest request
            ticket = min(self._waiting,
                         key=lambda t: (self.held[self._waiting[t][0]], t))
            client, granted = self._waiting.pop(ticket)
            if granted.done():
                continue
            self.held[client] += 1
            granted.set_result(None)
