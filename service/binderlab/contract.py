"""What the binder service and the hub's spawners share: the one place both sides read.

The service and JupyterHub are two processes (on Kubernetes, two pods). They meet in three
places, all defined here so neither side spells them on its own:

- **labels** on images (written by the builders, read by the spawners) and on session
  containers or pods (written by the spawners, read by the service's session trackers and
  GPU allocator);
- **user_options**, the body of the hub API's server-start request: ``SessionOptions`` is
  its schema, ``to_user_options`` what the service sends and ``from_user_options`` the
  check the spawner makes (the hub API is reachable by users, so every field is checked);
- **shared settings** (image prefix, content folder, GPU signing key), which reach the hub
  as ``BINDERLAB_*`` environment variables (``HubSettings.to_env`` / ``from_env``).

This module imports nothing of binderlab (the spawners load it inside the hub) and only the
standard library and traitlets.
"""

import fnmatch
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from jupyterhub.slugs import is_valid_safe_slug, safe_slug
from traitlets import Unicode

# --- image labels (set at build time by the builders) ---------------------------------
LABEL_KEY = "binderlab.key"  # the environment fingerprint the image was built for
LABEL_KIND = "binderlab.kind"  # KIND_ENV or KIND_TREE
LABEL_REPO = "binderlab.repo"  # the clone URL of the repository first built
LABEL_COMMIT = "binderlab.commit"  # the commit first built
LABEL_UID = "binderlab.uid"  # the notebook user's UID (repo2docker's --user-id)

KIND_ENV = "env"  # image holds the environment only: the commit's files go in at launch
KIND_TREE = "tree"  # image holds the whole tree (repositories with a Dockerfile, postBuild...)

# --- session labels (on containers; annotations on pods) --------------------------------
LABEL_USER = "binderlab.user"  # the hub user the session runs as
LABEL_REPO_KEY = "binderlab.repo-key"  # '<provider>/<repo>' the session was launched from
LABEL_CLIENT = "binderlab.client"  # the address that launched it
LABEL_GPUS = "binderlab.gpus"  # comma-separated device IDs the session holds
# --- persistent volumes of logged-in users (Docker volumes; PVCs on Kubernetes) ---------
LABEL_STORAGE = "binderlab.storage"  # STORAGE_USER on a user's volume (`binderlab volumes`)
STORAGE_USER = "user"
# the image prefix of the binderlab host whose spawner created a volume: two hosts (or test
# runs) on one engine each see and remove only their own (`binderlab volumes`)
LABEL_IMAGE_PREFIX = "binderlab.image-prefix"
# Docker states in which a session container still counts (its GPUs held, its quota used)
LIVE_STATES = ("created", "running", "restarting", "paused")

# --- user_options keys --------------------------------------------------------------------
OPT_IMAGE = "image"
OPT_TOKEN = "token"
OPT_REPO_URL = "repo_url"
OPT_REF = "ref"
OPT_PROVIDER = "provider"
OPT_SPEC = "spec"
OPT_REPO_KEY = "repo_key"
OPT_CLIENT = "client"
OPT_CONTENT = "content"
OPT_GPUS = "gpus"
OPT_GPU_SIGNATURE = "gpu_signature"
# Kubernetes: where the session pod's init container downloads the commit's files from
# (the binder service's content server; checked against the spawner's content_url_pattern)
OPT_CONTENT_URL = "content_url"
# a warm-pool session (sessions/pool.py): started without content and without GPUs; the
# commit's files go in when a launch claims it
OPT_POOLED = "pooled"
# logged-in sessions: the commit whose files are merged into the user's persistent folder
# (any image kind; OPT_CONTENT is the overlay of environment-keyed images only)
OPT_UPSTREAM = "upstream"

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")  # a full git commit SHA-1
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")  # a launch token (URL-safe)
GPU_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")  # an index, a GPU UUID or a MIG UUID

DEFAULT_IMAGE_PREFIX = "binderlab/"


