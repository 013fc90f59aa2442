"""GPU-time budgets per person: GPU hours a logged-in user may use per day and per week.

What counts: GPU-seconds, per device, from the moment the allocator reserves the device for
a launch until no container (and no reservation) holds it any more. Two devices for an hour
are two hours. The allocator calls ``charge`` on every reconcile (every couple of seconds)
with who holds which device, so a release is counted to within one reconcile interval.

Days and weeks are UTC calendar ones (a week starts on Monday 00:00 UTC): a budget renews
at a time the refusal can name (``renews_at``), as a department's quota does, instead of a
rolling window whose renewal creeps.

Who has a budget: logged-in users (clients counted as ``user:<name>``). Anonymous launches
have none: an address is not a person (a class behind one NAT would share one budget, the
very problem logged-in mode solves), and anonymous GPU sessions are already bounded by
``gpu_max_age``, ``gpu_idle_timeout`` and ``max_gpus_per_user`` per address.

State lives in ``<state_dir>/gpu-budgets.json`` (written atomically): per person, the
GPU-seconds of each UTC day of the last 8 days (older days are dropped, so the file stays
bounded by the people who used a GPU this week), and the devices being charged with the time
they were charged up to. A restarted service goes on charging a device still held from that
time: the session held it while the service was down.
"""

import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from traitlets import Float
from traitlets.config import LoggingConfigurable

from binderlab.contract import CLIENT_USER_PREFIX
from binderlab.errors import LaunchError

DAY = 86400
KEEP_DAYS = 8  # today and the 7 before: enough for any UTC week that contains today


