"""In Chromium: the launch form recognises DOIs, SWHIDs and record pages, and links the
environment record (against a real `binderlab up`)."""
# ruff: noqa: F401, F811

import pytest

from tests.test_browser import node
from tests.test_browser_frontend import run_form

pytestmark = [pytest.mark.browser, pytest.mark.docker]

SWH = "swh:1:dir:" + "ab" * 20
CASES = [
    ("10.5281/zenodo.3242074", "Zenodo: 10.5281/zenodo.3242074",
     "zenodo/10.5281/zenodo.3242074"),
    ("https://zenodo.org/records/3242074", "Zenodo: 10.5281/zenodo.3242074",
     "zenodo/10.5281/zenodo.3242074"),
    ("https://doi.org/10.6084/m9.figshare.9782777.v1",
     "Figshare: 10.6084/m9.figshare.9782777.v1", "figshare/10.6084/m9.figshare.9782777.v1"),
    ("https://dataverse.harvard.edu/dataset.xhtml?persistentId=doi:10.7910/DVN/TJCLKP",
     "Dataverse: 10.7910/DVN/TJCLKP", "dataverse/10.7910/DVN/TJCLKP"),
    (SWH, f"Software Heritage: {SWH}", f"swhid/{SWH}"),
]


def test_form_recognises_records_and_links_their_environment(node, service, tmp_path):
    steps = [{"name": text, "input": text} for text, _, _ in CASES]
    steps.append({"name": "git still", "input": "https://example.org/team/analysis.git"})
    result = run_form(node, service.url, steps, "form-records", tmp_path)
    for (text, understood, spec), seen in zip(CASES, result["steps"], strict=False):
        assert seen["error"] is None, (text, seen["error"])
        assert seen["understood"] == understood, (text, seen)
        assert seen["launchUrl"] == f"{service.url}v2/{spec}", (text, seen)
        assert seen["environmentUrl"] == f"{service.url}environment/{spec}", (text, seen)
    assert result["steps"][-1]["understood"].startswith("Git repository:")
