"""The image cache index: a SQLite file in the state dir that speeds look-ups.

The engine's images and their ``binderlab.*`` labels are the truth. The index holds what
the engine cannot tell cheaply: when each image was last launched (for eviction) and the
fingerprint of each git tree already seen (so a launch of a known tree skips the
computation). It is rebuilt from the engine at start-up; an image enters it only after its
build completed.
"""

import json
import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    name TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    repo TEXT,
    created REAL NOT NULL,
    last_launch REAL
);
CREATE TABLE IF NOT EXISTS pins (
    name TEXT PRIMARY KEY,
    note TEXT
);
CREATE TABLE IF NOT EXISTS fingerprints (
    tree TEXT NOT NULL,
    config TEXT NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (tree, config)
);
"""


class CacheIndex:
    def __init__(self, path: Path):
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def rebuild(self, images: list[dict]) -> None:
        """Replace the image table with what the engine holds, keeping launch times.

        ``images``: dicts with name, key, kind, repo, created (from labels / inspect).
        """
        launched = dict(self.db.execute("SELECT name, last_launch FROM images"))
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM images")
            for image in images:
                self.db.execute(
                    "INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, ?)",
                    (image["name"], image["key"], image["kind"], image.get("repo"),
                     image["created"], launched.get(image["name"])),
                )

    def add(self, name: str, key: str, kind: str, repo: str | None) -> None:
        self.db.execute("INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, "
                        "(SELECT last_launch FROM images WHERE name = ?))",
                        (name, key, kind, repo, time.time(), name))

    def remove(self, name: str) -> None:
        self.db.execute("DELETE FROM images WHERE name = ?", (name,))

    def launched(self, name: str) -> None:
        self.db.execute("UPDATE images SET last_launch = ? WHERE name = ?", (time.time(), name))

    def by_last_use(self) -> list[tuple[str, float]]:
        """Image names, least recently launched (or built, if never launched) first."""
        return list(self.db.execute(
            "SELECT name, COALESCE(last_launch, created) AS used FROM images ORDER BY used"))

    def pin(self, name: str, note: str = "") -> None:
        """Keep ``name`` whatever the disk budget (e.g. the environments/ catalog)."""
        self.db.execute("INSERT OR REPLACE INTO pins VALUES (?, ?)", (name, note))

    def pinned(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT name FROM pins")}

    def fingerprint(self, tree: str, config: str) -> dict | None:
        row = self.db.execute("SELECT result FROM fingerprints WHERE tree = ? AND config = ?",
                              (tree, config)).fetchone()
        return json.loads(row[0]) if row else None

    def save_fingerprint(self, tree: str, config: str, result: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO fingerprints VALUES (?, ?, ?)",
                        (tree, config, json.dumps(result)))

    def close(self) -> None:
        self.db.close()
