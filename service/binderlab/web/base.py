"""Shared handler base: typed access to what the app put in the Tornado settings."""

from typing import TYPE_CHECKING

from tornado import web

from binderlab import contract
from binderlab.repos import netguard
from binderlab.web.auth import HubLogin

if TYPE_CHECKING:
    from binderlab.app import BinderLab
    from binderlab.launch.pipeline import Pipeline
    from binderlab.repos.providers import RepoProvider


class BaseHandler(HubLogin, web.RequestHandler):
    @property
    def binderlab(self) -> "BinderLab":
        return self.settings["binderlab"]

    @property
    def pipeline(self) -> "Pipeline":
        return self.binderlab.pipeline

    @property
    def providers(self) -> dict[str, "RepoProvider"]:
        return self.binderlab.providers

    @property
    def hub_user_name(self) -> str:
        """The logged-in hub user's name; '' for an anonymous request."""
        return self.hub_user["name"] if self.hub_user else ""

    @property
    def client(self) -> str:
        """Who per-client limits count this request as: a logged-in user by hub name (a
        class behind one address is many people), anyone else by address."""
        if self.hub_user_name:
            return contract.CLIENT_USER_PREFIX + self.hub_user_name
        return self.client_address

    @property
    def client_address(self) -> str:
        """The client's address: the peer's, or what a trusted reverse proxy forwards."""
        peer = self.request.remote_ip or ""
        networks = self.binderlab.trusted_proxy_networks
        if not networks or not _in(peer, networks):
            return peer
        forwarded = [a.strip() for a in self.request.headers.get("X-Forwarded-For", "")
                     .split(",") if a.strip()]
        # the right-most address a trusted proxy did not add is the client's
        for address in reversed(forwarded):
            if not _in(address, networks):
                return address
        return self.request.headers.get("X-Real-Ip", peer).strip() or peer

    def set_default_headers(self):
        self.set_header("X-Content-Type-Options", "nosniff")

    def set_cors_headers(self):
        origin = self.binderlab.cors_allow_origin
        if origin:
            self.set_header("Access-Control-Allow-Origin", origin)

    def write_error(self, status_code, **kwargs):
        message = self._reason
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        self.set_cors_headers()
        self.finish({"status": status_code, "message": message})

    def provider_and_spec(self, route: str, provider_prefix: str) -> tuple["RepoProvider", str]:
        """The provider named in the URL and the raw (still percent-encoded) spec after it.

        Tornado unescapes path arguments, which would turn a git spec's escaped ``%2F`` into
        the ``/`` that separates URL and ref; the spec is therefore cut from the raw path.
        """
        provider = self.providers.get(provider_prefix)
        if provider is None:
            raise web.HTTPError(
                404, f"Unknown repository provider {provider_prefix!r}; this host knows: "
                f"{', '.join(sorted(self.providers))}."
            )
        prefix = f"{self.binderlab.base_url}{route}/"
        raw_spec = self.request.path[len(prefix):].split("/", 1)[-1]
        if not self.request.path.startswith(prefix) or not raw_spec:
            raise web.HTTPError(400, "The repository spec is missing.")
        return provider, raw_spec


def _in(address: str, networks) -> bool:
    try:  # the same address-in-networks rule as the SSRF guard (IPv4-mapped IPv6 unmapped)
        return netguard.blocked_address(address, networks)
    except ValueError:
        return False
