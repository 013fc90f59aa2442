"""What one launch learns, computed once and carried through the pipeline, typed.

repo2docker's ``Repo2Docker`` app resolves its content provider, build pack and image spec
once and passes them on; a launch here does the same: the spec is parsed once (by the
handler, which must refuse a bad one before the stream starts), the repository key, the
resolved commit, the mirror, the repository's settings and the image plan are each worked
out once and kept here. Nothing internal rides on the public event dicts.
"""

from dataclasses import dataclass, field
from pathlib import Path

from binderlab.fingerprint.buildpacks import Fingerprint
from binderlab.gpus.allocator import Reservation
from binderlab.repos.providers import RepoProvider, RepoSpec, ResolvedRepo
from binderlab.repos.settings import RepoSettings


@dataclass
class LaunchRequest:
    """What the client asked for."""

    provider: RepoProvider
    raw_spec: str  # as it appeared in the URL path, still percent-encoded
    build_only: bool = False
    extra: dict = field(default_factory=dict)
    gpu: int | None = None  # GPUs asked for in the URL (?gpu=N); None: not asked
    client: str = ""  # the client's address, for per-user limits of anonymous launches
    from_page: bool = False  # carries a valid loading-page ticket (see limits.py)
    spec: RepoSpec | None = None  # parsed already (the handler checks it before streaming)
    user: str = ""  # the logged-in hub user whose launch this is; '': anonymous
    course: str = ""  # a course's key (?course=...): its launch allowance (courses/)


@dataclass
class ImagePlan:
    """What a commit needs: the image name, its cache key and how it was keyed."""

    image: str
    fingerprint: Fingerprint
    tree: str
    labels: dict[str, str]

    @property
    def kind(self) -> str:
        return self.fingerprint.kind


@dataclass
class StartedSession:
    url: str
    token: str
    gpus: list[str] = field(default_factory=list)


@dataclass
class LaunchContext:
    request: LaunchRequest
    spec: RepoSpec
    repo_key: str  # '<provider>/<repo>': what policy patterns and per-repository limits match
    resolved: ResolvedRepo | None = None
    mirror: Path | None = None  # the bare mirror holding the commit (fetched once)
    settings: RepoSettings = field(default_factory=RepoSettings)  # binderlab.yml
    gpus: int = 0  # GPUs this launch gets (decided once, by the allocator)
    plan: ImagePlan | None = None
    started_build: bool = False  # this launch started the build (not a cache hit, not joined)
    image_ready: bool = False
    reservation: Reservation | None = None
    session: StartedSession | None = None
    files: int = 0  # the commit's file count and size, from its tree (before any export)
    size: int = 0
    frozen: tuple | None = None  # a rebuild from the environment record: (path, pins, record)

    @property
    def commit(self) -> str:
        return self.resolved.commit if self.resolved else ""
