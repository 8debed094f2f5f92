"""The result cache (``.poolshift_cache/``): an unchanged file is never parsed twice.

Modelled on ruff's: entries are keyed by what decides a file's result and nothing else (the file's
content hash, its path and module name, the tool version, the rules and the project-wide facts they are
given), so an entry is either exactly right or never looked up; there is no invalidation to get wrong.
Two kinds of entry: the first pass's facts about a file (which depend on its content only) and a
read-only run's outcome for it (sites and errors). A run that writes never reads outcomes from the cache:
what it writes is always computed.

Concurrent runs are safe: each loads the cache once and saves it once, by writing a temporary file and
renaming it over the old one, so a reader sees a complete old or new file, never a torn one; the last
writer wins, and what it drops is only recomputed. An unreadable or foreign cache file is ignored.

A third kind, for read-only runs only (:class:`StatFacts`), lets an unchanged file go unread, as git's
index and ruff's cache do: per path, the file's stat signature and the words of the text prefilter found
(or not) in its bytes. These are facts of the content alone, true under any configuration; a word no
earlier run asked about is not among them, so the file is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from codemods import __version__

__all__ = ["CACHE_DIR", "RACY_MARGIN_NS", "ResultCache", "StatFacts", "content_key", "digest", "signature"]

CACHE_DIR = ".poolshift_cache"
_FORMAT = 1


def digest(*parts: object) -> str:
    """A short stable hash of ``parts`` (their reprs): cache keys, never security."""
    hasher = hashlib.blake2b(digest_size=16)
    for part in parts:
        hasher.update(repr(part).encode("utf-8", "surrogateescape"))
        hasher.update(b"\0")
    return hasher.hexdigest()


def content_key(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class ResultCache:
    """One JSON file per kind of entry under ``<root>/.poolshift_cache/<version>/``; off when disabled."""

    def __init__(self, root: Path, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.directory = root / CACHE_DIR / __version__
        self._tables: dict[str, dict[str, Any]] = {}
        self._dirty: set[str] = set()
        self._used: dict[str, set[str]] = {}

    def get(self, table: str, key: str) -> Any:
        if not self.enabled:
            return None
        entries = self._table(table)
        value = entries.get(key)
        if value is not None:
            self._used.setdefault(table, set()).add(key)
        return value

    def put(self, table: str, key: str, value: Any) -> None:
        if not self.enabled:
            return
        self._table(table)[key] = value
        self._used.setdefault(table, set()).add(key)
        self._dirty.add(table)

    def save(self) -> None:
        """Write each changed table atomically, keeping only the entries this run used.

        A key embeds the file's content hash, so entries of files since edited are dead weight; keeping
        the used ones alone bounds the cache by the tree's size.
        """
        if not self.enabled:
            return
        for table in sorted(self._dirty):
            used = self._used.get(table, set())
            entries = {key: value for key, value in self._tables[table].items() if key in used}
            try:
                self._write(table, {"format": _FORMAT, "entries": entries})
            except OSError:
                continue  # a read-only tree still gets its report; the next run recomputes
        self._dirty.clear()

    def _path(self, table: str) -> Path:
        return self.directory / f"{table}.json"

    def _table(self, table: str) -> dict[str, Any]:
        if table not in self._tables:
            self._tables[table] = self._load(table)
        return self._tables[table]

    def _load(self, table: str) -> dict[str, Any]:
        try:
            document = json.loads(self._path(table).read_bytes())
        except (OSError, ValueError):
            return {}
        if not isinstance(document, dict) or document.get("format") != _FORMAT:
            return {}
        entries = document.get("entries")
        return entries if isinstance(entries, dict) else {}

    def _write(self, table: str, document: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        _mark_cache_directory(self.directory.parent)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{table}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(document, handle, separators=(",", ":"))
            os.replace(tmp_name, self._path(table))
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise


#: How much older than the moment a file was read its mtime and ctime must be for its facts to be kept.
#: Timestamps are coarse (2 s on FAT, 1 s on some network filesystems, a kernel tick elsewhere): a file
#: written again within the same tick as the read keeps the same mtime and ctime, and its stat signature
#: would not tell the new content from the one read ("racy git"). A file last changed before the read by
#: more than the coarsest granularity gets a strictly newer timestamp from any later change.
RACY_MARGIN_NS = 2_000_000_000

Signature = tuple[int, int, int, int, int]


def signature(info: os.stat_result) -> Signature:
    """What changes whenever a file's bytes may have: size, mtime, ctime (``utime`` cannot set it back),
    inode and device (a file replaced by a rename)."""
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino, info.st_dev)


class StatFacts:
    """The ``stat`` table: path -> stat signature, the prefilter words found and absent, and whether the
    file has a coding cookie (a text decoded another way may hold words its bytes do not)."""

    TABLE = "stat"

    def __init__(self, cache: ResultCache) -> None:
        self._cache = cache
        #: Files read from here on are recorded only if they were last changed before this, with margin.
        self.started_ns = time.time_ns()

    def lookup(self, path: str, info: os.stat_result) -> tuple[dict[bytes, bool], bool] | None:
        """(word -> found, utf-8 by default) of ``path`` when its stat signature is the recorded one."""
        entry = self._cache.get(self.TABLE, path)
        if not isinstance(entry, dict) or entry.get("sig") != list(signature(info)):
            return None
        try:
            words = {word.encode("latin-1"): True for word in entry["found"]}
            words.update((word.encode("latin-1"), False) for word in entry["absent"])
            return words, bool(entry["utf8"])
        except (KeyError, TypeError, AttributeError, UnicodeEncodeError):
            return None

    def record(self, path: str, info: os.stat_result, words: Mapping[bytes, bool], utf8: bool) -> None:
        """Keep what this run learnt of ``path``'s bytes (read with ``info``), unless it may be racy."""
        limit = self.started_ns - RACY_MARGIN_NS
        if info.st_mtime_ns >= limit or info.st_ctime_ns >= limit:
            return  # changed too recently: the same signature could hide a later change; read it next time
        entry = {
            "sig": list(signature(info)),
            "utf8": utf8,
            "found": sorted(word.decode("latin-1") for word, found in words.items() if found),
            "absent": sorted(word.decode("latin-1") for word, found in words.items() if not found),
        }
        if self._cache.get(self.TABLE, path) != entry:  # an unchanged table is not written again
            self._cache.put(self.TABLE, path, entry)

    def save(self) -> None:
        self._cache.save()


def _mark_cache_directory(directory: Path) -> None:
    """Keep the cache out of git and backups, as ruff and pytest do (a ``*`` .gitignore, CACHEDIR.TAG)."""
    for name, text in _markers():
        path = directory / name
        if not path.exists():
            path.write_text(text, encoding="utf-8")


def _markers() -> Iterable[tuple[str, str]]:
    yield ".gitignore", "# Created by poolshift automatically.\n*\n"
    yield (
        "CACHEDIR.TAG",
        "Signature: 8a477f597d28d172789f06886806bc55\n"
        "# This file is a cache directory tag created by poolshift.\n",
    )
