"""A stand-in LMS on 127.0.0.1: an LTI 1.3 platform and an LTI 1.1 tool consumer, as thin as
they can be (no LMS can run here).

What a real LMS does and this one does too:
- LTI 1.3: the course page's link is a form the browser posts to the tool's OIDC login
  initiation (iss, login_hint, target_link_uri, lti_message_hint, client_id,
  lti_deployment_id); the tool sends the browser to the platform's authorization endpoint,
  which answers with a form that posts a signed id_token (RS256, a test key whose public half
  is served as JWKS) and the tool's state back to the tool's redirect_uri.
- LTI 1.1: the course page's link is a form of launch parameters signed with OAuth 1.0a
  HMAC-SHA1 (oauthlib, consumer key and secret) posted to the tool's launch URL.
Both pages submit themselves on load, as LMS launch pages do, and carry a button for a
browser without scripts; `form_of()` reads such a form for an HTTP client.

Each launch is registered first (``launch13`` / ``launch11``: who, which role, which custom
parameters), and the platform keeps every id_token it posted so a test can replay one.
"""

import html
import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from oauthlib.oauth1 import SIGNATURE_TYPE_BODY, Client

CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
CLIENT_ID = "binderlab-tool-1"
DEPLOYMENT_ID = "deployment-1"
CONSUMER_KEY = "binderlab-course-key"


@dataclass
class Launch13:
    sub: str
    roles: list[str]
    custom: dict[str, str] = field(default_factory=dict)
    target_link_uri: str = ""
    email: str = ""
    expires_in: int = 300  # seconds from signing; negative: already expired
    wrong_key: bool = False  # signed with a key the JWKS does not hold


@dataclass
class Launch11:
    params: dict[str, str]
    secret: str  # the consumer secret it is signed with (a wrong one: a bad signature)
    launch_url: str


def form_page(action: str, fields: dict[str, str], title: str) -> bytes:
    inputs = "\n".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                       for k, v in fields.items())
    return f"""<!doctype html><html><head><title>{html.escape(title)}</title></head>
<body><form id="lti" method="post" action="{html.escape(action)}">
{inputs}
<button type="submit" id="go">{html.escape(title)}</button></form>
<script>document.getElementById("lti").submit();</script></body></html>""".encode()


def form_of(page: str) -> tuple[str, dict[str, str]]:
    """The action and fields of a page's auto-submitted form (for an HTTP client that does
    what the browser does with it)."""
    action = html.unescape(re.search(r'<form [^>]*action="([^"]*)"', page).group(1))
    fields = {html.unescape(k): html.unescape(v) for k, v in re.findall(
        r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page)}
    return action, fields


