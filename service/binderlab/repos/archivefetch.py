"""Fetch one DOI or archive record with repo2docker's own content providers, in a worker.

Run as ``python -m binderlab.repos.archivefetch OUTPUT_DIR`` with a JSON job on stdin;
prints JSON lines: ``{"message": ...}`` while fetching, then ``{"content_id": ...}`` or
``{"error": ..., "status": ...}``. The service (archives.py) runs it as a child process:
repo2docker's providers block, sleep while archives are prepared, and some unpack into
the current directory (Hydroshare), so they get a process and a scratch directory of
their own, a memory limit and a kill on timeout.

Every HTTP request they make goes through ``GuardedSession``: the same blocked networks as
git (checked for each redirect hop too), only the allowed schemes, a byte budget for the
whole record, and the operator's host routes (a mirror of the service, or a stand-in on
127.0.0.1 in tests), so the providers keep their documented URLs.
"""

import json
import os
import resource
import signal
import socket
import sys
import tarfile
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import requests

from binderlab.repos import netguard


class FetchRefused(Exception):
    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class GuardedSession(requests.Session):
    """A requests session that routes, checks and counts every request it sends."""

    def __init__(self, *, routes: dict[str, str], blocked: list[str], schemes: list[str],
                 max_bytes: int, timeout: float = 60):
        super().__init__()
        # longest prefix first, so https://sandbox.zenodo.org is not taken for a prefix
        self.routes = sorted(((k.rstrip("/"), v.rstrip("/")) for k, v in routes.items()
                              if k.rstrip("/") != v.rstrip("/")),
                             key=lambda kv: -len(kv[0]))
        self.networks = netguard.parse_networks(blocked)
        self.schemes = {s.lower() for s in schemes}
        self.remaining = max_bytes or None
        self.timeout = timeout

    def _map(self, url: str, pairs) -> str:
        for src, dst in pairs:
            if url == src or url.startswith(src + "/") or url.startswith(src + "?"):
                return dst + url[len(src):]
        return url

    def route(self, url: str) -> str:
        return self._map(url, self.routes)

    def unroute(self, url: str) -> str:
        back = sorted(((dst, src) for src, dst in self.routes), key=lambda kv: -len(kv[0]))
        return self._map(url, back)

    def check(self, url: str) -> None:
        parts = urlsplit(url)
        scheme = (parts.scheme or "").lower()
        if scheme not in self.schemes:
            raise FetchRefused(f"The record points at {scheme or 'a relative'}:// URLs, which "
                               f"this host does not fetch (allowed: "
                               f"{', '.join(sorted(self.schemes))}).", 403)
        if not parts.hostname or parts.username or parts.password:
            raise FetchRefused(f"Not a URL this host fetches: {url!r}", 403)
        if not self.networks:
            return
        port = parts.port or (80 if scheme == "http" else 443)
        try:
            infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise FetchRefused(f"Cannot resolve host {parts.hostname!r}: {e.strerror}", 502) \
                from None
        for info in infos:
            if netguard.blocked_address(info[4][0], self.networks):
                raise FetchRefused(
                    f"The record points at host {parts.hostname!r} ({info[4][0]}), an "
                    "address this service does not contact (loopback, private or "
                    "link-local).", 403)

    def send(self, request, **kwargs):
        request.url = self.route(request.url)
        self.check(request.url)
        want_stream = kwargs.pop("stream", False)
        kwargs["timeout"] = kwargs.get("timeout") or self.timeout
        # always stream: bytes are counted as they arrive, not after a whole body was read
        response = super().send(request, stream=True, **kwargs)
        if not getattr(response, "_binderlab_counted", False):
            self._count(response)
        response.url = self.unroute(response.url)
        if not want_stream:
            response.content  # noqa: B018 (reads the body through the counter)
        return response

    def _count(self, response) -> None:
        response._binderlab_counted = True
        length = response.headers.get("Content-Length", "")
        if self.remaining is not None and length.isdigit() and int(length) > self.remaining:
            response.close()
            raise self._too_big()
        original = response.iter_content

        def counted(*args, **kwargs):
            for chunk in original(*args, **kwargs):
                if self.remaining is not None:
                    self.remaining -= len(chunk)
                    if self.remaining < 0:
                        response.close()
                        raise self._too_big()
                yield chunk

        response.iter_content = counted

    def _too_big(self) -> FetchRefused:
        return FetchRefused("This record's files are larger than this host accepts.", 413)


def guarded_connect(networks, proxy_hosts: set[str], connect):
    """``connect`` (urllib3's create_connection) that resolves the host itself, refuses it
    if any address is blocked, and connects to the address it checked: no second lookup
    that DNS could answer differently (rebinding). The operator's proxy is exempt: the
    URL's host was checked before the request (GuardedSession.check)."""

    def create_connection(address, *args, **kwargs):
        host, port = address
        if not networks or host in proxy_hosts:
            return connect(address, *args, **kwargs)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise FetchRefused(f"Cannot resolve host {host!r}: {e.strerror}", 502) from None
        for info in infos:
            if netguard.blocked_address(info[4][0], networks):
                raise FetchRefused(
                    f"The record points at host {host!r} ({info[4][0]}), an address this "
                    "service does not contact (loopback, private or link-local).", 403)
        return connect((infos[0][4][0], port), *args, **kwargs)

    return create_connection


