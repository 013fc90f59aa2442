"""Images per commit: how many images binderlab's fingerprint needs over a git history,
next to a service that builds one image per commit (BinderHub keys images by commit).

The bench creates git histories (real git repositories in a temporary directory) of a few
repository kinds, each a sequence of commits that touch notebooks, reformat or change the
environment file, change `start` or change `postBuild`, in a fixed pseudo-random order
(``--seed``). For every commit it exports the commit (``git archive``), takes its tree hash
(``git rev-parse <commit>^{tree}``) and computes binderlab's fingerprint with repo2docker's
build packs, exactly as the fingerprint worker does (``binderlab.fingerprint.buildpacks``,
default repo2docker configuration, no Docker and no network: only detection and rendering).
It then counts distinct images:

- one image per commit: the number of commits;
- binderlab before issue 14: `start` keyed the image by the tree, like `postBuild`;
- binderlab: distinct fingerprints (``env-<key>`` or ``tree-<hash>``).

and, per kind of change, how many of those commits needed an image that no earlier commit
had (a build). Run from the repository root: python3 -m bench.images [--commits 40]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from binderlab.fingerprint import buildpacks

R2D_ARGS = ["--user-id", "1000", "--user-name", "jovyan"]
NOTEBOOK = '{{"cells": [{{"cell_type": "markdown", "metadata": {{}}, "source": ["{text}"]}}], ' \
           '"metadata": {{}}, "nbformat": 4, "nbformat_minor": 5}}\n'
PINS = ["numpy==1.26.{}", "pandas==2.2.{}"]


@dataclass
class History:
    name: str
    files: dict[str, str]  # the first commit
    # change kind -> weight; every history also has notebook commits
    changes: dict[str, int]
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (change, now, before)


def start_script(n: int) -> str:
    return f'#!/bin/bash\nexport LESSON_STAGE="{n}"\nexec "$@"\n'


def post_build(n: int) -> str:
    return f'#!/bin/bash\nset -e\necho "step {n}" > "$HOME/.built"\n'


def requirements(version: int, comment: str = "") -> str:
    return "".join(f"{p.format(version)}{comment}\n" for p in PINS)


HISTORIES = [
    History("notebooks + requirements.txt", {"requirements.txt": requirements(0)},
            {"notebook": 14, "reformat": 2, "environment": 2}),
    History("start", {"requirements.txt": requirements(0), "start": start_script(0)},
            {"notebook": 12, "reformat": 2, "environment": 2, "start": 4}),
    History("binder/start + environment.yml",
            {"binder/environment.yml": "dependencies:\n  - python=3.11\n  - numpy=1.26.0\n",
             "binder/start": start_script(0)},
            {"notebook": 12, "reformat": 2, "environment": 2, "start": 4}),
    History("postBuild", {"requirements.txt": requirements(0), "postBuild": post_build(0)},
            {"notebook": 12, "reformat": 2, "environment": 2, "postBuild": 4}),
    History("start + postBuild", {"requirements.txt": requirements(0),
                                  "start": start_script(0), "postBuild": post_build(0)},
            {"notebook": 12, "environment": 2, "start": 3, "postBuild": 3}),
]


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def change(history: History, kind: str, n: int, work: Path) -> None:
    """Make commit number ``n``'s change of ``kind`` in the working tree."""
    env_yml = "binder/environment.yml" in history.files
    if kind == "notebook":
        (work / f"lesson-{n % 3}.ipynb").write_text(NOTEBOOK.format(text=f"revision {n}"))
    elif kind == "reformat":  # comments and spacing: the same environment
        if env_yml:
            (work / "binder/environment.yml").write_text(
                (work / "binder/environment.yml").read_text() + f"# reviewed {n}\n")
        else:
            (work / "requirements.txt").write_text(
                f"# reviewed {n}\n" + (work / "requirements.txt").read_text() + "\n")
    elif kind == "environment":
        if env_yml:
            (work / "binder/environment.yml").write_text(
                f"dependencies:\n  - python=3.11\n  - numpy=1.26.{n}\n")
        else:
            (work / "requirements.txt").write_text(requirements(n))
    elif kind == "start":
        name = "binder/start" if (work / "binder/start").exists() else "start"
        (work / name).write_text(start_script(n))
    elif kind == "postBuild":
        (work / "postBuild").write_text(post_build(n))


