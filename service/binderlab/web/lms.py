"""What LMS launches ask of the binder service (binderlab/authenticators/lti.py is the hub side).

- ``api/launchable/<provider>/<spec>``: would this host launch that repository? The hub asks
  before it logs a student in from an LMS link, so a link to a banned, not allowed or
  malformed repository ends on the hub's error page with this service's reason, and no hub
  user is made for nothing. It applies the host's own rules (providers, spec syntax,
  banned_specs / allowed_specs) and contacts no repository host.
- ``api/user``: who the request's login is, with the groups the hub gave (HubOAuth's user
  model carries them: a hub token's identify scopes include the user's groups) and whether
  the person is an instructor (member of c.BinderLab.instructor_group).
"""

from tornado import web

from binderlab.errors import LaunchError
from binderlab.repos.providers import repo_key
from binderlab.web.base import BaseHandler


class LaunchableHandler(BaseHandler):
    def get(self, provider_prefix: str, _spec: str):
        provider, raw_spec = self.provider_and_spec("api/launchable", provider_prefix)
        try:
            spec = provider.parse(raw_spec)
            key = repo_key(spec, list(self.providers.values()))
            limits = getattr(self.binderlab, "limits", None)
            if limits is not None:
                limits.check_spec(key)
        except LaunchError as e:
            raise web.HTTPError(e.status_code, str(e)) from None
        self.finish({"launchable": True, "repo_key": key, "repo_url": spec.repo_url})


class UserHandler(BaseHandler):
    def get(self):
        if self.hub_auth is None:
            raise web.HTTPError(404, "This host runs without logins (authentication='none').")
        user = self.hub_user
        if user is None:
            raise web.HTTPError(403, f"Not logged in: open {self.binderlab.base_url}login "
                                "first.")
        groups = sorted(user.get("groups") or [])
        self.set_header("Cache-Control", "no-store")
        self.finish({"name": user["name"], "groups": groups,
                     "instructor": self.binderlab.instructor_group in groups})


default_handlers = [
    (r"api/launchable/([^/]+)/(.+)", LaunchableHandler),
    (r"api/user", UserHandler),
]
