"""A fake warm-pool backend: sessions that exist only in memory, with failure switches."""

import asyncio
import secrets

from binderlab.sessions.pool import PoolBackend, WarmSession
from tests.inprocess.mocking import Gate


class FakePoolBackend(PoolBackend):
    def __init__(self):
        self.running: dict[str, WarmSession] = {}  # username -> session
        self.images: dict[str, str] = {}  # image -> id ('' or missing: the image is gone)
        self.claims: list[tuple[str, dict]] = []
        self.touched: list[str] = []
        self.started = 0
        self.fail_start = False
        self.gate = Gate()
        self.builder = None  # the app's FakeBuilder: only its images exist

    async def start(self, image: str) -> WarmSession:
        self.started += 1
        await self.gate.pass_()
        if self.fail_start:
            raise RuntimeError("the fake hub refused")
        name = "binderpool-" + secrets.token_hex(4)
        session = WarmSession(name, image, secrets.token_urlsafe(16),
                              f"http://127.0.0.1:1/user/{name}/", 0.0,
                              self.images.get(image, "id1"))
        self.running[name] = session
        return session

    async def claim(self, session: WarmSession, user_options: dict) -> None:
        await asyncio.sleep(0)  # a real claim awaits the engine: let others run meanwhile
        self.claims.append((session.username, user_options))

    async def stop(self, session: WarmSession) -> None:
        self.running.pop(session.username, None)

    async def image_id(self, image: str):
        # images the fake builder made exist; others (and the unit tests') as images says
        built = getattr(self, "builder", None)
        if built is not None and image not in built.images:
            return ""
        return self.images.get(image, "id1")

    async def touch(self, sessions):
        self.touched.extend(s.username for s in sessions)
