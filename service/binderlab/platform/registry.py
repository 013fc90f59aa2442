"""Ask a container registry whether an image exists (registry HTTP API v2).

Used when images live in a registry rather than in the local engine (the builder pushes,
sessions pull): a build is complete exactly when its manifest can be fetched. Credentials
come from the Docker client config (``$DOCKER_CONFIG/config.json``, ``auths``), the same
ones `docker push` uses; registries that answer 401 with a Bearer challenge get a token
from their realm first.
"""

import json
import os
import re
from pathlib import Path
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from binderlab.contract import split_tag

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


def split_image(image: str) -> tuple[str, str, str]:
    """'host:5000/a/b:tag' -> ('host:5000', 'a/b', 'tag'). The first part must be a
    registry host (it has a '.' or ':' or is 'localhost')."""
    first, _, rest = image.partition("/")
    if not rest or not ("." in first or ":" in first or first == "localhost"):
        raise ValueError(f"{image!r} does not name a registry host")
    name, tag = split_tag(rest)
    return first, name, tag


def docker_auth(host: str) -> str | None:
    """The base64 'user:password' the Docker client config holds for ``host``."""
    config = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"
    try:
        auths = json.loads(config.read_text()).get("auths", {})
    except (OSError, ValueError):
        return None
    for key in (host, f"https://{host}", f"http://{host}"):
        if key in auths and auths[key].get("auth"):
            return auths[key]["auth"]
    return None


class Registry:
    def __init__(self, insecure_hosts: list[str], timeout: float = 20):
        self.insecure_hosts = set(insecure_hosts)
        self.timeout = timeout
        self.client = AsyncHTTPClient()

    def _base(self, host: str) -> str:
        scheme = "http" if host in self.insecure_hosts else "https"
        return f"{scheme}://{host}"

    async def image_exists(self, image: str) -> bool:
        host, name, tag = split_image(image)
        url = f"{self._base(host)}/v2/{name}/manifests/{tag}"
        headers = {"Accept": MANIFEST_TYPES}
        auth = docker_auth(host)
        if auth:
            headers["Authorization"] = f"Basic {auth}"
        response = await self._fetch(url, headers)
        if response.code == 401:
            token = await self._bearer_token(response.headers.get("WWW-Authenticate", ""),
                                             name, auth)
            if token:
                headers["Authorization"] = f"Bearer {token}"
                response = await self._fetch(url, headers)
        if response.code in (200, 404):
            return response.code == 200
        raise RuntimeError(f"Registry {host} answered {response.code} for {name}:{tag}")

    async def _fetch(self, url: str, headers: dict):
        request = HTTPRequest(url, method="HEAD", headers=headers,
                              request_timeout=self.timeout)
        try:
            return await self.client.fetch(request, raise_error=False)
        except (HTTPClientError, OSError) as e:
            raise RuntimeError(f"Registry not reachable at {url}: {e}") from None

    async def _bearer_token(self, challenge: str, name: str, auth: str | None) -> str | None:
        if not challenge.lower().startswith("bearer "):
            return None
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", "")
        if not realm:
            return None
        params.setdefault("scope", f"repository:{name}:pull")
        headers = {"Authorization": f"Basic {auth}"} if auth else {}
        response = await self.client.fetch(f"{realm}?{urlencode(params)}", headers=headers,
                                           raise_error=False, request_timeout=self.timeout)
        if response.code != 200:
            return None
        data = json.loads(response.body)
        return data.get("token") or data.get("access_token")
