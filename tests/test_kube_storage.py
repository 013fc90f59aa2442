"""Logged-in users' persistent claims on Kubernetes: the session pod and the claim generated
by KubeSpawner's own manifest code, checked against the Kubernetes API models (no cluster),
and the merge init container's command run for real in a container of the test image."""

import asyncio
import io
import re
import tarfile
from types import SimpleNamespace

import pytest
from kubernetes_asyncio.client import ApiClient
from traitlets.config import Config

from binderlab.spawners.kubernetes import BinderLabKubeSpawner
from tests.test_kubespawner import COMMIT, OPTIONS, kubeconfig  # noqa: F401 (fixture)

SERVER = "gh-course-lessons-1a2b3c4d"
LOGGED_IN = {**OPTIONS, "upstream": COMMIT}


class NamedServerSpawner(BinderLabKubeSpawner):
    """The spawner as the hub makes it for a named server (Spawner.name reads the hub's
    database record, which a mock spawner has none of)."""

    server_name = ""

    @property
    def name(self):
        return self.server_name


async def spawner_for(options, name=SERVER, user="alice", persistent=True):
    config = Config()
    config.BinderLabKubeSpawner.image_prefix = "registry.example.org/binderlab/"
    config.BinderLabKubeSpawner.persistent_storage = persistent
    spawner = NamedServerSpawner(_mock=True, config=config)
    spawner.server_name = name
    spawner.user = SimpleNamespace(name=user, id=7, url=f"/user/{user}/")
    spawner.server = SimpleNamespace(base_url=f"/user/{user}/{name}/")
    spawner.user_options = dict(options)
    spawner.configure_session()
    return spawner


def checked(obj, model):
    """``obj`` as the API server would receive it, read back through the API model (which
    checks every field's type)."""
    client = ApiClient()
    data = client.sanitize_for_serialization(obj)
    client._ApiClient__deserialize(data, model)
    return data


async def test_logged_in_server_mounts_the_users_claim_and_merges_into_it():
    spawner = await spawner_for(LOGGED_IN)
    pod = checked(await spawner.get_pod_manifest(), "V1Pod")
    claim = checked(spawner.get_pvc_manifest(), "V1PersistentVolumeClaim")
    # one claim per user, shared by all their named servers, never deleted with them
    assert claim["metadata"]["name"] == spawner.pvc_name == "claim-alice"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert claim["metadata"]["labels"]["binderlab.storage"] == "user"
    assert spawner.storage_pvc_ensure and not spawner.delete_pvc
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["persistent"]["persistentVolumeClaim"]["claimName"] == "claim-alice"
    notebook = pod["spec"]["containers"][0]
    mounts = {m["mountPath"]: m["name"] for m in notebook["volumeMounts"]}
    # the image's home is not hidden (the overlay's folder is still there); the claim is
    # beside it, and the session starts in the user's folder of this repository
    assert mounts["/persistent"] == "persistent" and mounts["/home/jovyan"] == "repo-content"
    assert notebook["workingDir"] == f"/persistent/{SERVER}"
    assert pod["spec"]["securityContext"]["fsGroup"] == 1000
    overlay, merge = pod["spec"]["initContainers"]
    assert (overlay["name"], merge["name"]) == ("content-overlay", "content-merge")
    assert merge["image"] == OPTIONS["image"]
    assert merge["securityContext"]["runAsUser"] == 1000
    assert merge["securityContext"]["allowPrivilegeEscalation"] is False
    assert merge["volumeMounts"] == [{"name": "persistent", "mountPath": "/persistent"}]
    args = merge["args"]
    assert args[args.index("--folder") + 1] == SERVER
    assert args[args.index("--commit") + 1] == COMMIT
    # the URL only through the environment (Kubernetes' $(VAR) expansion, no shell)
    assert args[args.index("--upstream-url") + 1] == "$(BINDER_CONTENT_URL)"
    assert {"name": "BINDER_CONTENT_URL", "value": OPTIONS["content_url"]} in merge["env"]
    assert "10.0.0.5" not in " ".join(merge["command"])
    # the program arrives as written (KubeSpawner's templates did not touch its braces)
    from binderlab.spawners.kubestorage import MERGE_SCRIPT
    assert merge["command"][-1] == MERGE_SCRIPT