class OptionsError(ValueError):
    """user_options the spawner refuses; ``status`` is the HTTP status the hub answers."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def is_commit(value) -> bool:
    return isinstance(value, str) and bool(COMMIT_RE.match(value))


def split_tag(image: str) -> tuple[str, str]:
    """'host:5000/a/b:tag' -> ('host:5000/a/b', 'tag'); no tag -> (image, 'latest').
    A ':' before the last '/' is a registry port, not a tag."""
    if ":" in image.rsplit("/", 1)[-1]:
        repository, tag = image.rsplit(":", 1)
        return repository, tag
    return image, "latest"


def image_name(prefix: str, kind: str, key: str) -> str:
    """The image an environment is built as: one name per (kind, fingerprint)."""
    return f"{prefix}{kind}-{key}"


def built_by_binderlab(image: str, prefix: str, labels: dict[str, str]) -> bool:
    """Whether ``image`` (with its ``labels``) is one of binderlab's: the name has the
    prefix and its repository part ends with the fingerprint the label records."""
    key = labels.get(LABEL_KEY, "")
    repository, _ = split_tag(image)
    return bool(key) and image.startswith(prefix) and repository.endswith(key)


def sign_gpus(key: str, username: str, gpus: list[str]) -> str:
    """The service's signature on a GPU assignment; the spawner refuses unsigned ones (the
    hub API is reachable by users, who must not pick devices themselves)."""
    message = f"{username}|{','.join(gpus)}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def check_gpu_signature(key: str, username: str, gpus: list[str], signature: str) -> bool:
    return bool(key) and hmac.compare_digest(sign_gpus(key, username, gpus), signature or "")


@dataclass
class SessionOptions:
    """The user_options of one session start (the service's side of the hub API call)."""

    image: str
    token: str = ""
    repo_url: str = ""
    ref: str = ""  # the resolved commit
    provider: str = ""
    spec: str = ""
    repo_key: str = ""
    client: str = ""
    content: str | None = None  # commit whose files overlay an environment-keyed image
    upstream: str | None = None  # commit merged into a logged-in user's persistent folder
    gpus: list[str] = field(default_factory=list)
    gpu_signature: str = ""
    pooled: bool = False  # a warm-pool session: no content yet, never GPUs
    extra: dict = field(default_factory=dict)  # operator-added options, passed through

    def to_user_options(self) -> dict:
        options = {
            **self.extra,
            OPT_IMAGE: self.image, OPT_TOKEN: self.token, OPT_REPO_URL: self.repo_url,
            OPT_REF: self.ref, OPT_PROVIDER: self.provider, OPT_SPEC: self.spec,
            OPT_REPO_KEY: self.repo_key, OPT_CLIENT: self.client,
        }
        if self.content is not None:
            options[OPT_CONTENT] = self.content
        if self.upstream is not None:
            options[OPT_UPSTREAM] = self.upstream
        if self.gpus:
            options[OPT_GPUS] = list(self.gpus)
            options[OPT_GPU_SIGNATURE] = self.gpu_signature
        if self.pooled:
            options[OPT_POOLED] = True
        return options

    def signed(self, key: str, username: str) -> "SessionOptions":
        """These options with the GPU assignment signed for ``username``."""
        if self.gpus:
            self.gpu_signature = sign_gpus(key, username, self.gpus)
        return self

    @classmethod
    def from_user_options(cls, options: dict, *, image_prefix: str, username: str,
                          signing_key: str, need_token: bool) -> "SessionOptions":
        """Check what a spawner got (anyone with hub API access can send anything) and
        return it typed; raise OptionsError with the status the hub should answer."""
        image = options.get(OPT_IMAGE)
        if not isinstance(image, str) or not image.startswith(image_prefix):
            raise OptionsError(f"Image {image!r} was not built by binderlab.", 403)
        token = str(options.get(OPT_TOKEN, ""))
        if need_token and not TOKEN_RE.match(token):
            raise OptionsError("A launch token is required (16-128 URL-safe characters).")
        content = options.get(OPT_CONTENT)
        if content is not None and not is_commit(content):
            raise OptionsError("user_options.content must be a full commit SHA.")
        upstream = options.get(OPT_UPSTREAM)
        if upstream is not None and not is_commit(upstream):
            raise OptionsError("user_options.upstream must be a full commit SHA.")
        gpus = options.get(OPT_GPUS) or []
        signature = str(options.get(OPT_GPU_SIGNATURE, ""))
        if gpus:
            if not isinstance(gpus, list) or not all(
                    isinstance(g, str) and GPU_ID_RE.match(g) for g in gpus):
                raise OptionsError("user_options.gpus must be a list of device IDs.")
            if not check_gpu_signature(signing_key, username, gpus, signature):
                raise OptionsError("GPUs are assigned by the binder service only.", 403)
        pooled = options.get(OPT_POOLED, False)
        if not isinstance(pooled, bool):
            raise OptionsError("user_options.pooled must be true or false.")
        if pooled and (gpus or content is not None):
            # a warm session waits for any launch: it must hold no GPU and no one's files
            raise OptionsError("A pooled session starts without GPUs and without content.")
        known = {OPT_IMAGE, OPT_TOKEN, OPT_REPO_URL, OPT_REF, OPT_PROVIDER, OPT_SPEC,
                 OPT_REPO_KEY, OPT_CLIENT, OPT_CONTENT, OPT_GPUS, OPT_GPU_SIGNATURE,
                 OPT_POOLED, OPT_UPSTREAM}
        return cls(
            image=image, token=token,
            repo_url=str(options.get(OPT_REPO_URL, "")), ref=str(options.get(OPT_REF, "")),
            provider=str(options.get(OPT_PROVIDER, "")), spec=str(options.get(OPT_SPEC, "")),
            repo_key=str(options.get(OPT_REPO_KEY, "")), client=str(options.get(OPT_CLIENT, "")),
            content=content, upstream=upstream, gpus=list(gpus), gpu_signature=signature,
            pooled=pooled,
            extra={k: v for k, v in options.items() if k not in known},
        )

    def session_labels(self, username: str) -> dict[str, str]:
        """The labels the spawner puts on the session's container (annotations on a pod)."""
        labels = {LABEL_USER: username, LABEL_REPO_KEY: self.repo_key,
                  LABEL_CLIENT: self.client}
        if self.gpus:
            labels[LABEL_GPUS] = ",".join(self.gpus)
        return labels


# --- shared settings: how the service's settings reach the hub ---------------------------
ENV_IMAGE_PREFIX = "BINDERLAB_IMAGE_PREFIX"
ENV_CONTENT_DIR = "BINDERLAB_CONTENT_DIR"
ENV_SIGNING_KEY = "BINDERLAB_SERVICE_TOKEN"  # the service's hub API token signs GPU grants
ENV_AUTHENTICATION = "BINDERLAB_AUTHENTICATION"
ENV_POOL_MOUNTS = "BINDERLAB_POOL_MOUNTS"

# --- logged-in mode ----------------------------------------------------------------------
SERVICE_NAME = "binderlab"  # the binder service's name in the hub's services list
AUTHENTICATION_MODES = ("none", "required", "optional")
CLIENT_USER_PREFIX = "user:"  # a logged-in client is counted by this plus its hub name
# Logged-in mode: the JupyterHub group of the people who teach (an LMS launch puts users with
# an instructor role in it; c.BinderLab.instructor_group names it, `binderlab up` passes it on)
INSTRUCTOR_GROUP = "instructors"
ENV_INSTRUCTOR_GROUP = "BINDERLAB_INSTRUCTOR_GROUP"
ENV_SERVICE_URL = "BINDERLAB_SERVICE_URL"  # the binder service's public URL, for the hub


def oauth_callback_url(public_url: str) -> str:
    """Where the hub sends a browser back after login (the service's OAuth callback)."""
    return public_url.rstrip("/") + "/oauth_callback"


def server_name(repo_key: str) -> str:
    """The JupyterHub named server of one user's sessions of one repository.

    JupyterHub's own safe slug (jupyterhub.slugs, the rule its API checks new server names
    by: at most 30 characters of [a-z0-9-]): the repository's name, readable, plus a hash
    of the whole key, so two keys that read alike ('gh/A/b', 'gh/a/B') get two servers.
    """
    return safe_slug(repo_key, is_valid=is_valid_safe_slug)


@dataclass(frozen=True)
class HubSettings:
    """Settings the hub's spawners must share with the service. `binderlab up` passes them
    to the hub it starts as environment variables; on Kubernetes the chart sets them."""

    image_prefix: str = DEFAULT_IMAGE_PREFIX
    content_dir: str = ""  # where the service leaves <commit>.tar for the content overlay
    signing_key: str = ""
    authentication: str = "none"  # c.BinderLab.authentication: the hub registers OAuth
    # the warm pool's mount slots (sessions/poolmounts.py): '' when logged-in claims are off
    pool_mounts: str = ""

    def to_env(self) -> dict[str, str]:
        return {ENV_IMAGE_PREFIX: self.image_prefix, ENV_CONTENT_DIR: self.content_dir,
                ENV_SIGNING_KEY: self.signing_key, ENV_AUTHENTICATION: self.authentication,
                ENV_POOL_MOUNTS: self.pool_mounts}

    @classmethod
    def from_env(cls, environ=None) -> "HubSettings":
        environ = os.environ if environ is None else environ
        return cls(image_prefix=environ.get(ENV_IMAGE_PREFIX, DEFAULT_IMAGE_PREFIX),
                   content_dir=environ.get(ENV_CONTENT_DIR, ""),
                   signing_key=environ.get(ENV_SIGNING_KEY, ""),
                   authentication=environ.get(ENV_AUTHENTICATION, "none"),
                   pool_mounts=environ.get(ENV_POOL_MOUNTS, ""))


def content_archive(content_dir: str | Path, commit: str) -> Path:
    """Where the service leaves a commit's files for the content overlay."""
    if not is_commit(commit):
        raise ValueError(f"{commit!r} is not a full commit SHA")
    return Path(content_dir) / f"{commit}.tar"


def image_prefix_trait(**kwargs) -> Unicode:
    """The image prefix option, declared once for the service (c.BinderLab.image_prefix)
    and the spawners (c.BinderLabSpawner / c.BinderLabKubeSpawner.image_prefix)."""
    return Unicode(
        DEFAULT_IMAGE_PREFIX,
        help="""Prefix of every image binderlab builds (default 'binderlab/'; put a registry
        host in front, e.g. 'registry.example.org/binderlab/', to push and pull). Spawners
        start only images with this prefix: the service and the hub must use the same value
        (`binderlab up` passes it to the hub as BINDERLAB_IMAGE_PREFIX).""",
        **kwargs,
    ).tag(config=True)


def matches(repo_key: str, patterns: list[str]) -> bool:
    """``repo_key`` ('<provider>/<repo>', the OPT_REPO_KEY and LABEL_REPO_KEY value) matches
    one of the operator's ``patterns`` (fnmatch, e.g. 'gh/my-org/*'), ignoring case."""
    key = repo_key.casefold()
    return any(fnmatch.fnmatchcase(key, p.casefold()) for p in patterns)