def rfc3339(posix: float) -> str:
    return datetime.fromtimestamp(int(posix), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_key(posix: float) -> str:
    return datetime.fromtimestamp(posix, UTC).strftime("%Y-%m-%d")


def day_start(posix: float) -> float:
    return (posix // DAY) * DAY


def week_start(posix: float) -> float:
    day = datetime.fromtimestamp(day_start(posix), UTC)
    return (day - timedelta(days=day.weekday())).timestamp()


def duration(seconds: float) -> str:
    """'2 h 05 min', '12 min', '40 s': for messages people read."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    hours, minutes = divmod(seconds // 60, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


@dataclass(frozen=True)
class BudgetLeft:
    """What a person has left now: the smaller of the day's and the week's rest."""

    seconds: float  # GPU-seconds left (0: exhausted)
    period: str  # "day" or "week": the budget that binds
    renews_at: float  # POSIX time: when the binding budget (or, exhausted, the launch) renews

    def as_event(self, now: float, devices: int) -> dict:
        """The ready event's ``gpu_budget`` (events.schema.json)."""
        return {"seconds_left": int(self.seconds), "period": self.period,
                "renews_at": rfc3339(self.renews_at),
                # the session stops when the rest runs out at this many devices
                "stops_at": rfc3339(now + self.seconds / max(1, devices))}


class BudgetExhausted(LaunchError):
    """429 with the time the budget renews (the failed event's renews_at, retry_after)."""

    def __init__(self, message: str, renews_at: float, now: float):
        super().__init__(message, 429)
        self.fields = {"renews_at": rfc3339(renews_at),
                       "retry_after": max(1, int(renews_at - now))}


class GPUBudgets(LoggingConfigurable):
    hours_per_day = Float(
        0, help="""GPU hours one logged-in user may use per UTC day (over all their
        sessions; two GPUs for an hour are two hours). 0 (default): no daily budget.
        Anonymous launches have no budget (see README, "Fair shares per person").""",
    ).tag(config=True)
    hours_per_week = Float(
        0, help="""GPU hours one logged-in user may use per UTC week (Monday 00:00 UTC to
        the next). 0 (default): no weekly budget.""").tag(config=True)
    warn_before = Float(
        900, help="""Seconds before a running session's budget runs out at which the service
        logs a warning (default 900). The user is told at launch when the session stops
        (ready event, loading page); it is stopped when the budget reaches 0.""",
    ).tag(config=True)
    save_interval = Float(
        30, help="""Most seconds between writes of the budget state while GPUs are held
        (default 30); a change of holdings is written at once. A crash loses at most this
        much charged time.""").tag(config=True)

    def __init__(self, *, state_file: Path | None = None, clock=time.time, **kwargs):
        super().__init__(**kwargs)
        self.state_file = state_file
        self.clock = clock  # injectable: tests move time instead of sleeping for a day
        self.used: dict[str, dict[str, float]] = {}  # person -> UTC day -> GPU-seconds
        self.open: dict[str, tuple[str, float]] = {}  # device -> (person, charged up to)
        self._saved = 0.0
        self._warned: set[str] = set()
        self._recovered: set[str] = set()  # devices found open in the state file
        self._recovered_until = 0.0
        self.load()

    @property
    def enabled(self) -> bool:
        return bool(self.hours_per_day or self.hours_per_week)

    @staticmethod
    def person(client: str) -> str:
        """The budget a client counts against: a logged-in user's; '' for anonymous."""
        return client if client.startswith(CLIENT_USER_PREFIX) else ""

    # ---- what is left -------------------------------------------------------------------

    def spent(self, person: str, now: float) -> tuple[float, float]:
        """GPU-seconds ``person`` used today and this week (UTC), up to ``now``."""
        days = self.used.get(person, {})
        today, monday = day_key(now), day_key(week_start(now))
        week = sum(s for d, s in days.items() if monday <= d <= today)
        return days.get(today, 0.0), week

    def left(self, client: str, now: float | None = None) -> BudgetLeft | None:
        """What ``client`` has left; None when no budget applies (off, or anonymous)."""
        person = self.person(client)
        if not (self.enabled and person):
            return None
        now = self.clock() if now is None else now
        day, week = self.spent(person, now)
        rests = []  # (left, period, renews_at)
        if self.hours_per_day:
            rests.append((self.hours_per_day * 3600 - day, "day", day_start(now) + DAY))
        if self.hours_per_week:
            rests.append((self.hours_per_week * 3600 - week, "week",
                          week_start(now) + 7 * DAY))
        exhausted = [r for r in rests if r[0] <= 0]
        if exhausted:  # usable again once every exhausted budget renewed
            _, period, renews = max(exhausted, key=lambda r: r[2])
            return BudgetLeft(0.0, period, renews)
        rest, period, renews = min(rests)
        return BudgetLeft(rest, period, renews)

    def check(self, client: str) -> None:
        """Refuse a GPU launch of a person whose budget is used up (before any build or
        wait in the queue), saying when it renews."""
        now = self.clock()
        left = self.left(client, now)
        if left is None or left.seconds > 0:
            return
        limit = self.hours_per_day if left.period == "day" else self.hours_per_week
        raise BudgetExhausted(
            f"You have used your GPU time for this {left.period} ({limit:g} h). It renews "
            f"at {rfc3339(left.renews_at)} (in {duration(left.renews_at - now)}); until "
            "then, launch with ?gpu=0 for a CPU session.", left.renews_at, now)

    # ---- accounting ---------------------------------------------------------------------

    def charge(self, owners: dict[str, str], now: float | None = None) -> set[str]:
        """Charge held devices up to ``now``. ``owners``: device -> client holding it (a
        session's container or a launch's reservation). Returns the people who hold GPUs
        with their budget used up (their sessions are to be stopped)."""
        now = self.clock() if now is None else now
        owners = {d: self.person(c) for d, c in owners.items() if self.person(c)}
        changed = set(owners) != set(self.open)
        for device, (person, since) in list(self.open.items()):
            held = owners.get(device) == person
            # a released device is charged up to now: at most one reconcile interval more
            # than it was held, never less; one released while the service was down, up
            # to the last save before it went
            until = now if held or device not in self._recovered else self._recovered_until
            self._add(person, since, max(since, until))
            if held:
                self.open[device] = (person, now)
            else:
                del self.open[device]
                changed = True
        for device, person in owners.items():
            if device not in self.open:
                self.open[device] = (person, now)
        self._recovered = set()
        self._forget_old(now)
        if changed or (self.open and now - self._saved >= self.save_interval):
            self.save(now)
        if not self.enabled:
            return set()
        out, holders = set(), set(owners.values())
        for person in holders:
            left = self.left(person, now)
            if left.seconds <= 0:
                out.add(person)
            elif left.seconds <= self.warn_before and person not in self._warned:
                self._warned.add(person)
                self.log.info("GPU budget of %s runs out in %s; their GPU sessions stop "
                              "then", person, duration(left.seconds))
        self._warned &= holders
        return out

    def _add(self, person: str, start: float, end: float) -> None:
        """Add [start, end) to the UTC days it falls in."""
        days = self.used.setdefault(person, {})
        while start < end:
            cut = min(end, day_start(start) + DAY)
            key = day_key(start)
            days[key] = days.get(key, 0.0) + (cut - start)
            start = cut

    def _forget_old(self, now: float) -> None:
        oldest = day_key(now - (KEEP_DAYS - 1) * DAY)
        for person in list(self.used):
            days = {d: s for d, s in self.used[person].items() if d >= oldest}
            if days:
                self.used[person] = days
            else:
                del self.used[person]

    # ---- state --------------------------------------------------------------------------

    def save(self, now: float | None = None) -> None:
        self._saved = self.clock() if now is None else now
        if self.state_file is None:
            return
        state = {"saved_at": self._saved, "used": self.used,
                 "open": {d: [p, s] for d, (p, s) in self.open.items()}}
        partial = self.state_file.with_name(self.state_file.name + ".partial")
        partial.write_text(json.dumps(state))
        os.replace(partial, self.state_file)  # atomic: a crash leaves the old or the new

    def load(self) -> None:
        if self.state_file is None or not self.state_file.exists():
            return
        try:
            state = json.loads(self.state_file.read_text())
            used = {str(p): {str(d): float(s) for d, s in days.items()}
                    for p, days in state.get("used", {}).items()}
            open_ = {str(d): (str(v[0]), float(v[1]))
                     for d, v in state.get("open", {}).items()}
            saved_at = float(state.get("saved_at", 0))
        except (OSError, ValueError, TypeError, AttributeError, IndexError) as e:
            # a budget file nobody can read must not stop the service: start afresh, say so
            self.log.warning("Cannot read %s (%s); GPU budgets start from zero",
                             self.state_file, e)
            return
        self.used, self.open = used, open_
        self._recovered, self._recovered_until = set(open_), saved_at