async def test_tree_image_logged_in_merges_without_the_overlay():
    options = {k: v for k, v in LOGGED_IN.items() if k != "content"}
    spawner = await spawner_for(options)
    pod = checked(await spawner.get_pod_manifest(), "V1Pod")
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["content-merge"]


@pytest.mark.parametrize("name, persistent", [("", True), (SERVER, False)])
async def test_anonymous_sessions_get_no_claim(name, persistent):
    """A temporary user's default server (anonymous launches), or storage turned off."""
    spawner = await spawner_for(OPTIONS, name=name, user="binder-0123456789abcdef",
                                persistent=persistent)
    pod = checked(await spawner.get_pod_manifest(), "V1Pod")
    assert "persistent" not in {v["name"] for v in pod["spec"]["volumes"]}
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["content-overlay"]
    assert not spawner.storage_pvc_ensure


async def test_bad_upstream_is_refused():
    with pytest.raises(Exception, match="upstream must be a full commit SHA"):
        await spawner_for({**LOGGED_IN, "upstream": "main"})


@pytest.mark.docker
async def test_the_merge_init_container_runs_as_kubernetes_would_run_it(tmp_path,
                                                                       docker_client):
    """The init container's command and args (with $(BINDER_CONTENT_URL) expanded, as the
    kubelet does), run in the test image as the notebook user against the
    KubernetesBuilder's content server: the commit lands in the user's folder, and a second
    commit that changes a file the user edited puts upstream's version beside it."""
    from binderlab.builders.kubernetes import KubernetesBuilder

    volume = tmp_path / "claim"
    volume.mkdir()
    volume.chmod(0o777)  # as fsGroup makes a new claim writable for the notebook user
    config = Config()
    config.KubernetesBuilder.context_ip = "127.0.0.1"
    config.KubernetesBuilder.context_port = 0
    builder = KubernetesBuilder(engine=None, work_dir=tmp_path, config=config)
    builder.contexts.start()
    builder.context_url = f"http://127.0.0.1:{builder.contexts.port}"
    loop = asyncio.get_running_loop()

    async def merge(commit, files):
        archive = tmp_path / f"{commit}.tar"
        with tarfile.open(archive, "w") as tar:
            for name, text in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(text)
                tar.addfile(info, io.BytesIO(text.encode()))
        url = await builder.serve_content(archive)
        options = {**LOGGED_IN, "upstream": commit, "content": commit,
                   "content_url": re.sub(r"^http://127\.0\.0\.1:\d+", "http://10.0.0.5:8586",
                                         url)}
        spawner = await spawner_for(options)
        pod = checked(await spawner.get_pod_manifest(), "V1Pod")
        init = pod["spec"]["initContainers"][-1]
        env = {e["name"]: e["value"] for e in init["env"]}
        env["BINDER_CONTENT_URL"] = url  # the pod IP here is this machine's loopback
        args = [a.replace("$(BINDER_CONTENT_URL)", env["BINDER_CONTENT_URL"])
                for a in init["args"]]
        return await loop.run_in_executor(None, lambda: docker_client.containers.run(
            "binderlab-test/base:latest", init["command"] + args,
            user=str(init["securityContext"]["runAsUser"]), network_mode="host",
            remove=True, environment=env, labels={"binderlab.test": "kube-merge"},
            volumes={str(volume): {"bind": "/persistent", "mode": "rw"}}))

    try:
        first, second = "1" * 40, "2" * 40
        await merge(first, {"lesson.ipynb": "v1", "data/x.csv": "1\n"})
        folder = volume / SERVER
        assert (folder / "lesson.ipynb").read_text() == "v1"
        (folder / "lesson.ipynb").write_text("my answers")
        out = await merge(second, {"lesson.ipynb": "v2", "data/x.csv": "2\n"})
        assert (folder / "lesson.ipynb").read_text() == "my answers"
        assert (folder / "lesson.upstream-2222222.ipynb").read_text() == "v2"
        assert (folder / "data" / "x.csv").read_text() == "2\n"
        assert "lesson.ipynb" in (folder / "BINDERLAB-MERGE.md").read_text()
        assert b'"conflicts"' in out
    finally:
        builder.contexts.stop()
