"""The ``binderlab`` command: ``up``, ``serve``, ``build``."""

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from traitlets import Bool, Unicode
from traitlets.config import Application

from binderlab._version import __version__
from binderlab.app import BinderLab
from binderlab.builders.preflight import builder_checks
from binderlab.commands.course import CourseApp
from binderlab.commands.down import DownApp
from binderlab.commands.preflight import EngineFirst, require
from binderlab.commands.up import UpApp
from binderlab.commands.volumes import VolumesApp
from binderlab.errors import LaunchError, RepositoryError
from binderlab.fingerprint.startscript import write_env_context
from binderlab.launch.pipeline import LaunchRequest


class BuildApp(EngineFirst, BinderLab):
    name = "binderlab-build"
    description = """Build (or find) the image of a repository and print its name.

    binderlab build <repo> [--ref REF] [--pin]

    <repo> is a clone URL (https://host/owner/repo), a provider spec such as
    gh/<owner>/<repo>, or a local directory (e.g. environments/scipy). Uses the same
    configuration as the service (--config), so the service finds what this builds:
    run it the night before class and every launch is a cache hit."""

    aliases = {**BinderLab.aliases, "ref": "BuildApp.ref"}
    flags = {**BinderLab.flags,
             "pin": ({"BuildApp": {"pin": True}}, "Never evict the image (disk budget).")}
    ref = Unicode("HEAD", help="Branch, tag or commit to build (default HEAD).").tag(config=True)
    pin = Bool(False, help="Pin the image: eviction never removes it.").tag(config=True)

    def parse_target(self) -> LaunchRequest:
        if len(self.extra_args) != 1:
            raise SystemExit("Usage: binderlab build <repo URL or provider/spec> [--ref REF]")
        target = self.extra_args[0]
        if "://" in target:
            return LaunchRequest(self.providers["git"], f"{quote(target, safe='')}/{self.ref}",
                                 build_only=True)
        prefix, _, spec = target.partition("/")
        if prefix not in self.providers or not spec:
            raise SystemExit(f"Unknown repository {target!r}: give a URL or <provider>/<spec> "
                             f"with provider one of {', '.join(self.providers)}.")
        if self.ref != "HEAD" or spec.count("/") < 2:
            spec = f"{spec}/{quote(self.ref, safe='/')}"
        return LaunchRequest(self.providers[prefix], spec, build_only=True)

    async def run(self) -> int:
        # before the fetch: a host that cannot build says so at once, not after the wait
        require(await builder_checks(self.builder, self.engine), self.log)
        if len(self.extra_args) == 1 and os.path.isdir(self.extra_args[0]):
            events = self.local_build(Path(self.extra_args[0]))
        else:
            events = self.pipeline.events(self.parse_target())
        image = None
        try:
            async for event in events:
                message = event.get("message", "")
                if event["phase"] == "failed":
                    sys.stderr.write(message)
                    return 1
                if event["phase"] in ("fetching", "building"):
                    sys.stderr.write(message)
                image = event.get("imageName", image)
        except LaunchError as e:  # the checkout's fault (or ours): the message, no traceback
            sys.stderr.write(f"binderlab build: {e}\n")
            return 1
        if getattr(self, "records", None) is not None:
            await self.records.settle()  # the environment record of what was just built
        if self.pin:
            self.index.pin(image, note=self.extra_args[0])
            sys.stderr.write(f"Pinned {image}\n")
        print(image)
        return 0

    def start(self):
        self.launcher = None
        self.pipeline.launcher = None
        sys.exit(asyncio.run(self.run()))

    async def local_build(self, path: Path):
        """Build a directory that is not a git commit (e.g. the environments/ catalog)."""
        digest = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file() and ".git" not in p.parts):
            digest.update(f"\0{f.relative_to(path)}\0".encode() + f.read_bytes())
        try:
            fp = await self.fingerprints.compute(path.resolve(), digest.hexdigest()[:40])
        except Exception as e:
            raise RepositoryError(f"repo2docker cannot read {path}: {e}", 400) from None
        yield {"phase": "fetching", "message": f"{path}: {fp.kind} key {fp.key[:12]} "
               f"({', '.join(fp.files) or fp.reason})\n"}
        plan = self.builder.image_plan(fp.kind, fp.key, str(path.resolve()))
        image = plan.name
        if await self.builder.image_ready(image, fp.key):
            yield {"phase": "built", "imageName": image, "message": f"Found {image}\n"}
            return
        files = fp.files if fp.kind == "env" else [
            str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()]

        async def source(dest: Path):
            if fp.kind == "env":  # the environment files and a start script's placeholder
                write_env_context(path, dest, files, fp.start)
                return
            for name in files:
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path / name, dest / name)
            dest.mkdir(parents=True, exist_ok=True)

        async for event in self.builder.build(image, plan.labels, source).follow():
            yield event


