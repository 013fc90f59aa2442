"""The environment fingerprint: the image cache key of a checkout.

repo2docker itself says what defines an environment. Its build packs copy "pre-assemble"
files (environment.yml, requirements.txt, ...) into the image before the repository; the
steps after that ("assemble" scripts, postBuild, start, a Dockerfile) can read any file.
So, using repo2docker's own build-pack API on the checkout, with the same configuration the
builder uses:

- if the picked build pack has assemble or postBuild steps, or is a Dockerfile, the key is
  the git tree hash (kind "tree"): the whole content defines the image;
- otherwise the key (kind "env") is a sha256 over the canonical form of every file the
  build pack copies or reads, the Dockerfile repo2docker renders for it (base image,
  build-pack scripts, repo2docker version, and the path of a `start` script, which runs
  when the session starts: its content comes with the session, see startscript.py) and the
  build arguments. As a check, the
  Dockerfile is rendered again from a context holding only those files; if it differs, the
  key falls back to the tree hash. Correctness first.

The build pack API works on the current directory, so fingerprints are computed in worker
processes (``binderlab.fingerprint.worker``), never by changing the service's own directory.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
from contextlib import chdir
from dataclasses import asdict, dataclass, field
from pathlib import Path

from binderlab.fingerprint.startscript import relative_start, write_env_context

ENV_FILE_RE = re.compile(r"(^|/)environment\.ya?ml$")
HASH_COMMENT_FILES = {"apt.txt", "runtime.txt", "install.R", "Pipfile", "Project.toml",
                      "Manifest.toml", "REQUIRE"}
MAX_ENV_FILE_BYTES = 1 << 20


@dataclass
class Fingerprint:
    kind: str  # "env" or "tree"
    key: str
    buildpack: str
    files: list[str] = field(default_factory=list)
    reason: str = ""
    # an env-keyed image's start script ("binder/start"): its path is part of the key, its
    # content comes from the session's content overlay; "" when there is none
    start: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


# ---- canonical forms ----------------------------------------------------------------------

def canonical(path: str, data: bytes) -> str:
    """A text that is equal for two versions of ``path`` exactly when they define the same
    environment as far as formatting goes: comments, whitespace, line endings, key order,
    quoting and dependency order do not count; versions and channels (and their order) do."""
    text = data.decode("utf-8", errors="replace")
    if ENV_FILE_RE.search(path):
        try:
            return canonical_environment_yml(text)
        except Exception:  # not valid YAML: let repo2docker report it, key by text
            pass
    name = path.rsplit("/", 1)[-1]
    drop_comments = name in HASH_COMMENT_FILES or name.endswith(".txt")
    lines = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if drop_comments:
            # pip and apt take "#" to end of line as a comment when it follows whitespace
            line = re.sub(r"(^|\s)#.*$", "", line)
        line = line.rstrip()
        if line:
            lines.append(line)
    return "\n".join(lines)


def canonical_environment_yml(text: str) -> str:
    from ruamel.yaml import YAML

    doc = YAML(typ="safe", pure=True).load(text)
    if not isinstance(doc, dict):
        raise ValueError("environment.yml is not a mapping")
    _check_size(doc)

    def spec(item):
        if isinstance(item, str):
            return re.sub(r"\s+", " ", item.strip())
        if isinstance(item, dict):  # e.g. {"pip": [...]}
            return {k: sorted(spec(v) for v in vs) if isinstance(vs, list) else vs
                    for k, vs in item.items()}
        return item

    deps = doc.get("dependencies") or []
    doc["dependencies"] = sorted((spec(d) for d in deps), key=lambda d: json.dumps(d))
    return json.dumps(doc, sort_keys=True, default=str)


MAX_YAML_NODES = 100_000
MAX_YAML_DEPTH = 50


class EnvironmentFileError(ValueError):
    """An environment file this host refuses to build from; the message says why."""


def check_environment_file(path: str, data: bytes) -> None:
    """Refuse an environment.yml whose YAML aliases expand past MAX_YAML_NODES values or
    that nests past MAX_YAML_DEPTH: the fingerprint would survive it (aliases stay
    references here), but the build's conda/mamba expands them in full ("billion laughs").
    Files that are not valid YAML are left to repo2docker to report."""
    if not ENV_FILE_RE.search(path):
        return
    from ruamel.yaml import YAML

    try:
        doc = YAML(typ="safe", pure=True).load(data.decode("utf-8", errors="replace"))
    except RecursionError:
        raise EnvironmentFileError(f"{path} is nested too deeply to read (more than "
                                   f"{MAX_YAML_DEPTH} levels).") from None
    except Exception:
        return
    try:
        _check_size(doc)
    except ValueError:
        raise EnvironmentFileError(
            f"{path} expands to more than {MAX_YAML_NODES} values or {MAX_YAML_DEPTH} levels "
            "once its YAML aliases (&name / *name) are followed; this host does not build "
            "such files. Write the values out instead of aliasing them.") from None


def _check_size(doc) -> None:
    """Refuse documents whose expansion is huge: YAML aliases can make a small file stand
    for billions of nodes ("billion laughs"), and deep nesting exhausts the stack. Such a
    file is keyed by its text instead (the caller falls back)."""
    count = 0
    stack = [(doc, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_YAML_NODES or depth > MAX_YAML_DEPTH:
            raise ValueError("environment.yml expands to too many or too deep nodes")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            stack.extend((k, depth + 1) for k in node)
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


# ---- the computation (runs in the worker process) ------------------------------------------

_reads: set[str] | None = None


def _audit(event, args):
    if _reads is not None and event == "open" and isinstance(args[0], str):
        _reads.add(os.path.abspath(args[0]))


def _pick(r2d):
    for bp_class in r2d.buildpacks:
        bp = bp_class(base_image=r2d.base_image)
        if bp.detect():
            return bp
    if r2d.default_buildpack:
        return r2d.default_buildpack(base_image=r2d.base_image)
    raise LookupError("repo2docker found no environment specification")


def _render(bp, r2d) -> str:
    bp.platform = r2d.platform
    bp.appendix = r2d.appendix
    bp.labels["repo2docker.version"] = r2d.version
    return bp.render(_build_args(r2d))


def _build_args(r2d) -> dict:
    args = {"NB_USER": r2d.user_name, "NB_UID": str(r2d.user_id)}
    if r2d.target_repo_dir:
        args["REPO_DIR"] = r2d.target_repo_dir
    args.update(r2d.extra_build_args)
    return args


@dataclass
class _Inspection:
    buildpack: object
    dockerfile: str
    opened: set[str]
    preassemble_files: list[str]
    assemble: list
    post_build: list
    start: str | None


def _inspect(checkout: Path, r2d) -> _Inspection:
    """Pick and render the build pack in ``checkout`` and ask it everything the
    fingerprint needs, all inside the checkout (build packs read relative paths); record
    the checkout's files that this opened."""
    global _reads
    _reads = set()
    try:
        with chdir(checkout):
            bp = _pick(r2d)
            found = _Inspection(
                bp, _render(bp, r2d), set(), list(bp.get_preassemble_script_files()),
                list(bp.get_assemble_scripts()), list(bp.get_post_build_scripts()),
                bp.get_start_script())
        root = str(checkout.resolve()) + os.sep
        found.opened = {p[len(root):] for p in _reads
                        if p.startswith(root) and os.path.isfile(p)}
    finally:
        _reads = None
    return found


