"""The environment fingerprint (binderlab.fingerprint) against repo2docker's own build packs.

No Docker and no network: ``compute`` only detects build packs and renders Dockerfiles.

Integration cases are data folders: ``tests/fingerprint_cases/<case>/`` holds two checkouts,
``a/`` and ``b/``, and an ``expect.json`` with any of these keys (adding a case is adding a
folder):

- ``same``: whether a and b get the same key;
- ``kind`` / ``kind_a`` / ``kind_b``: "env" (the default) or "tree";
- ``files`` / ``files_a`` / ``files_b``: the environment files ``compute`` names;
- ``buildpack`` / ``buildpack_a`` / ``buildpack_b``: the build pack repo2docker picks;
- ``reason_contains``: text that the reason of every "tree" result contains;
- ``start`` / ``start_a`` / ``start_b``: the start script of an "env" result ("" for none):
  its path is in the key, its content is not (it comes with the session's content);
- ``config``: "default" (repo2docker's build packs, the default) or "test" (also
  ``--config tests/harness/repo2docker_config.py``, as the test service builds);
- ``xfail``: a known bug in fingerprint.py that the case shows (a strict xfail);
- ``description``: free text.

The tree hash passed to ``compute`` is a stand-in (a hash of the checkout's paths and bytes),
so two "tree" results are equal exactly when the checkouts are.
"""

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest

from binderlab.fingerprint import buildpacks as fingerprint
from binderlab.fingerprint.startscript import PLACEHOLDER

TESTS = Path(__file__).parent
CASES_DIR = TESTS / "fingerprint_cases"
HARNESS_CONFIG = TESTS / "harness" / "repo2docker_config.py"
R2D_ARGS = ["--user-id", "1000", "--user-name", "jovyan"]
CONFIGS = {
    "default": R2D_ARGS,
    "test": [*R2D_ARGS, "--config", str(HARNESS_CONFIG)],
}
EXPECT_KEYS = {"same", "kind", "kind_a", "kind_b", "files", "files_a", "files_b", "buildpack",
               "buildpack_a", "buildpack_b", "reason_contains", "config", "xfail",
               "description", "start", "start_a", "start_b"}


@pytest.fixture(scope="session", autouse=True)
def audit_hook():
    """compute records the files detection opens through this hook; production installs it
    in the fingerprint worker's initializer. Audit hooks cannot be removed: install once."""
    sys.addaudithook(fingerprint._audit)


