"""What a course is, and the checks that turn an instructor's input into one.

A course names its repositories by **patterns in the spec form the providers use**:
``<provider>/<repo>[/<ref>]``, e.g. ``gh/physics/lab-notebooks/main``.

- The repository part matches a launch's repository key (``<provider>/<repo>``, the key
  bans and allow lists use) with fnmatch, ignoring case: ``gh/physics/*`` covers every
  repository of the owner.
- The ref is optional: without one the pattern covers every ref (branches, tags,
  commits: students may launch a persistent link); with one, only launches that ask for
  that ref (fnmatch too, e.g. ``lecture-*``).
- Patterns without a wildcard in them name a concrete environment: those are prebuilt
  (at their ref, or the default branch when they have none) and their seats kept warm.
"""

import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import time as dtime
from fnmatch import fnmatchcase
from urllib.parse import unquote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from binderlab.contract import matches

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_NAMES = {name: i for i, full in enumerate(_FULL_DAYS)
              for name in (full[:3], full[:3] + "s", full, full + "s")}
ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
KEY_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
WILDCARDS = set("*?[")
MAX_SEATS = 10_000
MAX_PATTERNS = 50
MAX_WINDOWS = 50


class CourseError(ValueError):
    """Bad course input; the message says what to change. ``status``: the HTTP status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Window:
    """A weekly time window, e.g. Tuesdays 10:00-11:30 (in the course's timezone)."""

    day: int  # 0 = Monday
    start: dtime
    end: dtime

    @classmethod
    def parse(cls, text: str) -> "Window":
        """'Tuesdays 10:00-11:30', 'tue 10:00-11:30' or 'Tue 9:15–10:45'."""
        m = re.fullmatch(r"\s*([A-Za-z]+)\s+(\d{1,2}):(\d{2})\s*[-–]\s*(\d{1,2}):(\d{2})\s*",
                         str(text))
        if not m:
            raise CourseError(f"Window {text!r}: write it as '<day> HH:MM-HH:MM', e.g. "
                              "'Tuesdays 10:00-11:30'.")
        day = _DAY_NAMES.get(m.group(1).lower())
        if day is None:
            raise CourseError(f"Window {text!r}: {m.group(1)!r} is not a day of the week "
                              "(Monday ... Sunday, or mon ... sun).")
        try:
            start = dtime(int(m.group(2)), int(m.group(3)))
            end = dtime(int(m.group(4)), int(m.group(5)))
        except ValueError:
            raise CourseError(f"Window {text!r}: times are HH:MM, 00:00 to 23:59.") from None
        if end <= start:
            raise CourseError(f"Window {text!r}: it must end after it starts, on the same day "
                              "(split a window past midnight in two).")
        return cls(day, start, end)

    def __str__(self) -> str:
        return f"{DAYS[self.day].capitalize()} {self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class Pattern:
    """``<provider>/<repo>[/<ref>]`` as in module docs."""

    text: str
    provider: str
    repo: str  # '<provider>/<repo>' pattern (a repository key pattern, unescaped)
    ref: str  # '' = any ref
    repo_spec: str  # the repository part as the spec writes it (gl, git: url-escaped)

    @classmethod
    def parse(cls, text: str, providers: dict[str, int]) -> "Pattern":
        """``providers``: prefix -> the number of path parts its repository has (gh: 2,
        owner and name; gl and git: 1, their url-escaped project or URL)."""
        text = str(text).strip().strip("/")
        prefix, _, rest = text.partition("/")
        if prefix not in providers or not rest:
            raise CourseError(f"Repository pattern {text!r}: write '<provider>/<repo>[/<ref>]' "
                              f"with provider one of {', '.join(sorted(providers))}, e.g. "
                              "'gh/physics/lab-notebooks/main'.")
        parts = rest.split("/")
        n = providers[prefix]
        if len(parts) < n or any(not p for p in parts[:n]):
            raise CourseError(f"Repository pattern {text!r}: a {prefix} repository has "
                              f"{n} part{'s' if n > 1 else ''} before the ref"
                              + (" (owner/name)." if n == 2 else "."))
        repo_spec = "/".join(parts[:n])
        ref = "/".join(parts[n:])
        if any(c in ref for c in " \t\n~^:\\") or ".." in ref:
            raise CourseError(f"Repository pattern {text!r}: {ref!r} is not a git ref.")
        return cls(text, prefix, f"{prefix}/{unquote(repo_spec)}", ref, repo_spec)

    @property
    def concrete(self) -> bool:
        """Names one environment (no wildcard): it can be prebuilt."""
        return not (WILDCARDS & set(self.repo + self.ref))

    def spec(self) -> str:
        """The spec to prebuild (after the provider prefix): the ref, or the default branch."""
        return f"{self.repo_spec}/{self.ref or 'HEAD'}"

    def covers(self, repo_key: str, ref: str) -> bool:
        if not matches(repo_key, [self.repo]):
            return False
        return not self.ref or fnmatchcase(ref, self.ref)


@dataclass
class Course:
    id: str
    title: str
    patterns: list[str]
    seats: int
    key: str
    owner: str = ""  # the hub user who registered it; '' = an operator (CLI, API token)
    timezone: str = "UTC"
    windows: list[str] = field(default_factory=list)
    created: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)

    def parsed_windows(self) -> list[Window]:
        return [Window.parse(w) for w in self.windows]

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def new_key() -> str:
    """A course key: unguessable, URL-safe (it goes in links, badges and thebe's binderUrl)."""
    return secrets.token_urlsafe(18)