def compute(checkout: str, tree_hash: str, r2d_args: list[str], env_context: str | None) -> dict:
    """Fingerprint ``checkout``; when the kind is "env", write the env-only build context to
    ``env_context`` (a directory to create)."""
    from repo2docker.__main__ import make_r2d
    from repo2docker.buildpacks import DockerBuildPack, LegacyBinderDockerBuildPack

    checkout_path = Path(checkout)
    r2d = make_r2d([*r2d_args, "--no-build", checkout])
    found = _inspect(checkout_path, r2d)
    for f in sorted(set(found.preassemble_files) | found.opened):
        if (checkout_path / f).is_file():
            check_environment_file(f, (checkout_path / f).read_bytes())
    bp, dockerfile = found.buildpack, found.dockerfile
    name = type(bp).__name__

    def tree(reason: str) -> dict:
        return Fingerprint("tree", tree_hash, name, [], reason).as_dict()

    if isinstance(bp, DockerBuildPack | LegacyBinderDockerBuildPack):
        return tree("the repository has a Dockerfile")
    if found.post_build:
        return tree("postBuild runs with the whole repository")
    if found.assemble:
        return tree("the build installs from the repository's content "
                    "(setup.py, pyproject.toml, local requirements, ...)")

    start = relative_start(found.start)
    files = sorted((set(found.preassemble_files) | found.opened) - {start})
    root = checkout_path.resolve()
    # a symlink could point outside the checkout: its target must not reach a build context
    if any((checkout_path / f).resolve() != root / f for f in files):
        return tree("an environment file is a symbolic link")
    if start and ((checkout_path / start).is_symlink() or not (checkout_path / start).is_file()):
        # repo2docker's chmod would follow the link (or fail on a directory) at build time:
        # keep its exact behaviour by building from the whole content
        return tree("the start script is a symbolic link or not a file")
    if any((checkout_path / f).stat().st_size > MAX_ENV_FILE_BYTES for f in files):
        return tree("an environment file is larger than 1 MiB")
    # the check: an env-only context must give repo2docker exactly the same Dockerfile
    context = Path(env_context) if env_context else Path(checkout + ".env-check")
    shutil.rmtree(context, ignore_errors=True)
    write_env_context(checkout_path, context, files, start)
    try:
        again = _inspect(context, r2d)
    except Exception:
        again = None
    if again is None or type(again.buildpack) is not type(bp) or again.dockerfile != dockerfile:
        shutil.rmtree(context, ignore_errors=True)
        return tree("the environment depends on more than its environment files")
    if not env_context:
        shutil.rmtree(context, ignore_errors=True)

    digest = hashlib.sha256()
    digest.update(json.dumps({
        "repo2docker": r2d.version, "base_image": r2d.base_image, "buildpack": name,
        "dockerfile": dockerfile, "build_args": _build_args(r2d), "start": start,
    }, sort_keys=True).encode())
    for f in files:
        digest.update(f"\0{f}\0".encode())
        digest.update(canonical(f, (checkout_path / f).read_bytes()).encode())
    return Fingerprint("env", digest.hexdigest()[:40], name, files, start=start).as_dict()


def main(argv=None):
    """Print the raw inspection of a checkout (``python -m binderlab.fingerprint PATH``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("r2d_args", nargs="*")
    args = parser.parse_args(argv)
    sys.addaudithook(_audit)
    print(json.dumps(compute(os.path.abspath(args.path), "", args.r2d_args, None), indent=2))




from binderlab.fingerprint.worker import FingerprintWorker  # noqa: E402,F401  (its old home)