@pytest.fixture(autouse=True)
def neutral_cwd(tmp_path, monkeypatch):
    """Run from an empty directory: no result may depend on where tests or workers run."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)


def tree_hash(checkout: Path) -> str:
    digest = hashlib.sha1()
    for path in sorted(p for p in checkout.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(checkout).as_posix()}\0".encode())
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def files_under(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes()
            for p in directory.rglob("*") if p.is_file() or p.is_symlink()}


def make_checkout(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode()
        path.write_bytes(content)
    root.mkdir(parents=True, exist_ok=True)
    return root


def compute(checkout: Path, config: str = "default", env_context: Path | None = None,
            tree: str | None = None) -> dict:
    return fingerprint.compute(str(checkout), tree or tree_hash(checkout), CONFIGS[config],
                               str(env_context) if env_context else None)


def check_env_context(result: dict, checkout: Path, env_context: Path) -> None:
    """An env result's build context holds exactly its files, byte for byte, and for a start
    script binderlab's placeholder, never the commit's own script; a tree result leaves none
    behind."""
    if result["kind"] == "env":
        expected = {f: (checkout / f).read_bytes() for f in result["files"]}
        if result["start"]:
            expected[result["start"]] = PLACEHOLDER
            assert (env_context / result["start"]).stat().st_mode & 0o111
        assert files_under(env_context) == expected
    else:
        assert not env_context.exists()


# ---- the data-folder cases ------------------------------------------------------------------

def _case_params():
    params = []
    for folder in sorted(p for p in CASES_DIR.iterdir() if p.is_dir()):
        expect = json.loads((folder / "expect.json").read_text())
        marks = []
        if "xfail" in expect:
            marks.append(pytest.mark.xfail(strict=True, reason=expect["xfail"]))
        params.append(pytest.param(folder.name, marks=marks, id=folder.name))
    return params


def _expected(expect: dict, name: str, side: str, default=None):
    return expect.get(f"{name}_{side}", expect.get(name, default))


@pytest.mark.parametrize("case", _case_params())
def test_case(case, tmp_path):
    folder = CASES_DIR / case
    expect = json.loads((folder / "expect.json").read_text())
    assert set(expect) <= EXPECT_KEYS, f"unknown keys in {case}/expect.json"
    config = expect.get("config", "default")
    results = {}
    trees = {}
    for side in "ab":
        checkout = tmp_path / side / "checkout"
        shutil.copytree(folder / side, checkout)
        trees[side] = tree_hash(checkout)
        env_context = tmp_path / side / "env"
        result = results[side] = compute(checkout, config, env_context, trees[side])

        kind = _expected(expect, "kind", side, "env")
        assert result["kind"] == kind, result
        if kind == "tree":
            assert result["key"] == trees[side]
            assert result["files"] == []
            assert expect.get("reason_contains", "") in result["reason"]
        else:
            assert len(result["key"]) == 40 and result["key"] != trees[side]
            assert result["reason"] == ""
        if (files := _expected(expect, "files", side)) is not None:
            assert result["files"] == files
        if (start := _expected(expect, "start", side)) is not None:
            assert result["start"] == start, result
        if (buildpack := _expected(expect, "buildpack", side)) is not None:
            assert result["buildpack"] == buildpack
        check_env_context(result, checkout, env_context)

        # without an env context: the same result, and no check context left behind
        assert compute(checkout, config, None, trees[side]) == result
        assert sorted(p.name for p in checkout.parent.iterdir()) == sorted(
            ["checkout", "env"] if env_context.exists() else ["checkout"])

    assert trees["a"] != trees["b"], "a/ and b/ are identical: the case tests nothing"
    if "same" in expect:
        assert (results["a"]["key"] == results["b"]["key"]) is expect["same"], results


def test_crlf_cases_really_have_crlf():
    """Guard against a checkout or editor that normalises the line endings these cases test."""
    for case in ("requirements-formatting", "test-config-requirements-formatting",
                 "apt-txt-comment-change"):
        b = CASES_DIR / case / "b"
        assert any(b"\r\n" in p.read_bytes() for p in b.rglob("*.txt")), case


# ---- compute beyond the cases ---------------------------------------------------------------

REQ = "numpy==1.26.4\n"


def test_env_context_is_replaced(tmp_path):
    checkout = make_checkout(tmp_path / "co", {"binder/requirements.txt": REQ,
                                               "binder/apt.txt": "vim\n", "nb.ipynb": "{}"})
    env_context = tmp_path / "env"
    (env_context / "stale").mkdir(parents=True)
    (env_context / "stale" / "old.txt").write_text("old")
    result = compute(checkout, env_context=env_context)
    assert result["files"] == ["binder/apt.txt", "binder/requirements.txt"]
    check_env_context(result, checkout, env_context)


def test_key_depends_on_build_options(tmp_path):
    checkout = make_checkout(tmp_path / "co", {"requirements.txt": REQ})
    tree = tree_hash(checkout)
    keys = {
        fingerprint.compute(str(checkout), tree, args, None)["key"]
        for args in (R2D_ARGS,
                     ["--user-id", "1001", "--user-name", "jovyan"],
                     ["--user-id", "1000", "--user-name", "someone"],
                     [*R2D_ARGS, "--target-repo-dir", "/home/jovyan/work"],
                     [*R2D_ARGS, "--build-arg", "DEMO=1"],
                     [*R2D_ARGS, "--appendix", "RUN echo appendix"],
                     CONFIGS["test"])
    }
    assert len(keys) == 7


def test_key_does_not_depend_on_checkout_path(tmp_path):
    files = {"environment.yml": "dependencies: [numpy=1.26]\n"}
    a = compute(make_checkout(tmp_path / "one", files), tree="t" * 40)
    b = compute(make_checkout(tmp_path / "somewhere" / "else", files), tree="t" * 40)
    assert a == b


def test_large_environment_file_keys_by_tree(tmp_path):
    lines = [f"package-{i}==1.0.{i}  # a long comment to make the file large" for i in
             range(20000)]
    checkout = make_checkout(tmp_path / "co", {"requirements.txt": "\n".join(lines)})
    assert (checkout / "requirements.txt").stat().st_size > fingerprint.MAX_ENV_FILE_BYTES
    result = compute(checkout, env_context=tmp_path / "env")
    assert result["kind"] == "tree"
    assert "larger than 1 MiB" in result["reason"]
    assert not (tmp_path / "env").exists()


def test_binder_and_dotbinder_together_is_an_error_like_repo2docker(tmp_path):
    checkout = make_checkout(tmp_path / "co", {"binder/requirements.txt": REQ,
                                               ".binder/requirements.txt": REQ})
    with pytest.raises(RuntimeError, match="exclusive"):
        compute(checkout)


MARKER_CONFIG = """
import os
from repo2docker.buildpacks.python import PythonBuildPack