def validate(data: dict, providers: dict[str, int], *, key: str = "", owner: str = "",
             created: float = 0.0) -> Course:
    """A ``Course`` from JSON-ish input, or a ``CourseError`` naming what is wrong."""
    if not isinstance(data, dict):
        raise CourseError("A course is a JSON object: {\"id\": ..., \"patterns\": [...], "
                          "\"seats\": ...}.")
    unknown = set(data) - {"id", "title", "patterns", "seats", "timezone", "windows"}
    if unknown:
        raise CourseError(f"Unknown course field(s): {', '.join(sorted(unknown))}; a course "
                          "has id, title, patterns, seats, timezone, windows.")
    cid = data.get("id")
    if not isinstance(cid, str) or not ID_RE.match(cid):
        raise CourseError(f"Course id {cid!r}: use 1-63 lowercase letters, digits and '-', "
                          "starting with a letter or digit (e.g. 'physics-101').")
    title = data.get("title") or cid
    if not isinstance(title, str) or len(title) > 200:
        raise CourseError("The title is text of at most 200 characters.")
    patterns = data.get("patterns")
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, list) or not patterns or len(patterns) > MAX_PATTERNS:
        raise CourseError(f"Give 1 to {MAX_PATTERNS} repository patterns, e.g. "
                          "['gh/physics/lab-notebooks/main'].")
    parsed = [Pattern.parse(p, providers) for p in patterns]
    seats = data.get("seats")
    if isinstance(seats, str) and seats.isdigit():
        seats = int(seats)
    if not isinstance(seats, int) or isinstance(seats, bool) or not 1 <= seats <= MAX_SEATS:
        raise CourseError(f"Seats {seats!r}: give a whole number from 1 to {MAX_SEATS} "
                          "(the students who launch at once).")
    timezone = data.get("timezone") or "UTC"
    try:
        ZoneInfo(str(timezone))
    except (ZoneInfoNotFoundError, ValueError):
        raise CourseError(f"Timezone {timezone!r} is unknown: give an IANA name such as "
                          "'Europe/Berlin' or 'America/New_York'.") from None
    windows = data.get("windows") or []
    if isinstance(windows, str):
        windows = [windows]
    if not isinstance(windows, list) or len(windows) > MAX_WINDOWS:
        raise CourseError(f"Windows: a list of at most {MAX_WINDOWS} like "
                          "'Tuesdays 10:00-11:30'.")
    windows = [str(Window.parse(w)) for w in windows]
    return Course(cid, title, [p.text for p in parsed], seats, key or new_key(), owner,
                  str(timezone), windows, created)
