"""Pages people open: the front page (the launch form) and the loading page a badge links to."""

import json

from tornado import web

from binderlab.errors import LaunchError
from binderlab.resources import frontend_dir
from binderlab.web.base import BaseHandler


def script_json(value) -> str:
    """JSON to embed in a <script> element: nothing in it can end the element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class LoadingPageHandler(BaseHandler):
    """``/v2/<provider>/<spec>``: follows the event stream, then opens the session."""

    def get(self, provider_prefix: str, _spec: str):
        if self.require_login():
            return
        provider, raw_spec = self.provider_and_spec("v2", provider_prefix)
        try:
            spec = provider.parse(raw_spec)
        except LaunchError as e:
            raise web.HTTPError(e.status_code, str(e)) from None
        params = {}
        gpu = self.get_argument("gpu", None)
        if gpu is not None:
            params["gpu"] = gpu  # /build checks it and says what is wrong
        course = self.get_argument("course", "")
        if course:
            params["course"] = course  # a course's launch allowance (courses/allowance.py)
        limits = getattr(self.binderlab, "limits", None)
        if limits is not None:
            # a person's page view: launches with it count against the allowance for people
            # (bound to this client; none once it viewed too many pages)
            ticket = limits.issue_ticket(f"{provider.prefix}/{raw_spec}", self.client)
            if ticket:
                params["launch_ticket"] = ticket
        # each view carries a fresh single-use ticket: never serve this page from a cache
        self.set_header("Cache-Control", "no-store")
        self.render(
            "loading.html",
            base_url=self.binderlab.base_url,
            repo_url=spec.repo_url,
            ref=spec.ref or "this version",
            environment_url=f"{self.binderlab.base_url}environment/{provider.prefix}/{raw_spec}",
            settings_json=script_json(
                {
                    "buildUrl": f"{self.binderlab.base_url}build/{provider.prefix}/{raw_spec}",
                    "buildParams": params,
                    # logged-in mode: the event stream's fetch() proves it comes from this
                    # page (JupyterHub's xsrf rule for cookie logins); none without logins
                    **({"xsrfToken": self.xsrf_token.decode()} if self.hub_user else {}),
                }
            ),
        )


class IndexHandler(BaseHandler):
    """``/``: paste a repository URL, get a launch link, badges and a thebe snippet."""

    def get(self):
        if self.require_login():
            return
        gpus = getattr(self.binderlab, "gpus", None)
        gpu_max = min(gpus.max_gpus_per_session, len(gpus.devices)) if gpus else 0
        thebe = frontend_dir() / "static" / "vendor" / "thebe" / "index.js"
        self.render(
            "index.html",
            base_url=self.binderlab.base_url,
            settings_json=script_json(
                {
                    "baseUrl": self.binderlab.base_url,
                    "publicUrl": self.binderlab.public_url,
                    "providers": [p.info() for p in self.providers.values()],
                    "gpuMax": gpu_max,
                    "thebeInstalled": thebe.is_file(),
                    # logged-in mode: the prebuild's fetch() of the event stream (see above)
                    **({"xsrfToken": self.xsrf_token.decode()} if self.hub_user else {}),
                }
            ),
        )


default_handlers = [
    (r"v2/([^/]+)/(.+)", LoadingPageHandler),
    (r"", IndexHandler),
]