class MarkerBuildPack(PythonBuildPack):
    # the Dockerfile depends on a file that is neither opened nor pre-assembled
    def get_env(self):
        return super().get_env() + ([("MARKER", "1")] if os.path.exists("marker") else [])


c.Repo2Docker.buildpacks = [MarkerBuildPack]
c.Repo2Docker.default_buildpack = MarkerBuildPack
"""


def test_dockerfile_depending_on_other_files_keys_by_tree(tmp_path):
    """The check: the env-only context must render the same Dockerfile."""
    config = tmp_path / "marker_config.py"
    config.write_text(MARKER_CONFIG)
    args = [*R2D_ARGS, "--config", str(config)]
    plain = make_checkout(tmp_path / "plain", {"requirements.txt": REQ})
    marked = make_checkout(tmp_path / "marked", {"requirements.txt": REQ, "marker": ""})

    result = fingerprint.compute(str(plain), "p" * 40, args, str(tmp_path / "env-plain"))
    assert (result["kind"], result["files"]) == ("env", ["requirements.txt"])

    result = fingerprint.compute(str(marked), "m" * 40, args, str(tmp_path / "env-marked"))
    assert (result["kind"], result["key"]) == ("tree", "m" * 40)
    assert "depends on more than its environment files" in result["reason"]
    assert not (tmp_path / "env-marked").exists()
    assert not Path(f"{marked}.env-check").exists()


def test_result_does_not_depend_on_working_directory(tmp_path, monkeypatch):
    checkout = make_checkout(tmp_path / "co", {
        "requirements.txt": "-e .\n",
        "setup.py": 'from setuptools import setup\n\nsetup(name="demo")\n'})
    from_elsewhere = compute(checkout, "test")
    monkeypatch.chdir(checkout)
    from_checkout = compute(checkout, "test")
    assert from_checkout["kind"] == "tree"  # repo2docker's view: pip install -e . needs it all
    assert from_elsewhere == from_checkout


def test_symlink_out_of_checkout_is_not_copied_into_env_context(tmp_path):
    secret = tmp_path / "host" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("numpy==1.26.4  # HOST-SECRET-TOKEN\n")
    checkout = make_checkout(tmp_path / "co", {"hello.ipynb": "{}"})
    (checkout / "requirements.txt").symlink_to(secret)
    env_context = tmp_path / "env"
    compute(checkout, env_context=env_context)
    leaked = [p for p in env_context.rglob("*")
              if p.is_file() and not p.is_symlink() and b"HOST-SECRET-TOKEN" in p.read_bytes()]
    assert leaked == []


# ---- canonical forms ------------------------------------------------------------------------

ENV = b"""\
name: demo
channels:
  - conda-forge
  - bioconda
dependencies:
  - python=3.11
  - numpy=1.26
  - pip
  - pip:
      - requests==2.31.0
      - rich==13.7.0
