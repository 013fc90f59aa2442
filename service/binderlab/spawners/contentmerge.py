"""Merge a repository commit into a user's persistent copy, with nbgitpuller's rules.

This file runs on its own inside the session's image (a short-lived container on Docker, an
init container on Kubernetes): it imports only the standard library, works on the Python 3.8
an old image may carry, and is passed to the interpreter as its source text.

What it takes from nbgitpuller (1.x, its documented merge behaviour), decided per file
against the *base* (the upstream files of the last merge, kept as hashes in a state file in
the volume), never guessed from modification times:

- a new upstream file appears;
- a file the user did not change follows upstream (updated, or removed when upstream
  removed it);
- a file the user changed is kept. When upstream changed it too, upstream's version is
  written beside it as ``<name>.upstream-<sha7><suffix>`` and reported as a conflict
  (nbgitpuller merges the two with git's "ours" strategy; a notebook is JSON, where a merge
  of lines makes broken files, so binderlab keeps the two whole);
- a file the user deleted is restored (as nbgitpuller does: deleting a file is how a user
  gets a fresh copy of it);
- a file the user created that upstream now adds is a conflict as above: theirs stays.

Writes go to a temporary name and are renamed over the target, so a merge that is killed
leaves each file either old or new, and the state is written last: a merge run again after
a failure reaches the same result.
"""

import argparse
import hashlib
import json
import os
import sys
import tarfile
import tempfile

REPORT_NAME = "BINDERLAB-MERGE.md"
STATE_VERSION = 1
EXIT_NOT_WRITABLE = 3  # the volume's root is not the notebook user's yet (a new volume)


def file_hash(path):
    """A file's identity for the merge: its content (a symlink: its target), or None when
    absent, or "dir" for a directory."""
    try:
        if os.path.islink(path):
            return "link:" + hashlib.sha256(os.readlink(path).encode()).hexdigest()
        if os.path.isdir(path):
            return "dir"
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except FileNotFoundError:
        return None


def tree_manifest(root):
    """{relative path: hash} of every file and symlink under ``root`` (not directories)."""
    files = {}
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in names + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            files[os.path.relpath(path, root).replace(os.sep, "/")] = file_hash(path)
    return files


def beside_name(path, commit):
    """'a/lesson.ipynb' -> 'a/lesson.upstream-1a2b3c4.ipynb' (upstream's version of it)."""
    folder, name = os.path.split(path)
    stem, dot, suffix = name.rpartition(".")
    if not stem:  # no suffix ('Makefile') or a dotfile ('.gitignore')
        stem, dot, suffix = name, "", ""
    out = f"{stem}.upstream-{commit[:7]}{dot}{suffix}"
    return folder + "/" + out if folder else out


