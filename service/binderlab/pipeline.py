"""One launch, from a spec to a running session, as a stream of BinderHub-style events.

resolve -> fetch -> key -> (build | cache hit) -> launch -> ready. The HTTP handler and the
CLI both drive this; neither knows how the steps work.
"""

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from . import metrics
from .builder import LABEL_COMMIT, LABEL_KEY, LABEL_KIND, LABEL_REPO, Builder
from .checkout import RepoMirrors
from .errors import LaunchError
from .launcher import Launcher
from .providers import RepoProvider, ResolvedRepo


@dataclass
class LaunchRequest:
    provider: RepoProvider
    raw_spec: str
    build_only: bool = False
    extra: dict = field(default_factory=dict)


class Pipeline:
    def __init__(self, *, builder: Builder, launcher: Launcher | None, mirrors: RepoMirrors,
                 image_prefix: str, blocked_networks, public_url: str):
        self.builder = builder
        self.launcher = launcher
        self.mirrors = mirrors
        self.image_prefix = image_prefix
        self.blocked_networks = blocked_networks
        self.public_url = public_url

    async def resolve(self, request: LaunchRequest) -> ResolvedRepo:
        spec = request.provider.parse(request.raw_spec)
        return await request.provider.resolve(spec, self.blocked_networks)

    async def fetch(self, resolved: ResolvedRepo):
        return await self.mirrors.fetch(resolved.spec.clone_url, resolved.commit,
                                        resolved.allowed_protocols)

    async def image_for(self, resolved: ResolvedRepo) -> tuple[str, str, dict[str, str]]:
        """Fetch the commit and name its image: (image name, cache key, labels)."""
        mirror = await self.fetch(resolved)
        key = await self.mirrors.tree_hash(mirror, resolved.commit)
        image = f"{self.image_prefix}tree-{key}"
        labels = {
            LABEL_KEY: key,
            LABEL_KIND: "tree",
            LABEL_REPO: resolved.spec.repo_url,
            LABEL_COMMIT: resolved.commit,
        }
        return image, key, labels

    async def build_events(self, resolved: ResolvedRepo) -> AsyncIterator[dict]:
        """Yield fetching/building events; the last one is "built" or "failed"."""
        yield {"phase": "fetching", "message": f"Fetching {resolved.spec.repo_url} "
               f"at {resolved.commit[:12]}\n"}
        image, key, labels = await self.image_for(resolved)
        if await self.builder.image_ready(image, key):
            metrics.CACHE.labels("hit").inc()
            yield {"phase": "built", "imageName": image,
                   "message": f"Found built image {image}\n"}
            return
        metrics.CACHE.labels("miss").inc()
        mirror = await self.fetch(resolved)

        async def source(dest):
            await self.mirrors.export(mirror, resolved.commit, dest)

        build = self.builder.build(image, labels, source)
        async for event in build.follow():
            yield event

    async def events(self, request: LaunchRequest) -> AsyncIterator[dict]:
        """The whole launch as events; always ends with "ready" or "failed"."""
        started = time.monotonic()
        outcome = "failed"
        try:
            yield {"phase": "fetching", "message": "Resolving the requested ref\n"}
            resolved = await self.resolve(request)
            image = None
            async for event in self.build_events(resolved):
                if event["phase"] == "failed":
                    yield event
                    return
                image = event.get("imageName", image)
                yield event
            if request.build_only:
                outcome = "built"
                yield {"phase": "ready", "imageName": image,
                       "message": f"Image {image} is ready (build only)\n"}
                return
            if self.launcher is None:
                raise LaunchError("This host only builds images.", 400)
            user_options = {
                "repo_url": resolved.spec.repo_url,
                "ref": resolved.commit,
                "provider": resolved.spec.provider,
                "spec": resolved.spec.spec,
                **request.extra,
            }
            async for event in self.launcher.launch(image, user_options):
                if event["phase"] == "ready":
                    outcome = "ready"
                    event.pop("username", None)
                    yield self.ready_event(event, request, resolved, image)
                    return
                yield event
        except LaunchError as e:
            yield {"phase": "failed", "message": str(e) + "\n", "status_code": e.status_code}
        finally:
            metrics.LAUNCHES.labels(outcome).inc()
            metrics.LAUNCH_SECONDS.labels(outcome).observe(time.monotonic() - started)

    def ready_event(self, event: dict, request: LaunchRequest, resolved: ResolvedRepo,
                    image: str) -> dict:
        spec = resolved.spec
        provider = spec.provider
        return {
            **event,
            "image": image,
            "repo_url": spec.repo_url,
            "binder_ref_url": request.provider.ref_url(spec, resolved.commit),
            "binder_launch_host": self.public_url,
            "binder_request": f"v2/{provider}/{spec.spec}",
            "binder_persistent_request": f"v2/{provider}/{resolved.persistent_spec}",
            "message": f"server running at {event['url']}\n",
        }

