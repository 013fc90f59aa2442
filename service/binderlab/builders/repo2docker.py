"""The one-box builder: jupyter-repo2docker as a subprocess on the local Docker engine."""

import asyncio
import os
import signal
import sys
from pathlib import Path

from traitlets import Bool, List, Unicode

from binderlab.builders.base import Build, Builder, SourceFactory, log_message
from binderlab.errors import LaunchError, RepositoryError
from binderlab.platform import metrics
from binderlab.platform.process import kill_group

__all__ = ["Build", "Builder", "Repo2DockerBuilder", "SourceFactory", "log_message"]


class Repo2DockerBuilder(Builder):
    """Build with jupyter-repo2docker on the local Docker engine."""

    repo2docker_command = List(
        Unicode(),
        default_value=[sys.executable, "-m", "repo2docker"],
        help="How to run repo2docker (default: the repo2docker of binderlab's Python).",
    ).tag(config=True)

    push = Bool(
        False,
        help="""Push each image to its registry (the image prefix names it, e.g.
        'registry.example.org/binderlab/'); a build counts as complete when the registry has
        its manifest, and sessions pull it. For several hosts sharing one registry.""",
    ).tag(config=True)

    @property
    def pushes(self) -> bool:
        return self.push

    def command(self, image: str, context: Path, labels: dict[str, str]) -> list[str]:
        cmd = [*self.repo2docker_command, "--json-logs", "--no-run", "--image-name", image]
        if self.push:
            cmd.append("--push")
        for key, value in labels.items():
            cmd += ["--label", f"{key}={value}"]
        return [*cmd, *self.r2d_args(), str(context)]

    async def run_build(self, build: Build, context: Path, labels: dict[str, str]) -> None:
        cmd = self.command(build.image, context, labels)
        self.log.info("Building %s: %s", build.image, " ".join(cmd))
        metrics.BUILDER_RUNS.inc()
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # so a timeout can stop repo2docker and its docker client
            limit=1 << 20,
            env=os.environ.copy(),
        )
        tail: list[str] = []

        async def pump():
            async for raw in proc.stdout:
                # the build context's path on this server is nobody else's business
                message = log_message(raw).replace(str(context), ".")
                if message.startswith("Error during build: Command"):
                    continue  # repeats the whole docker command line
                tail.append(message)
                del tail[: -self.failure_log_lines]
                await build.emit({"phase": "building", "message": message})
            return await proc.wait()

        try:
            code = await asyncio.wait_for(pump(), self.build_timeout or None)
        except TimeoutError:
            kill_group(proc, signal.SIGTERM)
            await proc.wait()
            # the repository asks for more than this host gives one build
            raise RepositoryError(f"The build took longer than {self.build_timeout:g} s and "
                                  "was stopped.\n" + "".join(tail)) from None
        except asyncio.CancelledError:
            kill_group(proc, signal.SIGTERM)
            raise
        finally:
            # repo2docker's docker clients outlive it when it is killed: a build must not go
            # on outside the build slots and the timeout
            kill_group(proc, signal.SIGKILL)
        if code != 0:
            message = f"repo2docker failed (exit code {code}). Last lines of its log:\n" + \
                "".join(tail)
            if code < 0:  # killed by a signal: not something the repository did
                raise LaunchError(message, 500)
            if not await self.engine_answers():
                raise LaunchError(message, 503)
            raise RepositoryError(message)

    async def engine_answers(self) -> bool:
        """After a failed build: did the engine fail it (down, restarting) rather than the
        repository's steps?"""
        try:
            return bool(await self.engine.ping())
        except Exception:
            return False
