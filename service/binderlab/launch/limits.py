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

A ticket is bound to the client it was issued to (its address, or its /64 for IPv6), so
tickets minted by one machine are worth nothing to another, and page views that mint them
are limited per client too (``page_views_per_client``). IPv6 clients are counted per /64:
one host usually owns a whole /64 and could otherwise take a new address per launch. All
per-client state expires after the window and is bounded (``max_tracked_clients``); the
work per check stays constant however many clients are tracked.
"""

import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from collections import OrderedDict, deque

from traitlets import Float, Integer, List, Unicode, default
from traitlets.config import LoggingConfigurable

from binderlab.contract import CLIENT_USER_PREFIX, matches
from binderlab.errors import LaunchError
from binderlab.gpus.budgets import rfc3339


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
        help="""Most sessions running at once on this host. Default: one per GiB of the
        host's memory (sessions are limited to 2 GiB each but mostly use far less); 0: no
        quota. Over it, launches get a 503 "host is full".""",
    ).tag(config=True)
    max_sessions_per_repo = Integer(
        0, help="Most sessions of one repository at once; 0 (default): no quota."
    ).tag(config=True)
    max_sessions_per_user = Integer(
        0, help="""Most sessions (named servers, one per repository) one logged-in user may
        have running or starting at once; 0 (default): no cap. Over it a launch of another
        repository is refused (429) before anything is built; returning to a running
        session is not a new one. Stopped servers do not count (JupyterHub's
        named_server_limit_per_user counts them until deleted, which would lock out a
        student after N repositories in a term). Anonymous launches are not capped per
        address (see max_sessions).""",
    ).tag(config=True)
    ticket_max_age = Float(
        3600, help="Seconds a loading-page launch ticket stays valid (default 3600)."
    ).tag(config=True)
    page_views_per_client = Integer(
        300, help="""Loading-page views per window from one client that get a launch ticket
        (default 300); later views still show the page, but their launches count against
        per_client like a script's. 0: no limit.""").tag(config=True)
    max_tracked_clients = Integer(
        100_000, help="""Most clients whose recent launches are remembered (default 100000).
        Entries expire after the window; past this many active clients the least recently
        seen are forgotten first, so memory and the cost of a check stay bounded.""",
    ).tag(config=True)

    @default("max_sessions")
    def _default_max_sessions(self):
        try:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            return 0
        return max(2, memory // (1 << 30))

    def __init__(self, sessions_page: str = "this host's /sessions page", **kwargs):
        super().__init__(**kwargs)
        self.sessions_page = sessions_page  # where a user stops a session (web/mysessions.py)
        self._key = secrets.token_bytes(32)
        # (client, kind) -> launch times; ordered by last use, so expired ones are in front
        self._recent: OrderedDict[tuple[str, str], deque] = OrderedDict()
        self._used_tickets: OrderedDict[str, float] = OrderedDict()  # in order of use

    @staticmethod
    def client_key(client: str) -> str:
        """What limits count a client by: its IPv4 address, or its IPv6 /64 (an IPv4
        address written as IPv6, ::ffff:a.b.c.d, counts as that IPv4 address)."""
        if ":" not in client:
            return client  # IPv4 (or no address): as the peer's address was written
        try:
            address = ipaddress.IPv6Address(client.split("%", 1)[0])
        except ValueError:
            return client
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Address(int(address) >> 64 << 64)) + "/64"

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

    def issue_ticket(self, spec_path: str, client: str = "") -> str:
        """A ticket for one launch of ``spec_path`` by ``client``; empty once the client has
        viewed page_views_per_client pages in the window."""
        if client and self.page_views_per_client and self._count(
                self.client_key(client), "views", self.page_views_per_client) is not True:
            return ""
        stamp = f"{int(time.time())}.{secrets.token_hex(6)}"
        return f"{stamp}.{self._sign(spec_path, stamp, client)}"

    def _sign(self, spec_path: str, stamp: str, client: str = "") -> str:
        message = f"{spec_path}|{stamp}|{self.client_key(client)}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    def redeem_ticket(self, ticket: str, spec_path: str, client: str = "") -> bool:
        """True once for a valid ticket issued for ``spec_path`` to ``client`` (or its /64)
        within ticket_max_age."""
        try:
            issued, nonce, signature = ticket.split(".")
            if len(issued) > 12:  # a POSIX time in seconds; a huge number overflows
                return False
            age = time.time() - int(issued)
        except ValueError:
            return False
        if not (0 <= age <= self.ticket_max_age) or ticket in self._used_tickets:
            return False
        if not hmac.compare_digest(signature, self._sign(spec_path, f"{issued}.{nonce}",
                                                         client)):
            return False
        now = time.time()
        self._used_tickets[ticket] = now
        # a used ticket is remembered only as long as it could be valid; they are in order
        # of use, so the expired ones are at the front
        while self._used_tickets:
            first, used = next(iter(self._used_tickets.items()))
            if now - used <= self.ticket_max_age:
                break
            del self._used_tickets[first]
        return True

    # ---- rate ---------------------------------------------------------------------------

    courses = None  # courses.allowance.CourseAllowance, set by the courses' start-up step

    def check_rate(self, client: str, repo_key: str, from_page: bool, course_key: str = "",
                   ref: str = "") -> None:
        """Count a launch from ``client``; refuse it over the allowance. Launches the host
        starts itself (webhook prebuilds, the CLI) have no client and are not counted.
        A launch with a course's key goes on the course's allowance first (courses/)."""
        if not client:
            return
        not_course = ""
        if course_key and self.courses is not None:
            not_course = self.courses.admit(course_key, repo_key, ref)
            if not not_course:
                return
        if matches(repo_key, self.course_repos):
            kind, limit = "course", self.per_client_course
        elif from_page:
            kind, limit = "page", self.per_client_with_page
        else:
            kind, limit = "api", self.per_client
        if not limit:
            return
        retry = self._count(self.client_key(client), kind, limit)
        if retry is not True:
            who = "you" if client.startswith(CLIENT_USER_PREFIX) else "your address"
            error = LaunchError(
                f"Too many launches from {who} ({limit} in {self.window:g} s). Try "
                f"again in {retry} s" + ("; launching from the repository's badge or "
                                         "loading page allows more." if kind == "api" else ".")
                + (f" The course key did not help: {not_course}." if not_course else ""),
                429)
            # as a used-up GPU budget says it: when, and in how long (the failed event)
            error.fields = {"renews_at": rfc3339(time.time() + retry), "retry_after": retry}
            raise error

    def _count(self, client: str, kind: str, limit: int):
        """Count one event of ``kind`` for ``client``: True if within ``limit`` per window,
        else the seconds until one is allowed again (nothing counted). Constant work per
        call: expired clients are dropped from the front of the last-use order."""
        now = time.monotonic()
        key = (client, kind)
        recent = self._recent.get(key)
        if recent is None:
            recent = self._recent[key] = deque()
        else:
            self._recent.move_to_end(key)
        while recent and now - recent[0] > self.window:
            recent.popleft()
        for _ in range(2):  # forget a couple of expired (or, when full, the oldest) clients
            if len(self._recent) <= 1:
                break
            first_key, first = next(iter(self._recent.items()))
            if first_key != key and (not first or now - first[-1] > self.window
                                     or len(self._recent) > self.max_tracked_clients):
                del self._recent[first_key]
            else:
                break
        if len(recent) >= limit:
            return int(self.window - (now - recent[0])) + 1
        recent.append(now)
        return True

    # ---- quotas -------------------------------------------------------------------------

    def check_user_sessions(self, running_for_user: int) -> None:
        """Refuse one more session of a logged-in user over max_sessions_per_user."""
        if self.max_sessions_per_user and running_for_user >= self.max_sessions_per_user:
            raise LaunchError(
                f"You have {running_for_user} sessions running, the most one person may have "
                f"here ({self.max_sessions_per_user}). Stop one on "
                f"{self.sessions_page}, then launch again.", 429)

    def check_quota(self, running: int, running_for_repo: int, repo_key: str) -> None:
        if self.max_sessions and running >= self.max_sessions:
            raise LaunchError(f"This host is full ({self.max_sessions} sessions running). "
                              "Try again in a few minutes.", 503)
        if self.max_sessions_per_repo and running_for_repo >= self.max_sessions_per_repo:
            raise LaunchError(f"{repo_key} has {running_for_repo} sessions running, the most "
                              "this host allows for one repository. Try again later.", 429)

