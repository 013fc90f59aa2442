"""The service/hub contract: user_options round trip and the spawner's checks of them."""

import subprocess
import sys

import pytest

from binderlab.contract import (
    LABEL_GPUS,
    LABEL_KEY,
    LABEL_USER,
    HubSettings,
    OptionsError,
    SessionOptions,
    built_by_binderlab,
    content_archive,
    split_tag,
)

COMMIT = "a" * 40
TOKEN = "t" * 24


def check(options: dict, **kw) -> SessionOptions:
    args = {"image_prefix": "binderlab/", "username": "u1", "signing_key": "k",
            "need_token": True, **kw}
    return SessionOptions.from_user_options(options, **args)


def test_what_the_service_sends_is_what_the_spawner_reads():
    sent = SessionOptions(image="binderlab/env-abc", token=TOKEN, repo_url="https://x/r",
                          ref=COMMIT, provider="gh", spec="o/r/main", repo_key="gh/o/r",
                          client="127.0.0.1", content=COMMIT, gpus=["0", "GPU-1"],
                          extra={"note": "kept"}).signed("k", "u1")
    got = check(sent.to_user_options())
    assert got == sent
    assert got.session_labels("u1")[LABEL_GPUS] == "0,GPU-1"
    assert got.session_labels("u1")[LABEL_USER] == "u1"


@pytest.mark.parametrize("options, status, words", [
    ({"image": "other/env-abc", "token": TOKEN}, 403, "not built by binderlab"),
    ({"image": None, "token": TOKEN}, 403, "not built by binderlab"),
    ({"image": "binderlab/env-abc", "token": "short"}, 400, "launch token"),
    ({"image": "binderlab/env-abc", "token": TOKEN, "content": "main"}, 400, "commit"),
    ({"image": "binderlab/env-abc", "token": TOKEN, "gpus": "0"}, 400, "device IDs"),
    ({"image": "binderlab/env-abc", "token": TOKEN, "gpus": ["0;rm"]}, 400, "device IDs"),
    ({"image": "binderlab/env-abc", "token": TOKEN, "gpus": ["0"]}, 403, "binder service"),
    ({"image": "binderlab/env-abc", "token": TOKEN, "gpus": ["0"],
      "gpu_signature": "0" * 64}, 403, "binder service"),
])
def test_the_spawner_refuses_bad_options(options, status, words):
    with pytest.raises(OptionsError, match=words) as e:
        check(options)
    assert e.value.status == status


def test_a_signature_is_for_one_user_and_one_set_of_devices():
    options = SessionOptions(image="binderlab/x", token=TOKEN, gpus=["0"]).signed("k", "u1")
    with pytest.raises(OptionsError):
        check(options.to_user_options(), username="u2")
    moved = {**options.to_user_options(), "gpus": ["1"]}
    with pytest.raises(OptionsError):
        check(moved)
    with pytest.raises(OptionsError):  # no key configured on the hub: nothing is signed
        check(options.to_user_options(), signing_key="")


def test_token_is_optional_outside_anonymous_mode():
    assert check({"image": "binderlab/x"}, need_token=False).token == ""


def test_settings_reach_the_hub_through_the_environment():
    settings = HubSettings("reg.example:5000/bl/", "/srv/content", "secret")
    assert HubSettings.from_env(settings.to_env()) == settings
    assert HubSettings.from_env({}) == HubSettings()


def test_image_names_and_tags():
    assert split_tag("host:5000/a/b:tag") == ("host:5000/a/b", "tag")
    assert split_tag("host:5000/a/b") == ("host:5000/a/b", "latest")
    labels = {LABEL_KEY: "abc"}
    assert built_by_binderlab("binderlab/env-abc:latest", "binderlab/", labels)
    assert not built_by_binderlab("binderlab/env-abd", "binderlab/", labels)
    assert not built_by_binderlab("evil/env-abc", "binderlab/", labels)
    assert not built_by_binderlab("binderlab/env-abc", "binderlab/", {})


def test_content_archive_takes_only_a_commit(tmp_path):
    assert content_archive(tmp_path, COMMIT) == tmp_path / f"{COMMIT}.tar"
    with pytest.raises(ValueError):
        content_archive(tmp_path, "../../etc/passwd")


def test_the_spawners_import_nothing_of_the_service():
    """The hub loads the spawners: they may use the contract and platform helpers only, not
    the builders, GPU allocator, launch pipeline or the service's metrics."""
    code = (
        "import sys\n"
        "from importlib.metadata import entry_points\n"
        "names = {e.name: e for e in entry_points(group='jupyterhub.spawners')}\n"
        "for name in ('binderlab', 'binderlab-kubernetes'):\n"
        "    names[name].load()\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('binderlab'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert "binderlab.spawners.docker" in out and "binderlab.spawners.kubernetes" in out
    allowed = {"binderlab", "binderlab._version", "binderlab.contract", "binderlab.platform",
               "binderlab.platform.content", "binderlab.platform.registry", "binderlab.spawners",
               "binderlab.spawners.docker",
               "binderlab.spawners.kubernetes", "binderlab.spawners.mixin",
               "binderlab.spawners.persistent", "binderlab.spawners.contentmerge",
               "binderlab.spawners.kubestorage"}
    assert set(out) - allowed == set()
