"""The package's folders import each other only in the direction the data flows
(DESIGN.md, "The package"): a plugin folder never reaches back into the launch or the app."""

import ast
from pathlib import Path

import pytest

import binderlab

PACKAGE = Path(binderlab.__file__).parent
# used by every part: the error type, the shipped files, the version
ANYWHERE = {"errors", "resources", "_version", ""}
MAY_IMPORT = {
    "contract": set(),
    "platform": {"platform", "contract"},
    "spawners": {"spawners", "contract", "platform"},
    "builders": {"builders", "contract", "platform"},
    "sessions": {"sessions", "contract", "platform"},
    "repos": {"repos", "contract", "platform"},
    "gpus": {"gpus", "contract", "platform"},
    "authenticators": {"authenticators", "contract"},
    # courses drive prebuilds through the launch pipeline's request type
    "courses": {"courses", "contract", "launch"},
}


def binderlab_imports(path: Path) -> set[str]:
    """The binderlab parts (first component under binderlab) that ``path`` imports."""
    parts = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            if name == "binderlab" or name.startswith("binderlab."):
                parts.add(name.split(".")[1] if "." in name else "")
    return parts


@pytest.mark.parametrize("part", sorted(MAY_IMPORT))
def test_each_part_imports_only_what_it_may(part):
    files = [PACKAGE / f"{part}.py"] if (PACKAGE / f"{part}.py").exists() else \
        sorted((PACKAGE / part).rglob("*.py"))
    assert files
    wrong = {str(f.relative_to(PACKAGE)): sorted(binderlab_imports(f) - MAY_IMPORT[part]
                                                 - ANYWHERE)
             for f in files}
    assert {f: parts for f, parts in wrong.items() if parts} == {}
