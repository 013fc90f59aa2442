"""GPU claims of launches in flight, kept on disk so a restart cannot hand a device out twice.

A launch claims GPUs when it joins the allocator's queue and holds the reserved devices
until its session's container carries them (the ``binderlab.gpus`` label). Between the
hub request and the container's creation only this book knows the devices are taken: if
the service restarts then, the hub may still create the container. The book is therefore
written to ``<state_dir>/gpu-reservations.json`` whenever a reservation changes, and a
restarted service keeps the reservations it finds there until a container holds their
devices or ``expires`` passes (the hub gave up on that start).
"""

import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Claim:
    """One launch's claim: queued while ``devices`` is empty, then reserved."""

    client: str  # who launched it (per-user caps count claims too)
    repo_key: str
    count: int
    devices: list[str] = field(default_factory=list)
    expires: float = 0.0  # POSIX time; set for reservations recovered after a restart
    recovered: bool = False


class ReservationBook:
    """Tickets -> claims; reservations (claims with devices) are mirrored to ``path``."""

    def __init__(self, path: Path | None, recovered_ttl: float):
        self.path = path
        self.claims: dict[str, Claim] = {}
        self.load(recovered_ttl)

    def new_ticket(self) -> str:
        # random, not a counter: tickets of a restarted service never collide with the
        # ones it recovered
        return secrets.token_hex(8)

    def reserved(self) -> dict[str, list[str]]:
        return {t: c.devices for t, c in self.claims.items() if c.devices}

    def load(self, ttl: float) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return  # a torn write from a crash: nothing to recover
        now = time.time()
        for ticket, data in saved.items() if isinstance(saved, dict) else ():
            try:
                claim = Claim(str(data["client"]), str(data["repo_key"]), int(data["count"]),
                              [str(d) for d in data["devices"]], now + ttl, True)
            except (KeyError, TypeError, ValueError):
                continue
            if claim.devices:
                self.claims[str(ticket)] = claim

    def save(self) -> None:
        if self.path is None:
            return
        reservations = {t: {k: v for k, v in asdict(c).items() if k not in ("expires",
                                                                            "recovered")}
                        for t, c in self.claims.items() if c.devices}
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(reservations))
        os.replace(partial, self.path)  # atomic: a crash leaves the old or the new book

    def drop_recovered(self, held: set[str]) -> bool:
        """Forget recovered reservations whose devices a container holds now, or that
        expired; True if any went."""
        now = time.time()
        gone = [t for t, c in self.claims.items() if c.recovered
                and (set(c.devices) <= held or now > c.expires)]
        for ticket in gone:
            del self.claims[ticket]
        if gone:
            self.save()
        return bool(gone)