class Merge:
    """One merge of ``upstream`` (a folder of the commit's files) into ``target``."""

    def __init__(self, upstream, target, base, commit):
        self.upstream, self.target, self.commit = upstream, target, commit
        self.base = base  # {path: hash} of the last merge, None for the first one
        self.real_target = os.path.realpath(target)
        self.result = {"added": [], "updated": [], "removed": [], "restored": [],
                       "conflicts": [], "kept": [], "blocked": []}

    def inside(self, path):
        """Whether writing ``path`` stays in the user's copy (a folder of it may be a
        symlink the user made: never write through one to elsewhere)."""
        parent = os.path.realpath(os.path.dirname(os.path.join(self.target, path)))
        return parent == self.real_target or parent.startswith(self.real_target + os.sep)

    def put(self, source_rel, dest_rel):
        """Copy upstream's ``source_rel`` to ``dest_rel`` in the copy, atomically."""
        source = os.path.join(self.upstream, source_rel)
        dest = os.path.join(self.target, dest_rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if not self.inside(dest_rel):
            raise NotADirectoryError(dest_rel)
        tmp = os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.binderlab-tmp")
        if os.path.lexists(tmp):
            os.remove(tmp)
        if os.path.islink(source):
            os.symlink(os.readlink(source), tmp)
        else:
            with open(source, "rb") as src, open(tmp, "wb") as out:
                for block in iter(lambda: src.read(1 << 20), b""):
                    out.write(block)
            os.chmod(tmp, 0o755 if os.stat(source).st_mode & 0o111 else 0o644)
        if os.path.isdir(dest) and not os.path.islink(dest):
            os.remove(tmp)
            raise IsADirectoryError(dest_rel)
        os.replace(tmp, dest)

    def run(self, upstream_files):
        base = self.base or {}
        first = self.base is None
        for path in sorted(upstream_files):
            if path == REPORT_NAME:
                continue
            up, old = upstream_files[path], base.get(path)
            try:
                local = file_hash(os.path.join(self.target, path)) if self.inside(path) \
                    else "dir"
                if local == up:
                    continue
                if local is None:
                    self.put(path, path)
                    self.result["added" if first or old is None else "restored"].append(path)
                elif local != "dir" and old is not None and local == old:
                    self.put(path, path)
                    self.result["updated"].append(path)
                elif old is not None and up == old:
                    self.result["kept"].append(path)  # only the user changed it
                else:  # both changed it (or the user made their own file of that name)
                    beside = beside_name(path, self.commit)
                    self.put(path, beside)
                    self.result["conflicts"].append({"path": path, "upstream": beside})
            except OSError as e:  # a file or folder of the user's is in the way (ENOTDIR...)
                self.result["blocked"].append({"path": path, "reason": str(e)})
        for path in sorted(set(base) - set(upstream_files)):
            full = os.path.join(self.target, path)
            local = file_hash(full) if self.inside(path) else None
            if local is not None and local == base[path]:
                os.remove(full)
                self.result["removed"].append(path)
        return self.result


def report_text(result, commit):
    lines = [f"# Merge of commit {commit[:12]} into your files", "",
             "binderlab merged the repository's files at this commit into your copy. "
             "You changed the files below, and the repository changed them too: your "
             "version is kept, the repository's is beside it. Compare the two, keep what you "
             "want, and delete the `.upstream-` copy.", ""]
    lines += [f"- `{c['path']}`: the repository's version is `{c['upstream']}`"
              for c in result["conflicts"]]
    if result["blocked"]:
        lines += ["", "These could not be written, a file or folder of yours is in the way "
                  "(rename it to get the repository's version at the next launch):", ""]
        lines += [f"- `{b['path']}`" for b in result["blocked"]]
    return "\n".join(lines) + "\n"


def write_json(path, data):
    tmp = path + ".binderlab-tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def merge_into(upstream, target, state_file, commit):
    """Merge and keep the new base; returns the result (lists of paths per outcome)."""
    try:
        with open(state_file) as f:
            base = json.load(f)["files"]
    except FileNotFoundError:
        base = None
    os.makedirs(target, exist_ok=True)
    files = tree_manifest(upstream)
    result = Merge(upstream, target, base, commit).run(files)
    report = os.path.join(target, REPORT_NAME)
    if result["conflicts"] or result["blocked"]:
        with open(report + ".binderlab-tmp", "w") as f:
            f.write(report_text(result, commit))
        os.replace(report + ".binderlab-tmp", report)
    elif os.path.isfile(report) and not os.path.islink(report):
        os.remove(report)  # the last merge's notes, now out of date
    os.makedirs(os.path.dirname(state_file), exist_ok=True)
    write_json(state_file, {"version": STATE_VERSION, "commit": commit, "files": files})
    return result


def fetch_upstream(url, into):
    """The commit's files from the binder service's content server (Kubernetes)."""
    import urllib.request
    with urllib.request.urlopen(url, timeout=300) as response:
        with tarfile.open(fileobj=response, mode="r|") as archive:
            if hasattr(tarfile, "data_filter"):
                archive.extraction_filter = tarfile.data_filter
            archive.extractall(into)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", help="folder holding the commit's files")
    parser.add_argument("--upstream-url", help="or a tar of them to download")
    parser.add_argument("--volume", required=True, help="the mounted persistent volume")
    parser.add_argument("--folder", required=True, help="the repository's folder in it")
    parser.add_argument("--commit", required=True)
    args = parser.parse_args(argv)
    if not os.access(args.volume, os.W_OK):
        print(json.dumps({"error": "volume not writable"}), flush=True)
        return EXIT_NOT_WRITABLE
    upstream = args.upstream
    if args.upstream_url:
        upstream = tempfile.mkdtemp(prefix="binderlab-upstream-")
        fetch_upstream(args.upstream_url, upstream)
    target = os.path.join(args.volume, args.folder)
    state = os.path.join(args.volume, ".binderlab", "merge", args.folder + ".json")
    result = merge_into(upstream, target, state, args.commit)
    print(json.dumps({"result": result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
