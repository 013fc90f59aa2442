"""Logged-in mode: the binder service knows its users the JupyterHub way.

The service is a JupyterHub OAuth client (``jupyterhub.services.auth.HubOAuth``, as
BinderHub's authenticated mode is): a browser without the service's login cookie is sent to
the hub's OAuth authorization (the hub's own login, with whatever authenticator the
operator configured), comes back to ``<base_url>oauth_callback`` and then to the page it
asked for. No password or token store of our own.
"""

import secrets
from pathlib import Path

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web

from binderlab import contract

# the hub registers the service's OAuth client under this id (jupyterhub_config.py)
OAUTH_CLIENT_ID = f"service-{contract.SERVICE_NAME}"


def hub_oauth(binderlab) -> HubOAuth:
    """The service's HubOAuth, from the launcher's hub URLs and service token."""
    launcher = binderlab.launcher
    return HubOAuth(
        api_url=launcher.api_url(""), api_token=launcher.api_token,
        hub_host=launcher.hub_url.rstrip("/"), hub_prefix="/hub/",
        base_url=binderlab.base_url, oauth_client_id=OAUTH_CLIENT_ID,
        oauth_redirect_uri=contract.oauth_callback_url(binderlab.public_url),
        # a user's OAuth token opens this service, nothing else of theirs
        access_scopes={f"access:services!service={contract.SERVICE_NAME}"},
        cache_max_age=60,
    )


def cookie_secret(state_path: Path) -> bytes:
    """The key Tornado signs the OAuth state and login cookies with; kept in the state
    folder so logins survive a service restart."""
    path = state_path / "cookie_secret"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip().encode()


class HubLogin(HubOAuthenticated):
    """What every handler knows of the hub login: ``hub_user`` (the model JupyterHub gave
    for the request's login cookie, None when anonymous or without logins) and
    ``require_login()`` (JupyterHub's own login redirect, with its OAuth state cookie)."""

    hub_user: dict | None = None

    @property
    def hub_auth(self) -> HubOAuth | None:
        return self.settings["binderlab"].hub_auth

    @hub_auth.setter
    def hub_auth(self, value):  # HubAuthenticated may assign one; ours comes from the app
        pass

    async def prepare(self):
        auth = self.hub_auth
        if auth is None or not self.get_cookie(auth.cookie_name):
            return
        model = await auth.get_user(self, sync=False)
        # a token without this service's access scope (e.g. one meant for a session) is
        # not a login here
        if model and auth.check_scopes(auth.access_scopes, model):
            self.hub_user = model

    def get_current_user(self):
        return self.hub_user

    @property
    def login_required(self) -> bool:
        return self.settings["binderlab"].authentication == "required"

    def require_login(self) -> bool:
        """With authentication='required' and no login: send the browser to the hub's login
        (it comes back here); True when it was sent."""
        if self.hub_user is not None or not self.login_required:
            return False
        self.redirect(self.get_login_url())
        return True


class OAuthCallbackHandler(HubOAuthCallbackHandler):
    """``<base_url>oauth_callback``: JupyterHub's own handler, with the service's HubOAuth."""

    @property
    def hub_auth(self) -> HubOAuth:
        auth = self.settings["binderlab"].hub_auth
        if auth is None:
            raise web.HTTPError(404, "This host runs without logins (authentication='none').")
        return auth

    @hub_auth.setter
    def hub_auth(self, value):  # HubAuthenticated assigns it; ours comes from the app
        pass


class LoginHandler(HubLogin, web.RequestHandler):
    """``<base_url>login?next=<path>``: log in at the hub (with authentication='optional'
    nothing else asks for it), then go on to ``next``, a path on this service."""

    async def get(self):
        binderlab = self.settings["binderlab"]
        if self.hub_auth is None:
            raise web.HTTPError(404, "This host runs without logins (authentication='none').")
        if self.hub_user is None:
            self.redirect(self.get_login_url())
            return
        target = self.get_argument("next", binderlab.base_url)
        # only a path of this service: an open redirect would lend our login to any site
        if not target.startswith(binderlab.base_url) or target.startswith("//") \
                or "\\" in target:
            target = binderlab.base_url
        self.redirect(target)


default_handlers = [(r"oauth_callback", OAuthCallbackHandler), (r"login", LoginHandler)]
