"""``GET /build/<provider>/<spec>``: the BinderHub event stream (server-sent events)."""

import asyncio
import json
from contextlib import aclosing

from tornado import web
from tornado.iostream import StreamClosedError

from binderlab.errors import LaunchError
from binderlab.launch.pipeline import LaunchRequest
from binderlab.web.base import BaseHandler


class BuildHandler(BaseHandler):
    route = "build"
    course_key = ""  # from the course/<key>/ prefix (CourseBuildHandler)

    def initialize(self):
        self.closed = asyncio.Event()

    def on_connection_close(self):
        self.closed.set()

    async def send(self, event: dict) -> None:
        try:
            self.write(f"data: {json.dumps(event)}\n\n")
            await self.flush()
        except StreamClosedError:
            self.closed.set()

    async def keepalive(self):
        while not self.closed.is_set():
            await asyncio.sleep(self.binderlab.keepalive_interval)
            try:
                self.write(":keepalive\n\n")
                await self.flush()
            except StreamClosedError:
                self.closed.set()

    def wants_stream(self) -> bool:
        return "text/event-stream" in self.request.headers.get("Accept", "")

    def send_error(self, status_code: int = 500, **kwargs) -> None:
        """Errors before the stream starts go out as a ``failed`` event, as BinderHub sends
        them: a browser's EventSource cannot read an HTTP error's status or body (it only
        reports a lost connection), so the reason would never reach the user (BinderHub's
        /build answers its errors this way too, jupyterhub/binderhub#1266). A request
        that did not ask for an event stream gets the plain JSON error."""
        if self._headers_written or not self.wants_stream():
            return super().send_error(status_code, **kwargs)
        message = self._reason
        exc = kwargs.get("exc_info", (None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        self.clear()
        self.set_status(200)
        self.set_cors_headers()
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        event = {"phase": "failed", "status_code": status_code, "message": f"{message}\n"}
        self.finish(f"data: {json.dumps(event)}\n\n")

    async def get(self, provider_prefix: str, _spec: str):
        if self.require_login():
            return
        if not self.wants_stream():
            raise web.HTTPError(400, "This is an event stream: send Accept: text/event-stream.")
        provider, raw_spec = self.provider_and_spec(self.route, provider_prefix)
        try:
            spec = provider.parse(raw_spec)  # the launch's only parse (refused before streaming)
        except LaunchError as e:
            raise web.HTTPError(e.status_code, str(e)) from None
        build_only = self.get_argument("build_only", "false").lower() == "true"
        gpu = self.get_argument("gpu", None)
        if gpu is not None and not (gpu.isdigit() and len(gpu) < 3):
            raise web.HTTPError(400, f"gpu={gpu!r}: give a number of GPUs, e.g. gpu=1.")
        if build_only and not self.binderlab.allow_build_only:
            raise web.HTTPError(403, "Build-only requests are not enabled on this host.")

        self.set_cors_headers()
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        ticket = self.get_argument("launch_ticket", "")
        from_page = bool(ticket) and self.binderlab.limits.redeem_ticket(
            ticket, f"{provider.prefix}/{raw_spec}", self.client)
        request = LaunchRequest(provider, raw_spec, build_only=build_only,
                                gpu=int(gpu) if gpu is not None else None,
                                client=self.client, from_page=from_page, spec=spec,
                                user=self.hub_user_name,
                                course=self.course_key or self.get_argument("course", ""))
        keepalive = asyncio.ensure_future(self.keepalive())
        events = asyncio.ensure_future(self.stream(request))
        left = asyncio.ensure_future(self.closed.wait())  # the client closed the stream
        try:
            await asyncio.wait({events, left}, return_when=asyncio.FIRST_COMPLETED)
            if not events.done():
                # The client left: stop following. A shared build goes on for the others.
                events.cancel()
                await asyncio.gather(events, return_exceptions=True)
                return
            # A browser's EventSource reconnects when the server closes, and a reconnect
            # would start a second launch: keep the stream open and let the client close it.
            try:
                await asyncio.wait_for(self.closed.wait(), self.binderlab.event_stream_linger)
            except TimeoutError:
                pass
        finally:
            keepalive.cancel()
            left.cancel()

    async def stream(self, request: LaunchRequest) -> None:
        # aclosing: when the client leaves early, the launch's clean-up runs now, not
        # whenever the generator is garbage-collected
        async with aclosing(self.pipeline.events(request)) as events:
            async for event in events:
                await self.send(event)
                if self.closed.is_set():
                    return

    def options(self, *args):
        self.set_cors_headers()
        # BinderHub's JS client (@jupyterhub/binderhub-client) sends Authorization: Bearer
        # with an API token, else X-Xsrftoken from an _xsrf cookie
        self.set_header("Access-Control-Allow-Headers",
                        "Accept, Cache-Control, Authorization, X-Xsrftoken")
        self.set_status(204)


class CourseBuildHandler(BuildHandler):
    """``course/<key>/build/...``: the stream with a course's key in the path, for clients
    that build the /build URL themselves from a base URL (thebe's ``binderUrl``, MyST)."""

    async def get(self, key: str, provider_prefix: str, spec: str):
        self.course_key, self.route = key, f"course/{key}/build"
        await super().get(provider_prefix, spec)


default_handlers = [(r"build/([^/]+)/(.+)", BuildHandler),
                    (r"course/([A-Za-z0-9_-]+)/build/([^/]+)/(.+)", CourseBuildHandler)]
