"""Environment records without an engine: what the package probe's output becomes, the
reproduce block, and when a rebuild from recorded packages applies."""

import json

from binderlab.builders.records import SECTION, EnvironmentRecords, parse_probe, reproduce


def test_probe_sections_skip_what_the_image_lacks():
    out = (f"{SECTION}pip\nsix==1.16.0\ntabulate==0.9.0\n{SECTION}conda-explicit\n"
           f"{SECTION}conda-env\n\n{SECTION}r\nggplot2 3.5.0\n")
    assert parse_probe(out) == {"pip": "six==1.16.0\ntabulate==0.9.0\n", "r": "ggplot2 3.5.0\n"}


def record(**kw):
    return {"image": "binderlab/env-abc", "digest": "", "provider": "gh",
            "repo_url": "https://github.com/o/r", "commit": "c" * 40,
            "persistent_spec": "o/r/" + "c" * 40, **kw}


def test_reproduce_block_for_git_and_records():
    plain = reproduce(record())
    assert "pull" not in plain
    assert plain["run"].startswith("docker run -it --rm -p 8888:8888 binderlab/env-abc ")
    assert plain["repo2docker"].endswith(f"--ref {'c' * 40} https://github.com/o/r")
    pushed = reproduce(record(digest="sha256:" + "d" * 64))
    assert pushed["pull"] == f"docker pull binderlab/env-abc@sha256:{'d' * 64}"
    assert f"binderlab/env-abc@sha256:{'d' * 64}" in pushed["run"]
    doi = reproduce(record(provider="zenodo", persistent_spec="10.5281/zenodo.1"))
    assert doi["repo2docker"].endswith(" 10.5281/zenodo.1")
    hostile = reproduce(record(repo_url="https://h/o/r;rm -rf ~"))
    assert "'https://h/o/r;rm -rf ~'" in hostile["repo2docker"]  # quoted for the shell


def test_frozen_requirements_only_for_pip_environments(tmp_path):
    records = EnvironmentRecords(tmp_path)
    pip = "six==1.16.0\n-e git+https://x/y#egg=y\nlocal @ file:///srv/x\ntabulate==0.9.0\n"
    (tmp_path / "binderlab_env-abc.json").write_text(json.dumps(
        record(packages={"pip": pip}, built_at=0)))
    path, text, _ = records.frozen_requirements("binderlab/env-abc",
                                                ["binder/requirements.txt", "apt.txt"])
    assert path == "binder/requirements.txt"
    assert text.splitlines()[1:] == ["six==1.16.0", "tabulate==0.9.0"]
    assert records.frozen_requirements("binderlab/env-abc",
                                       ["environment.yml", "requirements.txt"]) is None
    assert records.frozen_requirements("binderlab/env-abc", ["apt.txt"]) is None
    assert records.frozen_requirements("binderlab/env-other", ["requirements.txt"]) is None
