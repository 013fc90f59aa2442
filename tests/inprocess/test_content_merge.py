"""The merge of a commit into a user's persistent copy (spawners/contentmerge.py), case by
case from tests/merge_cases/<case>/: ``base/`` (the upstream files of the last merge; no
folder: the first merge), ``user/`` (the user's copy now), ``upstream/`` (the launched
commit), ``expected/`` (the copy after the merge) and ``outcome.json`` (which files were
added, updated, restored, removed, kept or conflicted). Adding a case is adding a folder;
a missing folder is an empty tree (git keeps no empty folders)."""

import json
import os
import shutil
from pathlib import Path

import pytest

from binderlab.spawners import contentmerge

CASES = Path(__file__).parent.parent / "merge_cases"
COMMIT = "c0ffee1" + "0" * 33


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def prepare(case: Path, tmp_path: Path):
    """The volume as a launch finds it: the user's copy and the state of the last merge."""
    volume = tmp_path / "volume"
    target = volume / "repo"
    if (case / "user").is_dir():
        shutil.copytree(case / "user", target)
    state = volume / ".binderlab" / "merge" / "repo.json"
    if (case / "base").is_dir():
        state.parent.mkdir(parents=True)
        state.write_text(json.dumps({"version": 1, "commit": "0" * 40,
                                     "files": contentmerge.tree_manifest(case / "base")}))
    upstream = case / "upstream"
    if not upstream.is_dir():
        upstream = tmp_path / "empty"
        upstream.mkdir()
    return volume, target, state, upstream


@pytest.mark.parametrize("name", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_merge_case(name, tmp_path):
    case = CASES / name
    volume, target, state, upstream = prepare(case, tmp_path)
    result = contentmerge.merge_into(str(upstream), str(target), str(state), COMMIT)

    expected_outcome = json.loads((case / "outcome.json").read_text())
    got = {key: [e["path"] if key == "blocked" else e for e in value]
           for key, value in result.items() if value}
    assert got == expected_outcome
    files = tree(target)
    report = files.pop(contentmerge.REPORT_NAME, None)
    assert files == tree(case / "expected") if (case / "expected").is_dir() else {}
    # the user is told, in the folder, of every conflict and blocked file; no notes else
    if result["conflicts"] or result["blocked"]:
        assert report is not None
        for c in result["conflicts"]:
            assert f"`{c['path']}`: the repository's version is `{c['upstream']}`" in report
        for b in result["blocked"]:
            assert f"`{b['path']}`" in report
    else:
        assert report is None
    # the new base is upstream's files, so the next merge decides against them
    assert json.loads(state.read_text())["files"] == contentmerge.tree_manifest(upstream)
    # a second merge of the same commit changes nothing and reports no new conflict
    again = contentmerge.merge_into(str(upstream), str(target), str(state), COMMIT)
    assert not any(again[k] for k in ("added", "updated", "removed", "restored", "conflicts"))
    assert tree(target) == {**files, **({contentmerge.REPORT_NAME: report} if again["blocked"]
                                        else {})}


def test_conflict_resolved_by_user_is_not_reported_again(tmp_path):
    """After a conflict the user keeps their version: the next commit that leaves the file
    alone reports nothing, and one that changes it again is a new conflict."""
    up = tmp_path / "up"
    up.mkdir()
    target, state = tmp_path / "v" / "repo", tmp_path / "v" / ".binderlab" / "merge" / "r.json"
    (up / "a.ipynb").write_text("1")
    contentmerge.merge_into(str(up), str(target), str(state), "a" * 40)
    (target / "a.ipynb").write_text("mine")
    (up / "a.ipynb").write_text("2")
    first = contentmerge.merge_into(str(up), str(target), str(state), "b" * 40)
    assert [c["path"] for c in first["conflicts"]] == ["a.ipynb"]
    (up / "other.txt").write_text("new")
    second = contentmerge.merge_into(str(up), str(target), str(state), "c" * 40)
    assert second["conflicts"] == [] and second["kept"] == ["a.ipynb"]
    assert not (target / contentmerge.REPORT_NAME).exists()  # old notes go
    (up / "a.ipynb").write_text("3")
    third = contentmerge.merge_into(str(up), str(target), str(state), "d" * 40)
    assert third["conflicts"] == [{"path": "a.ipynb", "upstream": "a.upstream-ddddddd.ipynb"}]
    assert (target / "a.ipynb").read_text() == "mine"
    assert (target / "a.upstream-ddddddd.ipynb").read_text() == "3"


def test_never_writes_through_a_users_symlink(tmp_path):
    """A folder of the copy that is a symlink to elsewhere (the user made it) is not
    written through: the file is reported blocked, the other place is untouched."""
    up, elsewhere = tmp_path / "up", tmp_path / "elsewhere"
    (up / "data").mkdir(parents=True)
    (up / "data" / "x.csv").write_text("upstream")
    elsewhere.mkdir()
    target = tmp_path / "v" / "repo"
    target.mkdir(parents=True)
    os.symlink(elsewhere, target / "data")
    result = contentmerge.merge_into(str(up), str(target),
                                     str(tmp_path / "v" / "state.json"), "e" * 40)
    assert [b["path"] for b in result["blocked"]] == ["data/x.csv"]
    assert list(elsewhere.iterdir()) == []


def test_executable_bit_and_symlinks_follow_upstream(tmp_path):
    up = tmp_path / "up"
    up.mkdir()
    (up / "run.sh").write_text("#!/bin/sh\n")
    (up / "run.sh").chmod(0o755)
    os.symlink("run.sh", up / "link")
    target = tmp_path / "v" / "repo"
    contentmerge.merge_into(str(up), str(target), str(tmp_path / "v" / "s.json"), "f" * 40)
    assert os.access(target / "run.sh", os.X_OK)
    assert os.readlink(target / "link") == "run.sh"

