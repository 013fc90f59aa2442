"""Environment records: what every image binderlab built contained, kept after the image.

mybinder.org deletes old images and keeps no build logs (jupyterhub/binderhub#155), so a
reader cannot find out what a paper's environment was. For every completed build this
keeps, under ``<state_dir>/records/``, a JSON record (repository and commit, build pack
and the files that defined the environment, repo2docker's version and base image, image
id, registry digest, size, build time) and the build log; then it reads the resolved
packages from the image itself (``pip freeze``, ``conda list --explicit`` and
``conda env export`` where conda exists, R's installed packages where R exists) by
running the image once, without network, under a time limit.
"""

import asyncio
import json
import os
import re
import shlex
import time
from pathlib import Path

from repo2docker import __version__ as repo2docker_version

from binderlab.platform.rfc3339 import timestamp

SECTION = "### binderlab-section "
# each part of the probe may fail (no pip, no conda, no R): the others still run
PROBE = "; ".join([
    f"echo '{SECTION}pip'",
    "(python3 -m pip freeze --all 2>/dev/null || python -m pip freeze --all 2>/dev/null)",
    f"echo '{SECTION}conda-explicit'",
    "(command -v conda >/dev/null && conda list --explicit 2>/dev/null)",
    f"echo '{SECTION}conda-env'",
    "(command -v conda >/dev/null && conda env export 2>/dev/null)",
    f"echo '{SECTION}r'",
    "(command -v Rscript >/dev/null && Rscript -e 'ip <- installed.packages()[, "
    "c(\"Package\", \"Version\")]; write.table(ip, quote = FALSE, row.names = FALSE, "
    "col.names = FALSE)' 2>/dev/null)",
    "true",
])
SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")
PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[^\s;@#]+$")
# environment files that also decide packages: a pinned requirements.txt would not cover them
NOT_PIP_ONLY = {"environment.yml", "environment.yaml", "Pipfile", "Pipfile.lock", "install.R",
                "Project.toml", "Manifest.toml", "setup.py", "pyproject.toml", "DESCRIPTION",
                "uv.lock", "conda-lock.yml", "pixi.toml"}


def _file_stem(image: str) -> str:
    return SAFE_NAME.sub("_", image)


def repo2docker_base_image(config_file: str = "") -> str:
    """The base image repo2docker builds on, with the builder's repo2docker config."""
    from repo2docker.app import Repo2Docker

    r2d = Repo2Docker()
    try:
        if config_file:
            r2d.load_config_file(config_file)
    except Exception:  # the builder reports a broken config; the record says "unknown"
        return ""
    return r2d.base_image


def parse_probe(output: str) -> dict[str, str]:
    """The probe's sections by name; empty ones are left out."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        if line.startswith(SECTION):
            current = line[len(SECTION):].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {k: "\n".join(v).strip() + "\n" for k, v in sections.items() if "".join(v).strip()}


class EnvironmentRecords:
    """Write and read the records of built images (one JSON file and one log each)."""

    def __init__(self, root: Path, engine=None, base_image: str = "", log=None,
                 probe_timeout: float = 120):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.engine = engine
        self.base_image = base_image
        self.log = log
        self.probe_timeout = probe_timeout
        self._tasks: set[asyncio.Task] = set()

    def follow(self, build, plan, resolved) -> None:
        """Record ``build`` once it completes, whoever watches it (or nobody)."""
        started = time.time()

        async def watch():
            await asyncio.wait({build.task})
            if build.outcome == "built":
                await self.built(build.image, build.events, plan, resolved, started,
                                 getattr(build, "dropped", 0))

        task = asyncio.ensure_future(watch())
        self._tasks.add(task)

        def done(t):
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() and self.log:
                self.log.error("Could not record %s", build.image, exc_info=t.exception())

        task.add_done_callback(done)

    async def settle(self) -> None:
        """Wait for records still being written (a CLI build exits right after)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self, grace: float = 30) -> None:
        """At shutdown: let records being written finish for ``grace`` seconds, then cancel
        them, so no package-reading container outlives the service (each removes its own
        container on the way out)."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _paths(self, image: str) -> tuple[Path, Path]:
        stem = _file_stem(image)
        return self.root / f"{stem}.json", self.root / f"{stem}.log"

    def get(self, image: str) -> dict | None:
        path, _ = self._paths(image)
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def find(self, provider: str, persistent_spec: str) -> dict | None:
        """The record of a build from ``provider``/``persistent_spec`` (the ref a commit),
        for when the repository itself is gone. Scans the records: there is one per image."""
        for path in sorted(self.root.glob("*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if record.get("provider") == provider \
                    and record.get("persistent_spec") == persistent_spec:
                return record
        return None

    def build_log(self, image: str) -> str | None:
        _, log = self._paths(image)
        try:
            return log.read_text()
        except OSError:
            return None

    def _write(self, image: str, record: dict) -> None:
        path, _ = self._paths(image)
        partial = path.with_name(path.name + f".{os.getpid()}.partial")
        partial.write_text(json.dumps(record, indent=1, sort_keys=True))
        partial.replace(path)  # readers never see half a record

    async def built(self, image: str, events: list[dict], plan, resolved,
                    started: float, dropped: int = 0) -> dict:
        """Record a completed build of ``image`` (``plan``: the pipeline's ImagePlan)."""
        _, log_path = self._paths(image)
        text = "".join(e.get("message", "") for e in events if e.get("phase") != "built")
        if dropped:
            text += f"[{dropped} more log lines were not kept]\n"
        log_path.write_text(text)
        fp = plan.fingerprint
        spec = resolved.spec
        record = {
            "image": image,
            "provider": spec.provider,
            "spec": spec.spec,
            "persistent_spec": resolved.persistent_spec,
            "repo_url": spec.repo_url,
            "commit": resolved.commit,
            "tree": plan.tree,
            "kind": fp.kind,
            "key": fp.key,
            "buildpack": fp.buildpack,
            "files": list(fp.files),
            "reason": fp.reason,
            "repo2docker_version": repo2docker_version,
            "base_image": self.base_image,
            "built_at": time.time(),
            "build_seconds": round(time.time() - started, 1),
            "image_id": "", "digest": "", "size": 0, "packages": {},
        }
        record.update(await self.inspect(image))
        self._write(image, record)
        try:
            record["packages"] = await self.packages(image)
        except Exception as e:  # a record without packages is still a record
            if self.log:
                self.log.warning("Could not read the packages of %s: %s", image, e)
            record["packages_error"] = str(e)
        self._write(image, record)
        return record

    def frozen_requirements(self, image: str, files: list[str]) -> tuple[str, str, dict] | None:
        """For a rebuild of ``image`` from its record: (path of its requirements.txt, the
        recorded ``pip freeze`` as pins, the record), or None where that would not give the
        same environment back (no record, no pip list, files besides pip's that install
        packages: conda, Pipenv, R, Julia, ...)."""
        record = self.get(image)
        pip = ((record or {}).get("packages") or {}).get("pip")
        requirements = [f for f in files if f.rsplit("/", 1)[-1] == "requirements.txt"]
        if not pip or len(requirements) != 1 \
                or any(f.rsplit("/", 1)[-1] in NOT_PIP_ONLY for f in files):
            return None
        pins = [line.strip() for line in pip.splitlines() if PINNED.match(line.strip())]
        if not pins:
            return None
        text = (f"# binderlab: the packages recorded in {image} on "
                f"{time.strftime('%Y-%m-%d', time.gmtime(record.get('built_at', 0)))}\n"
                + "\n".join(pins) + "\n")
        return requirements[0], text, record

    async def inspect(self, image: str) -> dict:
        if self.engine is None:
            return {}
        try:
            found = await self.engine.call(self.engine.client.images.get, image)
        except Exception:
            return {}
        attrs = found.attrs
        digests = attrs.get("RepoDigests") or []
        return {"image_id": attrs.get("Id", ""), "size": attrs.get("Size", 0),
                "digest": digests[0].split("@", 1)[1] if digests else "",
                "created": timestamp(attrs.get("Created", "")) or 0.0}

    async def packages(self, image: str) -> dict[str, str]:
        """Run the image once (no network, its own user) and read what is installed."""
        if self.engine is None:
            return {}
        client = self.engine.client
        container = await self.engine.call(
            client.containers.create, image, entrypoint=["/bin/sh", "-c"], command=[PROBE],
            network_disabled=True, labels={"binderlab.probe": "packages"},
            mem_limit="1g", pids_limit=256)
        try:
            await self.engine.call(container.start)
            try:
                await asyncio.wait_for(self.engine.call(container.wait), self.probe_timeout)
            except TimeoutError:
                raise RuntimeError(f"reading packages took over {self.probe_timeout:g} s") \
                    from None
            output = (await self.engine.call(container.logs, stdout=True, stderr=False)) \
                .decode(errors="replace")
        finally:
            await self.engine.call(container.remove, force=True)
        return parse_probe(output)


def reproduce(record: dict) -> dict[str, str]:
    """Commands that bring the environment back: the image by digest, and repo2docker."""
    image = record["image"]
    ref = f"{image}@{record['digest']}" if record.get("digest") else image
    out = {}
    if record.get("digest"):
        out["pull"] = f"docker pull {shlex.quote(ref)}"
    out["run"] = (f"docker run -it --rm -p 8888:8888 {shlex.quote(ref)} "
                  "jupyter lab --ip=0.0.0.0 --port=8888")
    if record["provider"] in ("gh", "gl", "git", "gist"):
        source = f"--ref {record['commit']} {shlex.quote(record['repo_url'])}"
    elif record["provider"] == "ckan":
        source = shlex.quote(record["repo_url"])
    else:  # repo2docker takes DOIs and SWHIDs as they are
        source = shlex.quote(record["persistent_spec"])
    out["repo2docker"] = (f"repo2docker --user-id 1000 --user-name jovyan {source}"
                          .replace("  ", " "))
    return out
