"""Can this host build? The checks `binderlab up` and `binderlab build` run before they
start, and that /health reports as its "builder" check.

repo2docker (2025.08 and later) builds only through `docker buildx`, found through the
`docker` client on PATH; without it every build fails, after the user waited for the fetch.
These checks say so at once, with what to do. Each is one cheap call (a CLI plugin's
`version`, an engine ping, an image inspect), so start-up and /health stay fast.
"""

import asyncio
import os
import shutil
from dataclasses import dataclass

import docker.errors

SETUP_HINT = "run `bash deploy/docker/setup.sh` (README: Set-up)"


@dataclass
class Check:
    """One finding: ``ok`` False stops a start; a ``warning`` is printed and lets it go on."""

    name: str
    ok: bool
    message: str
    warning: bool = False


async def check_buildx(cli: str = "docker", timeout: float = 10) -> Check:
    """`<cli> buildx version` answers, as repo2docker requires before every build."""
    if shutil.which(cli) is None:
        return Check("buildx", False, f"No `{cli}` command on PATH: install the Docker "
                     f"client (apt-get install docker.io) or {SETUP_HINT}.")
    try:
        proc = await asyncio.create_subprocess_exec(
            cli, "buildx", "version", stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return Check("buildx", False, f"`{cli} buildx version` did not answer within "
                     f"{timeout:g} s.")
    if proc.returncode != 0:
        lines = [x for x in (err or out).decode(errors="replace").splitlines() if x.strip()]
        return Check("buildx", False,
                     f"`{cli} buildx version` failed ({lines[0] if lines else 'no output'}): "
                     f"repo2docker cannot build without docker buildx. To install it, "
                     f"{SETUP_HINT}.")
    return Check("buildx", True, out.decode(errors="replace").strip())


async def check_engine(engine) -> Check:
    """The Docker engine answers (builds and sessions run on it)."""
    if engine is None:
        return Check("engine", True, "no local engine (docker_url = 'none')")
    try:
        await asyncio.wait_for(engine.ping(), 10)
    except Exception as e:
        return Check("engine", False, engine_message(e))
    return Check("engine", True, "the Docker engine answers")


def check_engine_now(engine) -> Check | None:
    """The same as check_engine, before the event loop runs; None when it answers."""
    if engine is None:
        return None
    try:
        engine.client.ping()
    except Exception as e:
        return Check("engine", False, engine_message(e))
    return None


def configured_base_image(r2d_args: list[str]) -> str | None:
    """repo2docker's base image under these options (its config file included)."""
    from repo2docker.__main__ import make_r2d

    try:
        return make_r2d([*r2d_args, "--no-run", os.devnull]).base_image
    except (SystemExit, Exception):
        return None  # repo2docker itself reports a bad config when it builds


async def check_base_image(engine, image: str | None) -> Check:
    """The base image of repo2docker's build packs is present, or at least can be pulled.

    Only a present image is certain here: whether a registry holds it can only be known by
    asking it, which a start must not wait for. A missing image is a warning (repositories
    with their own Dockerfile do not need it); the first build of another repository pulls
    it, or fails saying why."""
    if engine is None or not image:
        return Check("base image", True, "not checked (no local engine or no base image)")
    try:
        await engine.call(engine.client.images.get, image)
    except docker.errors.ImageNotFound:
        return Check("base image", True, f"repo2docker's base image {image} is not on this "
                     "engine: the first build that needs it pulls it (docker pull "
                     f"{image} now, or set c.Repo2Docker.base_image in the repo2docker "
                     "config to one that is here)", warning=True)
    except Exception as e:
        return Check("base image", False, f"Could not inspect the base image {image} "
                     f"({_short(e)}).")
    return Check("base image", True, f"{image} is present")


async def builder_checks(builder, engine) -> list[Check]:
    """What a build on this host needs, by the builder's kind.

    Builders that build elsewhere (Kubernetes build pods) have nothing to check here."""
    if not hasattr(builder, "repo2docker_command") or engine is None:
        return []
    from repo2docker.docker import DOCKER_CLI

    buildx, ping = await asyncio.gather(check_buildx(DOCKER_CLI), check_engine(engine))
    checks = [buildx, ping]
    if ping.ok:
        image = configured_base_image(builder.r2d_args())
        checks.append(await check_base_image(engine, image))
    return checks


def engine_message(error: Exception) -> str:
    return (f"The Docker engine does not answer ({_short(error)}): start it (systemctl start "
            "docker) or set DOCKER_HOST / c.BinderLab.docker_url.")


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]