def pin_connections(blocked: list[str]) -> None:
    """Route every connection of this (worker) process through ``guarded_connect``."""
    import urllib.request

    import urllib3.util.connection

    proxy_hosts = {urlsplit(u).hostname for u in urllib.request.getproxies().values()
                   if "://" in u}
    urllib3.util.connection.create_connection = guarded_connect(
        netguard.parse_networks(blocked), proxy_hosts, urllib3.util.connection.create_connection)


def _providers():
    """repo2docker's content providers by binderlab prefix (imported in the worker only)."""
    from repo2docker.contentproviders import (
        CKAN,
        Dataverse,
        Figshare,
        Hydroshare,
        Swhid,
        Zenodo,
    )

    class GuardedHydroshare(Hydroshare):
        # repo2docker downloads the bag with urllib, outside any session: use the guarded one
        def _urlretrieve(self, bag_url):
            handle, name = tempfile.mkstemp(suffix=".zip", dir=".")
            with os.fdopen(handle, "wb") as out, self.session.get(bag_url, stream=True) as r:
                r.raise_for_status()
                for chunk in r.iter_content(chunk_size=1 << 16):
                    out.write(chunk)
            return name, None

    return {"zenodo": Zenodo, "figshare": Figshare, "hydroshare": GuardedHydroshare,
            "dataverse": Dataverse, "ckan": CKAN, "swhid": Swhid}


def count_files(root: Path) -> tuple[int, int]:
    files = total = 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            files += 1
            total += path.stat().st_size
    return files, total


def run(job: dict, output: Path, emit) -> str:
    """Fetch ``job["source"]`` with the provider ``job["provider"]`` into ``output``;
    return repo2docker's content id."""
    pin_connections(job.get("blocked", []))
    provider = _providers()[job["provider"]]()
    session = GuardedSession(routes=job.get("routes", {}), blocked=job.get("blocked", []),
                             schemes=job.get("schemes", ["https"]),
                             max_bytes=job.get("max_bytes", 0))
    session.headers.update(provider.session.headers)
    provider.session = session
    if job["provider"] == "dataverse":
        # the installations list comes from the operator's config, never from the internet
        provider.hosts = [{"hostname": h} for h in job.get("dataverse_hosts", [])]
    spec = provider.detect(job["source"])
    if not spec:
        raise FetchRefused(f"{job['source']} is not a {job['provider']} record this host "
                           "knows.", 404)
    for line in provider.fetch(spec, str(output), yield_output=True):
        emit({"message": line})
    files, total = count_files(output)
    if job.get("max_files") and files > job["max_files"]:
        raise FetchRefused(f"This record has {files} files, more than the "
                           f"{job['max_files']} this host accepts.", 413)
    if job.get("max_bytes") and total > job["max_bytes"]:
        raise FetchRefused("This record's files are larger than this host accepts.", 413)
    return str(provider.content_id)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    output = Path(argv[0]).resolve()
    job = json.loads(sys.stdin.read())
    if job.get("memory_bytes"):
        resource.setrlimit(resource.RLIMIT_AS, (job["memory_bytes"], job["memory_bytes"]))
    if job.get("max_bytes"):
        # one file cannot grow past the record's budget, whatever writes it (unzip, untar)
        limit = job["max_bytes"] + (1 << 20)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails with EFBIG
    # archives from the network: no absolute paths, no escaping links, no device files
    tarfile.TarFile.extraction_filter = staticmethod(tarfile.data_filter)

    def emit(data):
        print(json.dumps(data), flush=True)

    try:
        emit({"content_id": run(job, output, emit)})
    except FetchRefused as e:
        emit({"error": str(e), "status": e.status})
    except tarfile.FilterError as e:  # the record's fault: say which member, not our paths
        member = getattr(getattr(e, "tarinfo", None), "name", "?")
        emit({"error": f"The record's archive holds {member!r}, which would land outside "
              "the record; it is not unpacked.", "status": 400})
    except requests.HTTPError as e:
        status = e.response.status_code if e.response is not None else 502
        emit({"error": f"The record's service answered {status} for "
              f"{e.request.url if e.request is not None else 'a request'}.",
              "status": 404 if status == 404 else 502})
    except requests.RequestException as e:
        emit({"error": f"Could not reach the record's service: {type(e).__name__}.",
              "status": 502})
    except OSError as e:
        if e.errno == 27:  # EFBIG: RLIMIT_FSIZE
            emit({"error": "This record's files are larger than this host accepts.",
                  "status": 413})
        else:
            emit({"error": f"Could not store the record's files: {e.strerror}", "status": 500})
    except MemoryError:
        emit({"error": "Fetching this record needed more memory than this host allows "
              "(fetch_memory_mb).", "status": 502})
    except Exception as e:  # repo2docker's providers raise assorted errors on bad records
        # this server's paths are nobody else's business
        text = str(e).replace(str(output), ".").replace(os.getcwd(), ".")
        emit({"error": f"repo2docker could not fetch this record: {type(e).__name__}: "
              f"{text}", "status": 502})
    return 0


if __name__ == "__main__":
    sys.exit(main())
