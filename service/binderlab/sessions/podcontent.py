"""A claim on Kubernetes: the commit's files go into the running pooled pod.

The same thing ``kubectl cp`` does, through kubernetes_asyncio's stream API: an exec of
``tar -x`` in the pod's notebook container (as the pod's own user, so the files are the
notebook user's), its stdin fed with the commit's archive over the exec websocket
(``v4.channel.k8s.io``: every frame starts with its channel byte, 0 stdin, 1 stdout,
2 stderr, 3 the exit status).

The v4 protocol cannot close stdin alone, so tar would wait for an end of file that never
comes: the command reads exactly the archive's size (``head -c``) and tar gets its end of
file from the pipe. The target folder is the image's own ``$REPO_DIR`` (repo2docker sets it
in every image; ``$HOME`` otherwise), read by the pod's shell, since the service cannot read
the image's configuration from a registry here.
"""

import asyncio
import json
from pathlib import Path

from binderlab.contract import LABEL_USER
from binderlab.errors import LaunchError

CHUNK = 256 << 10  # bytes per stdin frame
STDIN, STDOUT, STDERR, ERROR = 0, 1, 2, 3
# $0: bytes to read; the image's REPO_DIR (repo2docker), else the home
EXTRACT = 'cd "${REPO_DIR:-$HOME}" && head -c "$0" | tar -x -f - --no-same-owner'


def exit_status(error_frame: str) -> tuple[int, str]:
    """The exit code and message from the exec's status channel (a Kubernetes Status)."""
    try:
        status = json.loads(error_frame)
    except ValueError:
        return 1, error_frame[:300]
    if status.get("status") == "Success":
        return 0, ""
    causes = (status.get("details") or {}).get("causes") or []
    codes = [c.get("message") for c in causes if c.get("reason") == "ExitCode"]
    code = int(codes[0]) if codes and str(codes[0]).isdigit() else 1
    return code, status.get("message", "")


async def session_pod(core, namespace: str, username: str,
                      label_selector: str = "component=singleuser-server") -> str:
    """The running pod of the pooled hub user ``username`` (KubeSpawner's annotation)."""
    pods = await core.list_namespaced_pod(namespace, label_selector=label_selector)
    names = [p.metadata.name for p in pods.items
             if (p.metadata.annotations or {}).get(LABEL_USER) == username
             and p.status.phase == "Running"]
    if len(names) != 1:
        raise LaunchError(f"The pooled session {username} has no running pod.", 500)
    return names[0]


async def copy_into_pod(core, namespace: str, pod: str, archive: Path,
                        container: str = "notebook", timeout: float = 120) -> None:
    """Extract the tar at ``archive`` into the pod's repository folder; raises LaunchError
    with tar's own message when it fails."""
    from kubernetes_asyncio.client import CoreV1Api
    from kubernetes_asyncio.stream import WsApiClient

    size = archive.stat().st_size
    ws_core = CoreV1Api(api_client=WsApiClient(configuration=core.api_client.configuration))
    try:
        context = await ws_core.connect_get_namespaced_pod_exec(
            pod, namespace, container=container, command=["sh", "-c", EXTRACT, str(size)],
            stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False)
        errors, status = [], None
        async with asyncio.timeout(timeout):
            async with context as ws:
                with archive.open("rb") as data:
                    while block := data.read(CHUNK):
                        await ws.send_bytes(bytes([STDIN]) + block)
                async for message in ws:
                    frame = message.data if isinstance(message.data, bytes) else \
                        str(message.data).encode()
                    if not frame:
                        continue
                    if frame[0] == STDERR:
                        errors.append(frame[1:].decode(errors="replace"))
                    elif frame[0] == ERROR and len(frame) > 1:
                        status = frame[1:].decode(errors="replace")
    except TimeoutError:
        raise LaunchError(f"Copying the repository into {pod} took over {timeout:.0f} s.",
                          504) from None
    finally:
        await ws_core.api_client.close()
    code, message = exit_status(status) if status is not None else (1, "no exit status")
    if code:
        detail = "".join(errors).strip()[-300:] or message
        raise LaunchError(f"Could not copy the repository content into the session "
                          f"(tar exited {code}: {detail}).", 500)