class StandInLMS:
    def __init__(self, hub_url: str = ""):
        self.hub_url = hub_url.rstrip("/")  # the tool (the hub), as the LMS registers it
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "stand-in-lms-key-1"
        self.consumer_secret = secrets.token_hex(16)
        self.launches13: dict[str, Launch13] = {}
        self.launches11: dict[str, Launch11] = {}
        self.id_tokens: list[dict[str, str]] = []  # what /authorize posted, in order
        self.refusals: list[str] = []  # authorization requests it refused, and why
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    # ---- the hub's side of the registration (what an operator puts in the hub config) ----

    def env13(self, username_key: str = "sub") -> dict[str, str]:
        """What the example hub overlay deploy/docker/lms/hub_overlay_lti13.py reads."""
        return {"BINDERLAB_LTI13_ISSUER": self.url, "BINDERLAB_LTI13_CLIENT_ID": CLIENT_ID,
                "BINDERLAB_LTI13_AUTHORIZE_URL": self.url + "/authorize",
                "BINDERLAB_LTI13_JWKS_URL": self.url + "/jwks",
                "BINDERLAB_LTI_USERNAME_KEY": username_key}

    def env11(self, username_key: str = "user_id") -> dict[str, str]:
        """What deploy/docker/lms/hub_overlay_lti11.py reads."""
        return {"BINDERLAB_LTI11_CONSUMER_KEY": CONSUMER_KEY,
                "BINDERLAB_LTI11_CONSUMER_SECRET": self.consumer_secret,
                "BINDERLAB_LTI_USERNAME_KEY": username_key}

    # ---- course links ---------------------------------------------------------------------

    def launch13(self, launch: Launch13) -> str:
        """Register a launch; the URL of the course page link that starts it."""
        hint = uuid.uuid4().hex
        self.launches13[hint] = launch
        return f"{self.url}/course13/{hint}"

    def launch11(self, user_id: str, roles: str, custom: dict[str, str] | None = None,
                 secret: str | None = None, launch_query: str = "",
                 extra: dict[str, str] | None = None) -> str:
        hint = uuid.uuid4().hex
        params = {
            "lti_message_type": "basic-lti-launch-request", "lti_version": "LTI-1p0",
            "resource_link_id": "week-1-notebook", "resource_link_title": "Week 1",
            "context_id": "physics-101", "context_label": "PHYS101",
            "user_id": user_id, "roles": roles,
            "lis_person_contact_email_primary": f"{user_id}@example.edu",
            **{f"custom_{k}": v for k, v in (custom or {}).items()}, **(extra or {}),
        }
        url = f"{self.hub_url}/hub/lti/launch" + (f"?{launch_query}" if launch_query else "")
        self.launches11[hint] = Launch11(params, secret or self.consumer_secret, url)
        return f"{self.url}/course11/{hint}"

    def signed11(self, hint: str) -> tuple[str, dict[str, str]]:
        """The launch form's action and signed fields (a fresh nonce and timestamp)."""
        launch = self.launches11[hint]
        client = Client(CONSUMER_KEY, client_secret=launch.secret,
                        signature_type=SIGNATURE_TYPE_BODY)
        _, _, body = client.sign(launch.launch_url, http_method="POST",
                                 body=urlencode(launch.params),
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        return launch.launch_url, {k: v[0] for k, v in parse_qs(body).items()}

    def id_token(self, launch: Launch13, nonce: str) -> str:
        now = int(time.time())
        claims = {
            "iss": self.url, "aud": CLIENT_ID, "sub": launch.sub, "nonce": nonce,
            "iat": now, "exp": now + launch.expires_in,
            CLAIM + "message_type": "LtiResourceLinkRequest",
            CLAIM + "version": "1.3.0",
            CLAIM + "deployment_id": DEPLOYMENT_ID,
            CLAIM + "target_link_uri": launch.target_link_uri or self.hub_url + "/hub",
            CLAIM + "resource_link": {"id": "week-1-notebook", "title": "Week 1"},
            CLAIM + "roles": launch.roles,
            CLAIM + "context": {"id": "physics-101", "label": "PHYS101",
                                "title": "Physics 101"},
            CLAIM + "custom": launch.custom,
            **({"email": launch.email} if launch.email else {}),
        }
        key = self.other_key if launch.wrong_key else self.key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})

    # ---- HTTP -----------------------------------------------------------------------------

    def _handler(self):
        lms = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status: int, body: bytes, kind="text/html; charset=utf-8"):
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                parts = url.path.strip("/").split("/")
                if url.path == "/jwks":
                    jwk = RSAAlgorithm.to_jwk(lms.key.public_key(), as_dict=True)
                    jwk.update(kid=lms.kid, alg="RS256", use="sig")
                    return self.reply(200, json.dumps({"keys": [jwk]}).encode(),
                                      "application/json")
                if parts[0] == "course13" and parts[-1] in lms.launches13:
                    launch = lms.launches13[parts[-1]]
                    return self.reply(200, form_page(
                        f"{lms.hub_url}/hub/lti13/oauth_login",
                        {"iss": lms.url, "login_hint": parts[-1],
                         "target_link_uri": launch.target_link_uri or lms.hub_url + "/hub",
                         "lti_message_hint": parts[-1], "client_id": CLIENT_ID,
                         "lti_deployment_id": DEPLOYMENT_ID}, "Open the course notebook"))
                if parts[0] == "course11" and parts[-1] in lms.launches11:
                    action, fields = lms.signed11(parts[-1])
                    return self.reply(200, form_page(action, fields,
                                                     "Open the course notebook"))
                if url.path == "/authorize":
                    return self.authorize(query)
                self.reply(404, b"not here")

            def authorize(self, query: dict[str, str]):
                """The OIDC authorization endpoint (implicit flow, form_post): what a real
                platform checks before it signs an id_token for the logged-in user."""
                expected = {"response_type": "id_token", "scope": "openid",
                            "response_mode": "form_post", "prompt": "none",
                            "client_id": CLIENT_ID,
                            "redirect_uri": f"{lms.hub_url}/hub/lti13/oauth_callback"}
                wrong = [k for k, v in expected.items() if query.get(k) != v]
                launch = lms.launches13.get(query.get("login_hint", ""))
                if launch is None or query.get("lti_message_hint") != query.get("login_hint"):
                    wrong.append("login_hint")
                if not query.get("nonce") or not query.get("state"):
                    wrong.append("nonce/state")
                if wrong:
                    lms.refusals.append(", ".join(wrong))
                    return self.reply(400, f"bad authorization request: {wrong}".encode())
                fields = {"id_token": lms.id_token(launch, query["nonce"]),
                          "state": query["state"]}
                lms.id_tokens.append(fields)
                self.reply(200, form_page(query["redirect_uri"], fields, "Continue"))

        return Handler
