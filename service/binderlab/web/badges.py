"""``/badge.svg`` and ``/badge_logo.svg``: the launch badges READMEs and course pages show.

Our own drawings (frontend/badges/), served as they are: a badge never depends on the
repository, so browsers and image proxies (GitHub's camo) may cache it for a day.
"""

from functools import cache

from binderlab.resources import frontend_dir
from binderlab.web.base import BaseHandler


@cache
def badge_svg(name: str) -> bytes:
    return (frontend_dir() / "badges" / name).read_bytes()


class BadgeHandler(BaseHandler):
    """The plain "launch | binderlab" badge."""

    filename = "badge.svg"

    def get(self):
        self.set_cors_headers()
        self.set_header("Content-Type", "image/svg+xml")
        self.set_header("Cache-Control", "public, max-age=86400")
        self.finish(badge_svg(self.filename))

    def head(self):
        # image proxies and link checkers ask with HEAD; Tornado sends the headers only
        self.get()


class LogoBadgeHandler(BadgeHandler):
    """The badge with binderlab's logo."""

    filename = "badge_logo.svg"


default_handlers = [
    (r"badge\.svg", BadgeHandler),
    (r"badge_logo\.svg", LogoBadgeHandler),
]
