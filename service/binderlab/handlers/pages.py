"""Pages people open: the front page and the loading page a badge links to."""

from tornado import web

from ..errors import LaunchError
from .base import BaseHandler


class LoadingPageHandler(BaseHandler):
    """``/v2/<provider>/<spec>``: follows the event stream, then opens the session."""

    def get(self, provider_prefix: str, _spec: str):
        provider, raw_spec = self.provider_and_spec("v2", provider_prefix)
        try:
            spec = provider.parse(raw_spec)
        except LaunchError as e:
            raise web.HTTPError(e.status_code, str(e)) from None
        self.render(
            "loading.html",
            base_url=self.binderlab.base_url,
            build_path=f"build/{provider.prefix}/{raw_spec}",
            repo_url=spec.repo_url,
            ref=spec.ref,
        )


class IndexHandler(BaseHandler):
    def get(self):
        self.render("index.html", base_url=self.binderlab.base_url,
                    providers=self.providers)


default_handlers = [
    (r"v2/([^/]+)/(.+)", LoadingPageHandler),
    (r"", IndexHandler),
]
