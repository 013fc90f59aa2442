"""LMS launches: jupyterhub-ltiauthenticator's LTI 1.3 and 1.1 authenticators, landing the
student in the course notebook.

ltiauthenticator verifies the launch (LTI 1.3: the OIDC third-party-initiated login, the
platform's id_token signature from its JWKS, issuer, audience, expiry, nonce and state;
LTI 1.1: the OAuth 1.0a HMAC-SHA1 signature, timestamp and nonce) and names the user
(``username_key``). binderlab adds, before the hub makes or updates the user:

- the course notebook from the launch (``course.py``), checked with the binder service,
  which says whether it launches that repository at all; a launch that names none, or one
  the service refuses, ends on the hub's error page with what to fix, and no user is made;
- the instructor role: people whose LMS role is one of ``instructor_roles`` are put in the
  JupyterHub group ``instructor_group`` (``Authenticator.manage_groups``; other groups a
  user has are kept), which the binder service sees in its HubOAuth user model;

and after the login sends the browser to the binder service's loading page for that
notebook, which launches the user's own named server and opens the file.

Hub-side code (the hub loads it as ``c.JupyterHub.authenticator_class = "binderlab-lti13"``
or ``"binderlab-lti11"``): imports the contract only.
"""

import json
import os
from urllib.parse import quote

from ltiauthenticator.lti11.auth import LTI11Authenticator
from ltiauthenticator.lti11.handlers import LTI11AuthenticateHandler
from ltiauthenticator.lti13.auth import LTI13Authenticator
from ltiauthenticator.lti13.constants import LTI13_CUSTOM_CLAIM
from ltiauthenticator.lti13.handlers import LTI13CallbackHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Bool, Float, List, Unicode, default
from traitlets.config import Configurable

from binderlab import contract
from binderlab.authenticators import course

ROLES_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/roles"
TARGET_LINK_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/target_link_uri"


class CourseLaunch(Configurable):
    """Settings and steps both LTI versions share (``c.CourseLaunch.*`` in the hub config)."""

    service_url = Unicode(
        help="""The binder service's public URL (ending in /), where a launch sends the
        browser: <service_url>v2/<repo>/<ref>?labpath=<file>. Default: what `binderlab up`
        passes to the hub (BINDERLAB_SERVICE_URL, i.e. c.BinderLab.public_url).""",
    ).tag(config=True)

    @default("service_url")
    def _default_service_url(self):
        return os.environ.get(contract.ENV_SERVICE_URL, "http://127.0.0.1:8585/")

    instructor_group = Unicode(
        help="""The JupyterHub group of the people an LMS launch says teach the course
        (default 'instructors'; `binderlab up` passes c.BinderLab.instructor_group).
        Membership follows each launch's role: a later launch as a learner takes it away.""",
    ).tag(config=True)

    @default("instructor_group")
    def _default_instructor_group(self):
        return os.environ.get(contract.ENV_INSTRUCTOR_GROUP) or contract.INSTRUCTOR_GROUP

    instructor_roles = List(
        Unicode(), default_value=list(course.DEFAULT_INSTRUCTOR_ROLES),
        help="""LMS roles that put a person in instructor_group, by principal name
        (case-insensitive): 'Instructor' matches the LTI 1.3 role
        http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor, its sub-roles
        (.../membership/Instructor#TeachingAssistant) and LTI 1.1's
        urn:lti:role:ims/lis/Instructor or plain 'Instructor'. Default: Instructor,
        TeachingAssistant, ContentDeveloper.""",
    ).tag(config=True)

    check_with_service = Bool(
        True,
        help="""Ask the binder service (GET <service_url>api/launchable/<repo>/<ref>) whether
        it launches the course repository before logging the person in (default True): a
        banned or unknown repository then ends on the hub's error page, with no hub user
        made. Off: the loading page reports it after the login.""",
    ).tag(config=True)

    check_timeout = Float(
        10, help="Seconds to wait for the binder service's answer to that check "
        "(default 10); past it the launch fails with a 503 that says to try again.",
    ).tag(config=True)

    async def check_launchable(self, link: course.CourseLink) -> None:
        """The service's own policy decides (banned/allowed repositories, known providers):
        raise HTTPError with its message when it would refuse the launch."""
        if not self.check_with_service:
            return
        url = (f"{self.service_url.rstrip('/')}/api/launchable/{link.repo}/"
               f"{quote(link.ref, safe='')}")
        try:
            await AsyncHTTPClient().fetch(url, request_timeout=self.check_timeout)
        except HTTPClientError as e:
            if e.code >= 599 or e.response is None:
                raise web.HTTPError(503, f"The binder service did not answer ({e}); try the "
                                    "link again in a minute.") from None
            try:
                message = json.loads(e.response.body)["message"]
            except (ValueError, KeyError, TypeError):
                message = f"the binder service answered {e.code}"
            status = e.code if 400 <= e.code < 500 else 502
            raise web.HTTPError(status, f"This course link cannot be launched: {message} "
                                "Ask the course's instructor to fix the link in the LMS.") from None
        except OSError as e:
            raise web.HTTPError(503, f"The binder service is not reachable ({e}); try the "
                                "link again in a minute.") from None

    async def course_auth_model(self, authenticator, handler, model: dict, custom: dict,
                                target_links: list[str], roles) -> dict:
        """Add the course link (kept on the handler for the redirect) and the groups to the
        auth model ltiauthenticator made; HTTPError 400 for a launch that names no course."""
        try:
            link = course.course_link(custom, target_links, self.service_url)
        except course.BadLaunch as e:
            raise web.HTTPError(400, str(e)) from None
        await self.check_launchable(link)
        handler.binderlab_course_url = link.launch_url(self.service_url)
        name = authenticator.normalize_username(model["name"])
        user = handler.find_user(name)
        current = {g.name for g in user.groups} if user else set()
        instructor = course.is_instructor(roles, self.instructor_roles)
        model["groups"] = course.groups_after_launch(current, instructor,
                                                     self.instructor_group)
        authenticator.log.info("LMS launch: %s (%s) -> %s", name,
                               "instructor" if instructor else "learner",
                               handler.binderlab_course_url)
        return model