class EnvHashApp(Application):
    name = "binderlab-env-hash"
    description = """Print the environment fingerprint of a checkout and the files it
    comes from: the cache key binderlab would use for it.

    binderlab env-hash <path> [--config FILE]"""

    aliases = {"config": "EnvHashApp.config_file"}
    config_file = Unicode("binderlab_config.py",
                          help="binderlab's config file (repo2docker options).").tag(config=True)

    def start(self):
        from binderlab.builders.repo2docker import Repo2DockerBuilder
        from binderlab.fingerprint.buildpacks import _audit, compute

        if len(self.extra_args) != 1 or not os.path.isdir(self.extra_args[0]):
            raise SystemExit("Usage: binderlab env-hash <path to a checkout>")
        self.load_config_file(self.config_file)
        builder = Repo2DockerBuilder(config=self.config, engine=None, work_dir=Path("."))
        path = Path(self.extra_args[0]).resolve()
        tree = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD:./"],
                              capture_output=True, text=True).stdout.strip() or "(not git)"
        sys.addaudithook(_audit)
        try:
            fp = compute(str(path), tree, builder.r2d_args(), None)
        except Exception as e:
            # repo2docker refuses the checkout (e.g. a Python it does not support): the
            # checkout's fault, said as the service says it, without a traceback
            sys.stderr.write(f"binderlab env-hash: repo2docker cannot read {path}: {e}\n")
            raise SystemExit(1) from None
        print(f"fingerprint: {fp['kind']}-{fp['key']}")
        print(f"build pack:  {fp['buildpack']}")
        if fp["kind"] == "env":
            print("defined by:  " + (", ".join(fp["files"]) or "repo2docker's defaults"))
            if fp.get("start"):
                print(f"start:       {fp['start']} (runs from the session's content)")
        else:
            print(f"keyed by the git tree: {fp['reason']}")


class BinderLabCommand(Application):
    name = "binderlab"
    version = __version__
    description = "binderlab: git repositories as live, reproducible JupyterLab sessions."
    examples = """
    binderlab up --config binderlab_config.py    # hub + proxy + binder service
    binderlab serve                              # binder service only
    binderlab build https://github.com/o/r --ref main
    """
    subcommands = {
        "up": (UpApp, "Start JupyterHub, its proxy and the binder service on this machine."),
        "down": (DownApp, "Stop the proxy and sessions a stopped `binderlab up` kept running."),
        "serve": (BinderLab, "Run the binder service only (JupyterHub runs elsewhere)."),
        "build": (BuildApp, "Build or find a repository's image and print its name."),
        "env-hash": (EnvHashApp, "Print a checkout's environment fingerprint and its files."),
        "course": (CourseApp, "Manage courses with seats: add, list, show, remove."),
        "volumes": (VolumesApp, "List or remove logged-in users' persistent volumes."),
    }

    def start(self):
        if self.subapp is None:
            self.print_help()
            raise SystemExit(2)
        return self.subapp.start()


def main(argv=None):
    BinderLabCommand.launch_instance(argv)


