"""Refs that read differently from what they are (issue 12): bidi and zero-width
characters are refused with a 400 that shows the ref escaped; other non-ASCII refs launch."""

from urllib.parse import quote

import pytest

from binderlab.errors import LaunchError
from binderlab.repos.providers import GitHubRepoProvider


@pytest.mark.parametrize(
    "ref",
    [
        "main\u202egnp.exe",  # right-to-left override
        "\u2066release\u2069",  # isolates
        "ma\u200bin",  # zero-width space
        "ma\u200din",  # zero-width joiner
        "\ufeffmain",  # byte order mark
        "v1\u00a0.0",  # no-break space
        "v1\u2028",  # line separator
        "topic/\u061cx",  # Arabic letter mark
    ],
)
def test_invisible_characters_in_refs_are_refused(ref):
    with pytest.raises(LaunchError) as info:
        GitHubRepoProvider().parse(f"o/r/{quote(ref, safe='/')}")
    assert info.value.status_code == 400
    # the message shows what is really there, escaped, not the spoofed reading
    assert ref not in str(info.value)
    assert "\\u" in str(info.value) or "\\x" in str(info.value) or "\\ufeff" in str(info.value)


@pytest.mark.parametrize("ref", ["übersetzung", "修正/テスト", "v2.0-β"])
def test_visible_non_ascii_refs_still_parse(ref):
    spec = GitHubRepoProvider().parse(f"o/r/{quote(ref, safe='/')}")
    assert spec.ref == ref