"""

SAME = [
    ("requirements.txt", b"numpy==1.26.4\npandas\n",
     b"# pinned\r\nnumpy==1.26.4   \r\n\r\n  # indented comment\r\npandas # dataframes\r\n"),
    ("binder/requirements.txt", b"numpy\n", b"numpy\n\n\n"),
    ("apt.txt", b"vim\ncurl\n", b"# editors\nvim\t# the editor\n\ncurl\r\n"),
    ("runtime.txt", b"python-3.11\n", b"python-3.11\r\n\r\n"),
    ("environment.yml", ENV, b"""\
# reformatted
dependencies:   # comment
- "pip"
- pip: ['rich==13.7.0', "requests==2.31.0"]
- numpy=1.26
- 'python=3.11'
channels: [conda-forge, bioconda]   # priority order
name: demo
"""),
    ("environment.yml", b"dependencies: [numpy >=1.26]\n",
     b"dependencies: ['  numpy   >=1.26 ']\n"),
    ("environment.yaml", ENV, ENV.replace(b"\n", b"\r\n")),
    ("binder/environment.yml", b"""\
pins: &pins
  - numpy=1.26
  - scipy=1.11
dependencies: *pins
""", b"""\
pins: [numpy=1.26, scipy=1.11]
dependencies: [scipy=1.11, numpy=1.26]
"""),
    ("environment.yml", b"""\
base: &base {channels: [conda-forge]}
env:
  <<: *base
  dependencies: [numpy]
