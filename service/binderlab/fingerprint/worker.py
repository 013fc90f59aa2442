"""Worker processes that run repo2docker's build-pack inspection for the fingerprint.

repo2docker's build packs work on the current directory, parse environment files without
size limits, and (R, Julia) make HTTP requests without timeouts; none of that may stall or
break the service. So each fingerprint runs in a separate worker process
(``python -m binderlab.fingerprint.worker``) that:

- refuses to open any file of the checkout larger than ``max_file_bytes`` (an audit hook
  checks the size before repo2docker reads a byte: a 20 MB environment.yml costs a stat);
- runs under an address-space limit (``RLIMIT_AS``), so a parser that balloons gets a
  MemoryError instead of the host's OOM killer;
- is killed, with its process group, when one fingerprint takes longer than
  ``timeout``; a worker that dies or is killed is replaced by a fresh one for the next
  launch, and only the launch that hit it fails (with a clear message).

Up to ``workers`` fingerprints run at once; workers stay alive between launches so
repo2docker is imported once per worker, not once per launch.
"""

import asyncio
import json
import os
import resource
import signal
import sys
from pathlib import Path

from traitlets import Float, Integer
from traitlets.config import LoggingConfigurable

from binderlab.errors import LaunchError
from binderlab.platform import metrics


class FingerprintWorker(LoggingConfigurable):
    """A small pool of fingerprint worker processes (see the module docstring)."""

    workers = Integer(
        2,
        help="""Fingerprints computed at once (default 2), each in its own worker process.

        One slow repository then holds one worker, not every launch of a new commit.""",
    ).tag(config=True)

    timeout = Float(
        60,
        help="""Seconds one fingerprint may take (default 60); the worker is then killed and
        replaced, and that launch fails with a 422. Covers repo2docker's R and Julia build
        packs, which make HTTP requests without timeouts while they are inspected.""",
    ).tag(config=True)

    memory_mb = Integer(
        512,
        help="""Address space (MiB) of a fingerprint worker (default 512; RLIMIT_AS). A
        repository whose environment files need more to read gets a 413; 0: no limit.""",
    ).tag(config=True)

    max_file_kb = Integer(
        1024,
        help="""Largest file (KiB) of a checkout that repo2docker may open while the
        fingerprint is computed (default 1024). Checked before a byte is read; larger
        environment files get a 413.""",
    ).tag(config=True)

    def __init__(self, r2d_args: list[str], **kwargs):
        super().__init__(**kwargs)
        self.r2d_args = list(r2d_args)
        self.memory_bytes = self.memory_mb << 20
        self.max_file_bytes = self.max_file_kb << 10
        self._slots = asyncio.Semaphore(max(1, self.workers))
        self._idle: list[asyncio.subprocess.Process] = []
        self._all: set[asyncio.subprocess.Process] = set()
        self.replaced = 0  # workers killed or found dead and replaced (for tests and logs)

    async def _start(self) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "binderlab.fingerprint.worker",
            str(self.memory_bytes), str(self.max_file_bytes), str(os.getpid()),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            # its own group: a timeout kills whatever repo2docker started too
            start_new_session=True, cwd="/",
            limit=16 << 20,
        )
        self._all.add(proc)
        return proc

    async def _kill(self, proc: asyncio.subprocess.Process) -> None:
        self._all.discard(proc)
        if proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        await proc.wait()
        self.replaced += 1

    async def compute(self, checkout: Path, tree_hash: str,
                      env_context: Path | None = None):
        from binderlab.fingerprint.buildpacks import Fingerprint

        request = json.dumps({"checkout": str(checkout), "tree": tree_hash,
                              "r2d_args": self.r2d_args,
                              "env_context": str(env_context) if env_context else None})
        async with self._slots:
            proc = None
            while self._idle and proc is None:
                proc = self._idle.pop()
                if proc.returncode is not None:  # died while idle (killed, OOM)
                    self.log.warning("Fingerprint worker %d had exited (%s); replacing it",
                                proc.pid, proc.returncode)
                    await self._kill(proc)
                    proc = None
            if proc is None:
                proc = await self._start()
            try:
                proc.stdin.write(request.encode() + b"\n")
                await proc.stdin.drain()
                line = await asyncio.wait_for(proc.stdout.readline(), self.timeout)
            except TimeoutError:
                self.log.warning("Fingerprint of %s took over %g s; worker %d killed", tree_hash,
                            self.timeout, proc.pid)
                await self._kill(proc)
                metrics.FINGERPRINT_FAILURES.labels("timeout").inc()
                raise LaunchError(
                    f"Reading this repository's environment took longer than "
                    f"{self.timeout:g} s, so it was stopped. Environment files that need "
                    "the network to be read (R, Julia) or are very large can cause this.",
                    422) from None
            except (ConnectionError, asyncio.CancelledError):
                await self._kill(proc)
                raise
            if not line:  # the worker died mid-fingerprint
                await self._kill(proc)
                code = proc.returncode
                metrics.FINGERPRINT_FAILURES.labels("worker_died").inc()
                why = (f"signal {-code}" if code and code < 0 else f"exit status {code}")
                self.log.error("Fingerprint worker %d died (%s) on %s; replaced", proc.pid, why,
                          tree_hash)
                raise LaunchError(
                    f"The fingerprint worker stopped ({why}) while reading this "
                    "repository; it has been replaced. Try again; if it fails again, "
                    "the repository needs more memory to read than this host allows.",
                    503)
            self._idle.append(proc)
        reply = json.loads(line)
        if "error" in reply:
            metrics.FINGERPRINT_FAILURES.labels(str(reply.get("status", 400))).inc()
            raise LaunchError(reply["error"], reply.get("status", 400))
        return Fingerprint(**reply["result"])

    async def aclose(self):
        """Kill every worker and wait for them to exit."""
        procs = list(self._all)
        self.close()
        for proc in procs:
            await proc.wait()

    def close(self):
        """Kill every worker (no await: called at shutdown, maybe without a loop)."""
        for proc in list(self._all):
            if proc.returncode is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._all.clear()
        self._idle.clear()


