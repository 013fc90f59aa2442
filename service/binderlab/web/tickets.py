"""Logged-in launches from a course page on another origin (thebe), without the login cookie.

thebe 0.9.3 opens the event stream with ``new EventSource(url)`` (no ``withCredentials``), so a
browser never sends the service's login cookie on it from another origin, whatever the CORS
answer; and JupyterHub's OAuth takes a cookie on a non-navigation request only with the
page's xsrf token, which another origin cannot read. So the page gets the login another way:

1. it opens ``<base_url>login_ticket?origin=<its origin>`` in a window of its own (a
   top-level page of this service: the login cookie is sent, or the hub's login comes first);
2. that page mints a **login ticket** (random, single use, valid ``TICKET_TTL`` seconds,
   bound to the user and that origin; the origin must be in
   ``c.BinderLab.login_ticket_origins``) and hands it to the course page with
   ``postMessage`` addressed to that origin only, then closes;
3. the course page gives thebe ``binderUrl = <base_url>as/<ticket>``: thebe's stream
   ``<base_url>as/<ticket>/build/<provider>/<spec>`` redeems the ticket (with the browser's
   ``Origin`` header matching) and launches as that user. The ticket is in a URL, but it
   opens one launch stream within a minute and nothing after; the session's own token comes
   in the ``ready`` event as for any launch.
"""

import json
import secrets
import time
import weakref
from dataclasses import dataclass

from tornado import web
from tornado.escape import xhtml_escape

from binderlab.web.base import BaseHandler
from binderlab.web.build import BuildHandler

TICKET_TTL = 60  # seconds from minting to the stream that redeems it


@dataclass
class LoginTicket:
    user: dict  # the hub's user model, as HubOAuth gave it
    origin: str
    expires: float


class LoginTickets:
    """Tickets of one service process (a launch stream goes to the process that minted
    its ticket when there is one replica, as deploy/ runs it)."""

    def __init__(self):
        self._tickets: dict[str, LoginTicket] = {}

    def mint(self, user: dict, origin: str) -> str:
        now = time.monotonic()
        # forget expired ones so the table stays small
        self._tickets = {k: t for k, t in self._tickets.items() if t.expires > now}
        ticket = secrets.token_urlsafe(32)
        self._tickets[ticket] = LoginTicket(user, origin, now + TICKET_TTL)
        return ticket

    def redeem(self, ticket: str, origin: str | None) -> dict | None:
        """The ticket's user, once; None when unknown, used, expired or sent from
        another origin (then it is spent too: a leaked ticket is not retried)."""
        found = self._tickets.pop(ticket, None)
        if found is None or found.expires < time.monotonic() or found.origin != origin:
            return None
        return found.user


_stores: "weakref.WeakKeyDictionary[object, LoginTickets]" = weakref.WeakKeyDictionary()


def tickets_of(binderlab) -> LoginTickets:
    if binderlab not in _stores:
        _stores[binderlab] = LoginTickets()
    return _stores[binderlab]


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Logged in</title></head>
<body><p>Logged in as <b>{user}</b>. You can close this window and go back to the course page.</p>
<script nonce="{nonce}">
  const message = {message};
  if (window.opener) {{ window.opener.postMessage(message, message.origin); window.close(); }}
</script></body></html>
"""


class LoginTicketHandler(BaseHandler):
    """``<base_url>login_ticket?origin=<origin>``: a login ticket for a course page there."""

    async def get(self):
        binderlab = self.binderlab
        if self.hub_auth is None:
            raise web.HTTPError(404, "This host runs without logins (authentication='none').")
        origin = self.get_argument("origin", "")
        if origin not in binderlab.login_ticket_origins:
            raise web.HTTPError(
                403, f"Pages on {origin or '(no origin)'} may not launch as a logged-in user: "
                "the host's operator lists the course sites that may in "
                "c.BinderLab.login_ticket_origins.")
        if self.hub_user is None:
            self.redirect(self.get_login_url())  # back here after the hub's login
            return
        ticket = tickets_of(binderlab).mint(self.hub_user, origin)
        message = {"type": "binderlab-login", "origin": origin,
                   "user": self.hub_user["name"],
                   "binderUrl": f"{binderlab.public_url.rstrip('/')}/as/{ticket}"}
        nonce = secrets.token_urlsafe(16)
        self.set_header("Content-Security-Policy",
                        f"default-src 'none'; script-src 'nonce-{nonce}'")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Referrer-Policy", "no-referrer")
        self.finish(PAGE.format(
            user=xhtml_escape(self.hub_user["name"]), nonce=nonce,
            message=json.dumps(message).replace("<", "\\u003c")))


class TicketBuildHandler(BuildHandler):
    """``<base_url>as/<ticket>/build/<provider>/<spec>``: the event stream, as the ticket's
    user."""

    async def prepare(self):
        ticket = self.path_args[0] if self.path_args else ""
        if self.request.method == "OPTIONS":
            return
        user = tickets_of(self.binderlab).redeem(ticket, self.request.headers.get("Origin"))
        if user is None:
            raise web.HTTPError(
                403, "This login link is unknown, used or expired (they last "
                f"{TICKET_TTL} s and open one launch): log in again on the course page.")
        self.hub_user = user

    def provider_and_spec(self, route: str, provider_prefix: str):
        return super().provider_and_spec(f"as/{self.path_args[0]}/{route}", provider_prefix)

    async def get(self, _ticket: str, provider_prefix: str, spec: str):
        return await super().get(provider_prefix, spec)

    def options(self, *args):
        return super().options()


default_handlers = [(r"login_ticket", LoginTicketHandler),
                    (r"as/([^/]+)/build/([^/]+)/(.+)", TicketBuildHandler)]