""", b"""\
base: {channels: [conda-forge]}
env: {channels: [conda-forge], dependencies: [numpy]}
"""),
    # not YAML: normalised as text
    ("environment.yml", b"dependencies: [numpy\n", b"dependencies: [numpy   \r\n\r\n"),
]

DIFFERENT = [
    ("requirements.txt", b"numpy==1.26.4\n", b"numpy==1.26.3\n"),
    ("requirements.txt", b"numpy\npandas\n", b"pandas\nnumpy\n"),
    ("requirements.txt", b"demo @ git+https://example.org/d.git@v1#egg=demo\n",
     b"demo @ git+https://example.org/d.git@v2#egg=demo\n"),
    ("requirements.txt", b"numpy\n", b"  numpy\n"),
    ("apt.txt", b"vim\n", b"emacs\n"),
    ("runtime.txt", b"python-3.11\n", b"python-3.12\n"),
    ("environment.yml", ENV, ENV.replace(b"numpy=1.26", b"numpy=1.25")),
    ("environment.yml", ENV, ENV.replace(b"rich==13.7.0", b"rich==13.7.1")),
    ("environment.yml", ENV, ENV.replace(b"  - conda-forge\n  - bioconda\n",
                                         b"  - bioconda\n  - conda-forge\n")),
    ("environment.yml", ENV, ENV.replace(b"  - pip\n", b"  - scipy\n  - pip\n")),
    ("environment.yml", ENV, ENV + b"      - tqdm\n"),
    ("environment.yml", ENV, ENV + b"variables:\n  DEMO: '1'\n"),
    ("binder/environment.yml", b"pins: &p [numpy=1.26]\ndependencies: *p\n",
     b"pins: &p [numpy=1.25]\ndependencies: *p\n"),
    # not a mapping: keyed by text, so order counts
    ("environment.yml", b"- numpy\n- scipy\n", b"- scipy\n- numpy\n"),
    ("environment.yml", b"dependencies: [numpy\n", b"dependencies: [scipy\n"),
]


@pytest.mark.parametrize(("path", "a", "b"), SAME, ids=[f"{p}-{i}" for i, (p, _, _) in
                                                       enumerate(SAME)])
def test_canonical_same(path, a, b):
    assert fingerprint.canonical(path, a) == fingerprint.canonical(path, b)


@pytest.mark.parametrize(("path", "a", "b"), DIFFERENT, ids=[f"{p}-{i}" for i, (p, _, _) in
                                                            enumerate(DIFFERENT)])
def test_canonical_different(path, a, b):
    assert fingerprint.canonical(path, a) != fingerprint.canonical(path, b)


def test_canonical_text_form():
    text = b"# header\r\nnumpy==1.26.4   # fast\r\n\r\n\tpandas\t\r\n"
    assert fingerprint.canonical("requirements.txt", text) == "numpy==1.26.4\n\tpandas"
    # comments are dropped only in formats that have them
    assert fingerprint.canonical("pyproject.toml", b"a = 1\n# b\n") == "a = 1\n# b"


def test_canonical_environment_yml_form():
    doc = json.loads(fingerprint.canonical_environment_yml(ENV.decode()))
    assert doc == {
        "name": "demo",
        "channels": ["conda-forge", "bioconda"],  # priority order kept
        "dependencies": ["numpy=1.26", "pip", "python=3.11",
                         {"pip": ["requests==2.31.0", "rich==13.7.0"]}],
    }
    assert json.loads(fingerprint.canonical_environment_yml("name: x\n")) == {
        "name": "x", "dependencies": []}


@pytest.mark.parametrize("text", ["- numpy\n", "just a string\n", "42\n", "", "# only\n"])
def test_canonical_environment_yml_rejects_non_mapping(text):
    with pytest.raises(ValueError, match="not a mapping"):
        fingerprint.canonical_environment_yml(text)


@pytest.mark.parametrize("text", ["dependencies: [numpy\n", "a: b: c\n", "x: *undefined\n",
                                  "a: 1\na: 2\n"])
def test_canonical_environment_yml_rejects_invalid_yaml(text):
    with pytest.raises(Exception):  # noqa: B017 - whichever error the YAML parser raises
        fingerprint.canonical_environment_yml(text)
    # canonical() keys such a file by its text instead; repo2docker reports the error
    assert fingerprint.canonical("environment.yml", text.encode()) == text.strip()


def test_canonical_environment_yml_does_not_run_tags():
    text = "dependencies: !!python/object/apply:os.system ['echo pwned']\n"
    with pytest.raises(Exception):  # noqa: B017 - the safe loader refuses the tag
        fingerprint.canonical_environment_yml(text)
    assert fingerprint.canonical("environment.yml", text.encode()) == text.strip()


# ---- start scripts ---------------------------------------------------------------------------

START = "#!/bin/sh\nexport LESSON_STAGE=one\nexec \"$@\"\n"


def test_start_script_symlink_or_directory_keys_by_tree(tmp_path):
    """repo2docker's build runs chmod on the start path: through a link that reaches the
    link's target (maybe outside the repository), on a directory it is not a script. Such
    repositories keep repo2docker's exact behaviour: built from their whole content."""
    linked = make_checkout(tmp_path / "linked", {"requirements.txt": REQ, "real-start": START})
    (linked / "start").symlink_to("real-start")
    result = compute(linked, env_context=tmp_path / "env-linked")
    assert (result["kind"], result["start"]) == ("tree", "")
    assert "start script is a symbolic link" in result["reason"]
    assert not (tmp_path / "env-linked").exists()

    folder = make_checkout(tmp_path / "folder", {"requirements.txt": REQ,
                                                 "start/readme.md": "not a script\n"})
    assert compute(folder)["kind"] == "tree"


def test_start_script_content_is_not_in_the_env_context(tmp_path):
    """Images are shared by every commit with the environment: the one that happened to
    build first must not leave its start script in them."""
    checkout = make_checkout(tmp_path / "co", {"requirements.txt": REQ, "start": START})
    env_context = tmp_path / "env"
    result = compute(checkout, env_context=env_context)
    assert (result["kind"], result["start"], result["files"]) == ("env", "start",
                                                                  ["requirements.txt"])
    assert (env_context / "start").read_bytes() == PLACEHOLDER
    assert b"LESSON_STAGE" not in (env_context / "start").read_bytes()


def test_placeholder_start_refuses_to_run_the_session(tmp_path):
    """A session of such an image started without its content would skip the repository's
    start: the placeholder fails with a message instead of starting a wrong session."""
    import subprocess

    script = tmp_path / "start"
    script.write_bytes(PLACEHOLDER)
    script.chmod(0o755)
    run = subprocess.run([str(script), "echo", "server started"], capture_output=True,
                         text=True)
    assert run.returncode != 0
    assert "server started" not in run.stdout
    assert "start script cannot run" in run.stderr
