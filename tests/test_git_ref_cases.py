"""The git ref rules, one table for the service and the web form (tests/git_ref_cases.json):
``gitcmd.check_ref`` must agree with every case, and so must git itself (the table is
checked against `git check-ref-format`, so neither side can drift from git unnoticed).
frontend/tests/repourl.test.mjs runs the same table against the form's ``refProblem``."""

import json
import subprocess
from pathlib import Path

import pytest

from binderlab.errors import LaunchError
from binderlab.repos import gitcmd

CASES = json.loads((Path(__file__).with_name("git_ref_cases.json")).read_text())
VALID = CASES["valid"]
INVALID = [(c["ref"], c["why"]) for c in CASES["invalid"]]


def git_accepts(ref: str) -> bool:
    return subprocess.run(["git", "check-ref-format", "--allow-onelevel", ref],
                          capture_output=True).returncode == 0


@pytest.mark.parametrize("ref", VALID)
def test_valid_refs_pass(ref):
    gitcmd.check_ref(ref)
    assert git_accepts(ref)


@pytest.mark.parametrize(("ref", "why"), INVALID, ids=[w for _, w in INVALID])
def test_invalid_refs_are_refused(ref, why):
    with pytest.raises(LaunchError) as info:
        gitcmd.check_ref(ref)
    assert info.value.status_code == 400
    if ref.startswith("-"):
        # git takes it as an option, which is why binderlab refuses it (CVE-2021-39159)
        assert "cannot start with '-'" in str(info.value)
    elif "\x00" not in ref:  # (a NUL cannot be passed to git as an argument at all)
        assert not git_accepts(ref), f"git accepts {ref!r}: the table is wrong"


def test_the_table_covers_the_rules():
    whys = " ".join(w for _, w in INVALID)
    for rule in (".lock", "leading dash", "'..'", "control character", "'@{'", "empty"):
        assert rule in whys, rule