# ---- the worker process -------------------------------------------------------------------

class _TooLarge(BaseException):
    """Not an Exception: repo2docker's own ``except Exception`` must not swallow it."""


def _die_with_parent(parent: int) -> None:
    """A worker stuck in a network read must not outlive a service that was killed (it has
    its own session, so the service's process group signal does not reach it)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the service died before prctl took effect
        os._exit(1)


def _serve(memory_bytes: int, max_file_bytes: int, parent: int) -> None:
    from binderlab.fingerprint import buildpacks

    _die_with_parent(parent)

    # replies go to the original stdout; anything repo2docker prints goes to stderr
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    guarded: list[str] = []  # the checkout (and env-check context) being read now
    limit_text = (f"{max_file_bytes >> 20} MiB" if max_file_bytes % (1 << 20) == 0
                  else f"{max_file_bytes / 1024:g} KiB")

    def size_guard(event, args):
        if event != "open" or not guarded or not isinstance(args[0], str):
            return
        path = os.path.abspath(args[0])
        for root in guarded:
            if path.startswith(root):
                try:
                    size = os.stat(path).st_size
                except OSError:
                    return
                if size > max_file_bytes:
                    raise _TooLarge(f"{path[len(root):]} is {size / 1e6:.1f} MB; this host "
                                    f"reads environment files up to {limit_text}.")
                return

    sys.addaudithook(buildpacks._audit)
    sys.addaudithook(size_guard)
    from repo2docker.__main__ import make_r2d  # noqa: F401  (import once, before any request)

    for line in sys.stdin:
        request = json.loads(line)
        checkout = os.path.realpath(request["checkout"])
        guarded[:] = [checkout + os.sep, checkout + ".env-check" + os.sep]
        if request["env_context"]:
            guarded.append(os.path.realpath(request["env_context"]) + os.sep)
        try:
            result = buildpacks.compute(checkout, request["tree"], request["r2d_args"],
                                        request["env_context"])
            reply = {"result": result}
        except _TooLarge as e:
            reply = {"error": str(e), "status": 413}
        except MemoryError:
            reply = {"error": "Reading this repository's environment files needs more than "
                     f"the {memory_bytes >> 20} MiB this host allows.", "status": 413}
        except buildpacks.EnvironmentFileError as e:
            reply = {"error": str(e), "status": 422}
        except RecursionError:
            reply = {"error": "An environment file is nested too deeply to read.",
                     "status": 400}
        except Exception as e:
            reply = {"error": f"repo2docker cannot read this repository: {e}", "status": 400}
        finally:
            guarded.clear()
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