def run_history(history: History, commits: int, rng: random.Random, root: Path) -> None:
    work = root / "work"
    work.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=work)
    git("config", "user.email", "bench@binderlab.invalid", cwd=work)
    git("config", "user.name", "bench", cwd=work)
    for name, text in history.files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    (work / "lesson-0.ipynb").write_text(NOTEBOOK.format(text="first"))
    kinds = list(history.changes)
    weights = [history.changes[k] for k in kinds]
    for n in range(commits):
        kind = "first" if n == 0 else rng.choices(kinds, weights)[0]
        if n:
            change(history, kind, n, work)
        git("add", "-A", cwd=work)
        git("commit", "-q", "--allow-empty", "-m", f"{kind} {n}", cwd=work)
        tree = git("rev-parse", "HEAD^{tree}", cwd=work)
        checkout = root / f"checkout-{n}"
        checkout.mkdir()
        archive = subprocess.run(["git", "archive", "HEAD"], cwd=work, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(checkout)], input=archive, check=True)
        fp = buildpacks.compute(str(checkout), tree, R2D_ARGS, None)
        now = f"{fp['kind']}-{fp['key']}"
        before = f"tree-{tree}" if fp["kind"] == "env" and fp.get("start") else now
        history.rows.append((kind, now, before))


def new_images(rows: list[tuple[str, str, str]], column: int) -> Counter:
    seen, built = set(), Counter()
    for row in rows:
        if row[column] not in seen:
            seen.add(row[column])
            built[row[0]] += 1
    return built


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commits", type=int, default=40,
                        help="Commits per history, the first included (default 40).")
    parser.add_argument("--seed", type=int, default=14,
                        help="Seed of the order of changes (default 14).")
    args = parser.parse_args(argv)
    sys.addaudithook(buildpacks._audit)  # the files detection opens, as the worker records
    os.environ.setdefault("GIT_CONFIG_NOSYSTEM", "1")
    logging.disable(logging.WARNING)  # repo2docker's notes while it renders each commit
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        for i, history in enumerate(HISTORIES):
            run_history(history, args.commits, rng, Path(tmp) / str(i))

    print(f"Images needed over {args.commits} commits per history (seed {args.seed})\n")
    print("| history | commits | one image per commit | binderlab before (start by tree) "
          "| binderlab |")
    print("| --- | --- | --- | --- | --- |")
    totals = [0, 0, 0]
    for h in HISTORIES:
        before = len({r[2] for r in h.rows})
        now = len({r[1] for r in h.rows})
        totals = [totals[0] + len(h.rows), totals[1] + before, totals[2] + now]
        print(f"| {h.name} | {len(h.rows)} | {len(h.rows)} | {before} | {now} |")
    print(f"| **all** | {totals[0]} | {totals[0]} | {totals[1]} | **{totals[2]}** |")

    print("\nCommits that needed a new image, by what the commit changed "
          "(binderlab / before / one per commit)\n")
    kinds = ["first", "notebook", "reformat", "environment", "start", "postBuild"]
    print("| history | " + " | ".join(kinds) + " |")
    print("| --- |" + " --- |" * len(kinds))
    for h in HISTORIES:
        commits = Counter(r[0] for r in h.rows)
        now, before = new_images(h.rows, 1), new_images(h.rows, 2)
        cells = [f"{now[k]} / {before[k]} / {commits[k]}" if commits[k] else "–"
                 for k in kinds]
        print(f"| {h.name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
