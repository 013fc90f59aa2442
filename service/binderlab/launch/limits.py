"""Launch limits for a public host: rate per client, session quotas, spec patterns.

Launch links are public, so a host must bound what one client, one repository and all of
them together can start. Classrooms are the hard case: 40 students behind one NAT address
launch the same repository within a minute, which a plain per-address limit (BinderHub's
is 10 an hour) refuses. binderlab's answer, in two parts:

- the loading page (`/v2/...`) hands each page view a signed, single-use launch ticket;
  a launch that carries one counts against a per-address allowance for people
  (``per_client_with_page``), a launch without one (a script calling /build) against the
  strict one (``per_client``);
- operator-listed course repositories (``course_repos``) get their own, larger allowance.
"""

import fnmatch
import hashlib
import hmac
import secrets
import time
from collections import deque

from traitlets import Float, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from binderlab.errors import LaunchError


class LaunchLimits(LoggingConfigurable):
    window = Float(
        600, help="Seconds over which launches per client are counted (default 600)."
    ).tag(config=True)
    per_client = Integer(
        20, help="""Launches one client address may start per window without a loading-page
        ticket (scripts, direct API use). 0: no limit.""").tag(config=True)
    per_client_with_page = Integer(
        200, help="""Launches per window from one address that come through the loading
        page (each page view carries a single-use ticket): a classroom behind one NAT.
        0: no limit.""").tag(config=True)
    per_client_course = Integer(
        400, help="Launches per window from one address of a repository listed in "
        "course_repos. 0: no limit.").tag(config=True)
    course_repos = List(
        Unicode(), help="""Course repositories ('<provider>/<repo>' patterns, fnmatch, e.g.
        'gh/physics-101/*'): launched by whole classes from one address, with the
        per_client_course allowance.""").tag(config=True)
    banned_specs = List(
        Unicode(), help="""Repositories this host never builds or launches
        ('<provider>/<repo>' patterns, e.g. 'gh/cryptominer/*').""").tag(config=True)
    allowed_specs = List(
        Unicode(), help="""If set, only these repositories ('<provider>/<repo>' patterns) can
        be launched. Empty (default): all that are not banned.""").tag(config=True)
    max_sessions = Integer(
        0, help="Most sessions running at once on this host; 0 (default): no quota."
    ).tag(config=True)
    max_sessions_per_repo = Integer(
        0, help="Most sessions of one repository at once; 0 (default): no quota."
    ).tag(config=True)
    ticket_max_age = Float(
        3600, help="Seconds a loading-page launch ticket stays valid (default 3600)."
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._key = secrets.token_bytes(32)
        self._recent: dict[tuple[str, str], deque] = {}
        self._used_tickets: dict[str, float] = {}

    # ---- spec patterns ------------------------------------------------------------------

    def check_spec(self, repo_key: str) -> None:
        """Patterns match case-insensitively: hosting services treat owner and repository
        names so, and a ban must not be escaped by writing Owner/Repo."""
        if matches(repo_key, self.banned_specs):
            raise LaunchError(f"{repo_key} cannot be launched on this host.", 403)
        if self.allowed_specs and not matches(repo_key, self.allowed_specs):
            raise LaunchError(f"{repo_key} is not among the repositories this host "
                              "launches.", 403)

    # ---- loading-page tickets -----------------------------------------------------------

    def issue_ticket(self, spec_path: str) -> str:
        stamp = f"{int(time.time())}.{secrets.token_hex(6)}"
        return f"{stamp}.{self._sign(spec_path, stamp)}"

    def _sign(self, spec_path: str, stamp: str) -> str:
        message = f"{spec_path}|{stamp}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    def redeem_ticket(self, ticket: str, spec_path: str) -> bool:
        """True once for a valid ticket issued for ``spec_path`` within ticket_max_age."""
        try:
            issued, nonce, signature = ticket.split(".")
            if len(issued) > 12:  # a POSIX time in seconds; a huge number overflows
                return False
            age = time.time() - int(issued)
        except ValueError:
            return False
        if not (0 <= age <= self.ticket_max_age) or ticket in self._used_tickets:
            return False
        if not hmac.compare_digest(signature, self._sign(spec_path, f"{issued}.{nonce}")):
            return False
        self._used_tickets[ticket] = time.time()
        if len(self._used_tickets) > 100_000:  # forget the expired ones
            cutoff = time.time() - self.ticket_max_age
            self._used_tickets = {t: s for t, s in self._used_tickets.items() if s > cutoff}
        return True

    # ---- rate ---------------------------------------------------------------------------

    def check_rate(self, client: str, repo_key: str, from_page: bool) -> None:
        """Count a launch from ``client``; refuse it over the allowance. Launches the host
        starts itself (webhook prebuilds, the CLI) have no client and are not counted."""
        if not client:
            return
        if matches(repo_key, self.course_repos):
            kind, limit = "course", self.per_client_course
        elif from_page:
            kind, limit = "page", self.per_client_with_page
        else:
            kind, limit = "api", self.per_client
        if not limit:
            return
        now = time.monotonic()
        recent = self._recent.setdefault((client, kind), deque())
        while recent and now - recent[0] > self.window:
            recent.popleft()
        if len(recent) >= limit:
            retry = int(self.window - (now - recent[0])) + 1
            raise LaunchError(
                f"Too many launches from your address ({limit} in {self.window:g} s). Try "
                f"again in {retry} s" + ("; launching from the repository's badge or "
                                         "loading page allows more." if kind == "api" else "."),
                429)
        recent.append(now)
        if len(self._recent) > 50_000:
            self._recent = {k: v for k, v in self._recent.items()
                            if v and now - v[-1] <= self.window}

    # ---- quotas -------------------------------------------------------------------------

    def check_quota(self, running: int, running_for_repo: int, repo_key: str) -> None:
        if self.max_sessions and running >= self.max_sessions:
            raise LaunchError(f"This host is full ({self.max_sessions} sessions running). "
                              "Try again in a few minutes.", 503)
        if self.max_sessions_per_repo and running_for_repo >= self.max_sessions_per_repo:
            raise LaunchError(f"{repo_key} has {running_for_repo} sessions running, the most "
                              "this host allows for one repository. Try again later.", 429)


def matches(repo_key: str, patterns: list[str]) -> bool:
    """``repo_key`` ('<provider>/<repo>') matches one of ``patterns``, ignoring case."""
    key = repo_key.casefold()
    return any(fnmatch.fnmatchcase(key, p.casefold()) for p in patterns)