class CourseLTI13CallbackHandler(LTI13CallbackHandler):
    """ltiauthenticator's LTI 1.3 launch handler; after the login it goes on to the course
    notebook the verified id_token names (not the login request's unsigned target)."""

    binderlab_course_url = ""

    def get_next_url(self, user=None):
        return self.binderlab_course_url or super().get_next_url(user)


class CourseLTI13Authenticator(LTI13Authenticator):
    """LTI 1.3 launches into a course notebook (``c.JupyterHub.authenticator_class =
    "binderlab-lti13"``; the platform settings are LTI13Authenticator's)."""

    callback_handler = CourseLTI13CallbackHandler

    @default("manage_groups")
    def _default_manage_groups(self):
        return True  # the instructor group follows the LMS role (see CourseLaunch)

    async def authenticate(self, handler, data=None):
        model = await super().authenticate(handler, data)
        data = data or {}
        return await CourseLaunch(parent=self).course_auth_model(
            self, handler, model, custom=data.get(LTI13_CUSTOM_CLAIM) or {},
            target_links=[data.get(TARGET_LINK_CLAIM) or ""], roles=data.get(ROLES_CLAIM))


class CourseLTI11AuthenticateHandler(LTI11AuthenticateHandler):
    """ltiauthenticator's LTI 1.1 launch handler; after the login it goes on to the course
    notebook the signed launch names."""

    binderlab_course_url = ""

    async def post(self):
        user = await self.login_user()
        if user is None:
            raise web.HTTPError(403, "The LMS launch did not log anyone in.")
        self.redirect(self.binderlab_course_url or self.get_next_url(user))


class CourseLTI11Authenticator(LTI11Authenticator):
    """LTI 1.1 launches into a course notebook (``c.JupyterHub.authenticator_class =
    "binderlab-lti11"``; the consumer keys are LTI11Authenticator's)."""

    @default("manage_groups")
    def _default_manage_groups(self):
        return True

    def get_handlers(self, app):
        return [(path, CourseLTI11AuthenticateHandler if path == "/lti/launch" else handler)
                for path, handler in super().get_handlers(app)]

    async def authenticate(self, handler, data=None):
        model = await super().authenticate(handler, data)
        if not model:
            return model
        args = model["auth_state"]  # every signed launch parameter but the oauth_* ones
        custom = {k.removeprefix("custom_"): v for k, v in args.items()
                  if k.startswith("custom_")}
        # LTI 1.1 has no target link claim: a launch link in custom_next (what
        # ltiauthenticator follows) or in the launch URL's ?next= names the notebook
        targets = [custom.pop("next", ""), handler.get_query_argument("next", "")]
        return await CourseLaunch(parent=self).course_auth_model(
            self, handler, model, custom=custom, target_links=targets,
            roles=args.get("roles", ""))
