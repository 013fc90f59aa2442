"""Pooled pods through KubeSpawner's own manifest code (no cluster): a pooled start has no
content and no GPU, and its annotations name the pool's user, as the tracker reads them."""

import pytest

from binderlab.contract import LABEL_REPO_KEY, LABEL_USER, OptionsError, SessionOptions
from tests.test_kubespawner import COMMIT, kubeconfig, manifest  # noqa: F401 (fixture)

POOLED = {"image": "registry.example.org/binderlab/env-" + "b" * 40,
          "token": "a-launch-token-of-enough-length", "pooled": True}


async def test_pooled_pod_has_no_content_overlay():
    spawner, pod = await manifest(POOLED)
    assert not pod["spec"].get("initContainers")  # the content comes with the claim
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["JUPYTER_TOKEN"] == POOLED["token"] and env["BINDER_REF"] == ""
    assert "nvidia.com/gpu" not in (container.get("resources") or {}).get("limits", {})
    annotations = pod["metadata"]["annotations"]
    assert annotations[LABEL_USER] and annotations[LABEL_REPO_KEY] == ""


@pytest.mark.parametrize("extra", [{"content": COMMIT}, {"gpus": ["0"], "gpu_signature": "x"},
                                   {"pooled": "yes"}])
def test_pooled_start_with_content_or_gpus_is_refused(extra):
    with pytest.raises(OptionsError):
        SessionOptions.from_user_options({**POOLED, **extra}, image_prefix="registry.",
                                         username="binderpool-1", signing_key="k",
                                         need_token=True)
