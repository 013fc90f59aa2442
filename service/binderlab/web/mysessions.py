"""``/sessions`` (a logged-in user's page) and ``/api/sessions`` (the same as JSON).

What a student sees of their own sessions: each repository's session with the commit it
runs, when it started and was last active, a link to open it and a button to stop it (to
start a newer commit, or to free a seat under c.LaunchLimits.max_sessions_per_user). Warm
sessions they claimed are listed too (sessions/usersessions.py): the hub's home page does
not show those. A stop with the login cookie needs the page's xsrf token (JupyterHub's
rule for cookie logins, as on the course pages).
"""

from tornado import web

from binderlab.errors import LaunchError
from binderlab.sessions.usersessions import stop_user_session, user_sessions
from binderlab.web.base import BaseHandler
from binderlab.web.pages import script_json


class SessionsBase(BaseHandler):
    def owner(self) -> str:
        """The logged-in user whose sessions these are."""
        if self.hub_auth is None:
            raise web.HTTPError(404, "This host runs without logins (authentication='none'): "
                                "sessions are anonymous and end with their tab.")
        if self.hub_user is None:
            raise web.HTTPError(401, f"Log in first: open {self.binderlab.base_url}login?next="
                                f"{self.binderlab.base_url}sessions")
        return self.hub_user["name"]

    async def sessions(self, owner: str) -> list:
        try:
            return await user_sessions(self.binderlab.launcher, owner)
        except LaunchError as e:
            raise web.HTTPError(e.status_code, str(e)) from None


class SessionsAPIHandler(SessionsBase):
    async def get(self):
        owner = self.owner()
        self.set_header("Cache-Control", "no-store")
        self.finish({"sessions": [s.to_dict() for s in await self.sessions(owner)]})


class SessionAPIHandler(SessionsBase):
    async def delete(self, sid: str):
        owner = self.owner()
        try:
            stopped = await stop_user_session(self.binderlab.launcher, owner, sid)
        except LaunchError as e:
            raise web.HTTPError(e.status_code, str(e)) from None
        self.finish({"stopped": stopped.id, "repo_key": stopped.repo_key})


class SessionsPageHandler(SessionsBase):
    async def get(self):
        if self.require_login():  # authentication "required": through the hub's login
            return
        if self.hub_auth is not None and self.hub_user is None:  # "optional": the same
            self.redirect(f"{self.binderlab.base_url}login?next="
                          f"{self.binderlab.base_url}sessions")
            return
        owner = self.owner()
        self.set_header("Cache-Control", "no-store")
        self.render("sessions.html", base_url=self.binderlab.base_url, name=owner,
                    sessions=await self.sessions(owner), settings_json=script_json({
                        "baseUrl": self.binderlab.base_url,
                        "xsrfToken": self.xsrf_token.decode()}))


default_handlers = [
    (r"sessions", SessionsPageHandler),
    (r"api/sessions", SessionsAPIHandler),
    (r"api/sessions/([A-Za-z0-9_.-]+)", SessionAPIHandler),
]
