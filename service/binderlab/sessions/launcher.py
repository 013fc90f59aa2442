"""Launchers start a session for a built image and hand back its URL and token.

``HubLauncher`` asks JupyterHub, through its REST API and binderlab's own service token,
to create a temporary user and start its server with the image; a logged-in user's launch
(logged-in mode) starts that user's named server for the repository instead, or returns to
it when it is running.
"""

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Float, Integer, Unicode
from traitlets.config import LoggingConfigurable

from binderlab.contract import (
    CLIENT_USER_PREFIX,
    LABEL_CLIENT,
    LABEL_REPO_KEY,
    LABEL_USER,
    OPT_GPU_SIGNATURE,
    OPT_GPUS,
    OPT_IMAGE,
    OPT_REF,
    OPT_REPO_KEY,
    OPT_TOKEN,
    server_name,
    sign_gpus,
)
from binderlab.errors import LaunchError


class HubAPIError(LaunchError):
    """JupyterHub answered an API request with an error status."""

    def __init__(self, method: str, path: str, error: HTTPClientError):
        self.code = error.code
        self.hub_message = error.message or ""
        if error.response is not None and error.response.body:
            try:
                self.hub_message = json.loads(error.response.body).get("message", "")
            except ValueError:
                self.hub_message = error.response.body.decode(errors="replace")[:500]
        super().__init__(f"JupyterHub refused {method} {path}: {self.code} {self.hub_message}",
                         503)


class Launcher(LoggingConfigurable):
    """Start sessions.

    ``launch(image, user_options)`` yields ``launching`` events while the session starts and
    ends with one event ``{"phase": "ready", "url": ..., "token": ...}``; it raises
    LaunchError when the session cannot start, after cleaning up what it created.
    """

    def __init__(self, *, lifecycle=None, **kwargs):
        super().__init__(**kwargs)
        # the SessionLifecycle told of every stop (it removes what the hub could not, e.g.
        # while the engine restarted); None: nobody to tell
        self.lifecycle = lifecycle
        # users whose session is being started now: the lifecycle's reaper leaves their
        # containers alone while they are still "created" (the content copy runs then)
        self.starting: set[str] = lifecycle.starting if lifecycle is not None else set()
        # the warm pool's sessions claimed by logged-in users (sessions/poolstorage.py):
        # async (owner, repo key) -> ready event or None; None when there are none
        self.claimed_running = None
        # async owner -> [(pooled user, repo key, hub server model)]: the sessions page's
        self.claimed_sessions = None

    async def launch(self, image: str, user_options: dict,
                     owner: str = "") -> AsyncIterator[dict]:
        """``owner``: the logged-in hub user the session belongs to ('' anonymous)."""
        raise NotImplementedError
        yield {}

    async def check(self) -> dict:
        """Health of what the launcher depends on: {"ok": bool, ...}."""
        raise NotImplementedError

    async def stop(self, username: str) -> None:
        """Stop ``username``'s (temporary, anonymous) session."""
        raise NotImplementedError

    async def stop_session(self, labels: dict) -> None:
        """Stop the one session whose container carries ``labels`` (GPU time limits and
        budgets): a logged-in user's named server of that repository, never the user or
        their other servers; an anonymous session with its temporary user."""
        await self.stop(labels.get(LABEL_USER, ""))


class HubLauncher(Launcher):
    hub_url = Unicode(
        "http://127.0.0.1:8000",
        help="""Public URL of JupyterHub (its proxy), as users' browsers reach it.

        Session URLs are <hub_url>/user/<name>/, or the URL JupyterHub gives when it puts
        each session on its own origin (c.JupyterHub.subdomain_host).""",
    ).tag(config=True)

    hub_api_url = Unicode(
        "",
        help="JupyterHub's REST API URL. Empty (default): <hub_url>/hub/api.",
    ).tag(config=True)

    api_token = Unicode(
        "",
        help="""binderlab's service token for the JupyterHub API.

        `binderlab up` generates one and gives it to both sides; set it when the hub runs
        separately (its service needs the scopes admin:users and admin:servers).""",
    ).tag(config=True)

    username_prefix = Unicode(
        "binder-",
        help="Prefix of the temporary users created for anonymous launches.",
    ).tag(config=True)

    request_timeout = Float(
        30, help="Seconds one JupyterHub API request may take (default 30)."
    ).tag(config=True)

    max_http_clients = Integer(
        200,
        help="""Requests to JupyterHub in flight at once (default 200). Every starting session
        holds one for its progress stream, so this bounds concurrent launches.""",
    ).tag(config=True)

    start_timeout = Float(
        300, help="Seconds a session may take to start before the launch fails (default 300)."
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.lifecycle is not None:  # a start may take start_timeout, content copy included
            self.lifecycle.created_grace = max(self.lifecycle.created_grace,
                                               self.start_timeout + 60)

    @property
    def http(self) -> AsyncHTTPClient:
        """This launcher's own HTTP client: Tornado's shared one allows 10 requests at once,
        and each starting session's progress stream holds one for the whole start."""
        if self._http is None:
            self._http = AsyncHTTPClient(force_instance=True,
                                         max_clients=self.max_http_clients)
        return self._http

    _http = None

    def api_url(self, path: str) -> str:
        base = (self.hub_api_url or self.hub_url.rstrip("/") + "/hub/api").rstrip("/")
        return f"{base}/{path.lstrip('/')}"

    async def api(self, method: str, path: str, body: dict | None = None) -> dict:
        request = HTTPRequest(
            self.api_url(path), method=method,
            headers={"Authorization": f"token {self.api_token}"},
            body=json.dumps(body) if body is not None else (None if method == "GET" else ""),
            request_timeout=self.request_timeout, allow_nonstandard_methods=True,
        )
        try:
            response = await self.http.fetch(request)
        except HTTPClientError as e:
            if e.code == 599 and "request queue" in str(e):
                raise LaunchError("The binder service is busy starting other sessions; "
                                  "try again in a minute.", 503) from None
            if e.code == 599:
                raise LaunchError(self._unreachable(e), 503) from None
            raise HubAPIError(method, path, e) from None
        except OSError as e:
            raise LaunchError(self._unreachable(e), 503) from None
        return json.loads(response.body) if response.body else {}

    def _unreachable(self, error) -> str:
        return (f"JupyterHub is not reachable at {self.api_url('')} ({error}). "
                "The session service is down; try again in a minute.")

    async def check(self) -> dict:
        try:
            info = await self.api("GET", "/")
            return {"ok": True, "version": info.get("version")}
        except LaunchError as e:
            return {"ok": False, "error": str(e)}

    async def launch(self, image: str, user_options: dict,
                     owner: str = "") -> AsyncIterator[dict]:
        if owner:
            async for event in self.launch_named(image, user_options, owner):
                yield event
            return
        username = self.username_prefix + secrets.token_hex(8)
        token = secrets.token_urlsafe(24)
        options = {**user_options, OPT_IMAGE: image, OPT_TOKEN: token}
        if options.get(OPT_GPUS):
            options[OPT_GPU_SIGNATURE] = sign_gpus(self.api_token, username, options[OPT_GPUS])
        # the reaper leaves this user's container alone while it is still "created"
        self.starting.add(username)
        try:
            await self.api("POST", f"/users/{quote(username)}")
        except BaseException:
            self.starting.discard(username)
            raise
        try:
            yield {"phase": "launching", "message": f"Starting a session as {username}\n"}
            async with asyncio.timeout(self.start_timeout):
                async for event in self.spawn(username, options):
                    yield event
            user = await self.api("GET", f"/users/{quote(username)}")
            server = user.get("servers", {}).get("", {})
            if not server.get("ready"):
                raise LaunchError("The session stopped while it was starting.", 500)
        except BaseException:
            await self.stop(username)
            raise
        finally:
            self.starting.discard(username)
        yield {"phase": "ready", "url": self.session_url(server), "token": token}

    def session_url(self, server: dict) -> str:
        url = server["url"]
        if not url.startswith(("https://", "http://")):
            # with JupyterHub's subdomain_host the hub already gives the session's own
            # origin (https://<user>.hub.example.org/user/<user>/); otherwise a path
            url = self.hub_url.rstrip("/") + url
        return url

    async def named_server(self, owner: str, name: str) -> dict | None:
        user = await self.api("GET", f"/users/{quote(owner)}")
        return (user.get("servers") or {}).get(name)

    def running_event(self, server: dict | None) -> dict | None:
        """The ready event of a running binderlab server of a user, None if it is not."""
        token = ((server or {}).get("user_options") or {}).get(OPT_TOKEN)
        if not (server and server.get("ready") and token):
            return None
        return {"phase": "ready", "url": self.session_url(server), "token": token,
                "commit": server["user_options"].get(OPT_REF, ""),
                # the devices it holds: a returning user is told their GPU time left too
                "gpus": [str(g) for g in server["user_options"].get(OPT_GPUS) or []]}

    async def running(self, owner: str, repo_key: str) -> dict | None:
        """``owner``'s running session of ``repo_key`` (its ready event: url, token and
        the commit it was started at), None when there is none. A launch that finds one
        returns to it before it asks for a session slot or GPUs: the server holds them."""
        found = self.running_event(await self.named_server(owner, server_name(repo_key)))
        if found is None and self.claimed_running is not None:  # a warm session they claimed
            found = await self.claimed_running(owner, repo_key)
        return found

    async def launch_named(self, image: str, user_options: dict,
                           owner: str) -> AsyncIterator[dict]:
        """A logged-in user's launch: their named server for this repository.

        One server per (user, repository), named by contract.server_name: when it runs
        already (another tab, a second click, a course page's thebe cell), the launch
        returns to it, with the token it was started with (the hub keeps the server's
        user_options), and nothing new is spawned. A server of the user that is stopped
        (culled) is started again with this launch's image and commit.
        """
        name = server_name(user_options[OPT_REPO_KEY])
        path = f"/users/{quote(owner)}/servers/{quote(name)}"
        server = await self.named_server(owner, name)
        running = self.running_event(server)
        if running is not None:  # started meanwhile (the pipeline asked running() first)
            yield {"phase": "launching",
                   "message": f"Returning to your running session {name}\n"}
            yield running
            return
        if server and server.get("pending"):
            raise LaunchError(f"Your session {name} is {server['pending']}ing; try again in "
                              "a moment.", 409)
        token = secrets.token_urlsafe(24)
        options = {**user_options, OPT_IMAGE: image, OPT_TOKEN: token}
        if options.get(OPT_GPUS):
            options[OPT_GPU_SIGNATURE] = sign_gpus(self.api_token, owner, options[OPT_GPUS])
        self.starting.add(owner)
        try:
            yield {"phase": "launching", "message": f"Starting your session {name}\n"}
            async with asyncio.timeout(self.start_timeout):
                async for event in self.spawn(owner, options, name):
                    yield event
            user = await self.api("GET", f"/users/{quote(owner)}")
            server = (user.get("servers") or {}).get(name, {})
            if not server.get("ready"):
                raise LaunchError("The session stopped while it was starting.", 500)
        except BaseException:
            try:  # the user stays (a hub user, not ours); only the failed server goes
                await self.api("DELETE", path)
            except LaunchError:
                pass
            raise
        finally:
            self.starting.discard(owner)
        yield {"phase": "ready", "url": self.session_url(server), "token": token}

    async def spawn(self, username: str, options: dict,
                    name: str = "") -> AsyncIterator[dict]:
        """Start the server, passing JupyterHub's progress messages through.

        The hub answers the start request when the server is up, when it failed (with the
        spawner's reason), or after its slow_spawn_timeout (202): the progress stream is
        followed meanwhile, and the start request's answer decides.
        """
        path = f"/users/{quote(username)}/servers/{quote(name)}" if name else \
            f"/users/{quote(username)}/server"
        start = asyncio.ensure_future(self.api("POST", path, options))
        try:
            await asyncio.wait({start}, timeout=0.05)
            async for event in self.progress(username, name):
                if event.get("failed"):
                    raise LaunchError(
                        "The session failed to start: " + event.get("message", ""), 500)
                if event.get("ready"):
                    break
                if event.get("message"):
                    yield {"phase": "launching", "message": event["message"] + "\n"}
            await start
        except HubAPIError as e:
            raise LaunchError(f"The session failed to start: {e.hub_message}", 500) from None
        finally:
            start.cancel()

    async def progress(self, username: str, name: str = "") -> AsyncIterator[dict]:
        """Follow JupyterHub's spawn progress event stream for ``username``'s server
        (named ``name``; '' the default server)."""
        queue: asyncio.Queue = asyncio.Queue()
        buffer = b""

        def on_chunk(chunk: bytes):
            nonlocal buffer
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                for line in block.decode(errors="replace").splitlines():
                    if line.startswith("data:"):
                        queue.put_nowait(json.loads(line[5:]))

        request = HTTPRequest(
            self.api_url(f"/users/{quote(username)}/servers/{quote(name)}/progress"
                         if name else f"/users/{quote(username)}/server/progress"),
            headers={"Authorization": f"token {self.api_token}",
                     "Accept": "text/event-stream"},
            streaming_callback=on_chunk, request_timeout=self.start_timeout,
        )
        fetch = asyncio.ensure_future(self.http.fetch(request, raise_error=False))
        try:
            while True:
                get = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({get, fetch}, return_when=asyncio.FIRST_COMPLETED)
                if get in done:
                    yield get.result()
                    continue
                get.cancel()
                while not queue.empty():
                    yield queue.get_nowait()
                return
        finally:
            fetch.cancel()

    async def last_activity(self, username: str) -> str | None:
        """JupyterHub's last activity time of ``username`` (ISO 8601), None if unknown."""
        try:
            return (await self.api("GET", f"/users/{quote(username)}")).get("last_activity")
        except LaunchError:
            return None

    async def stop_session(self, labels: dict) -> None:
        if not labels.get(LABEL_CLIENT, "").startswith(CLIENT_USER_PREFIX):
            return await self.stop(labels.get(LABEL_USER, ""))
        owner, name = labels.get(LABEL_USER, ""), server_name(labels.get(LABEL_REPO_KEY, ""))
        try:  # the reaper removes the stopped container; the user and their files stay
            await self.api("DELETE", f"/users/{quote(owner)}/servers/{quote(name)}")
        except LaunchError as e:
            self.log.warning("Could not stop %s's server %s: %s", owner, name, e)

    async def stop(self, username: str) -> None:
        """Stop ``username``'s session and remove the temporary user."""
        try:
            await self.api("DELETE", f"/users/{quote(username)}/server")
        except LaunchError:
            pass
        removed = False
        for _ in range(40):
            try:
                await self.api("DELETE", f"/users/{quote(username)}")
                removed = True
                break
            except HubAPIError as e:
                if e.code != 400:  # 400: a stop or start is still pending
                    break
                await asyncio.sleep(0.5)
            except LaunchError:
                break
        if not removed:
            self.log.warning("Could not remove temporary user %s; the idle culler will.",
                             username)
        if self.lifecycle is not None:
            await self.lifecycle.stopped(username)
