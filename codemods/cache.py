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
index and ruff's cache do: per path, the file's stat signature, the words of the text prefilter found
(or not) in its bytes, whether its text decodes and, when a run computed it, its content key (so the
content-keyed answers of helper discovery are found without reading it). These are facts of the content
alone, true under any configuration; a word no earlier run asked about is not among them, so the file is
read.
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
from codemods.needles import known_answer

__all__ = [
    "CACHE_DIR",
    "RACY_MARGIN_NS",
    "ResultCache",
    "StatFacts",
    "WordFacts",
    "content_key",
    "digest",
    "signature",
]

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
                self.write_document(table, {"format": _FORMAT, "entries": entries})
            except OSError:
                continue  # a read-only tree still gets its report; the next run recomputes
        self._dirty.clear()

    def _path(self, table: str) -> Path:
        return self.directory / f"{table}.json"

    def _table(self, table: str) -> dict[str, Any]:
        if table not in self._tables:
            self._tables[table] = self._load(table)
        return self._tables[table]

    def read_document(self, table: str) -> Any:
        """The JSON document of ``table`` as stored, or None (disabled, missing, unreadable, not JSON)."""
        if not self.enabled:
            return None
        try:
            return json.loads(self._path(table).read_bytes())
        except (OSError, ValueError):
            return None

    def _load(self, table: str) -> dict[str, Any]:
        document = self.read_document(table)
        if not isinstance(document, dict) or document.get("format") != _FORMAT:
            return {}
        entries = document.get("entries")
        return entries if isinstance(entries, dict) else {}

    def write_document(self, table: str, document: dict[str, Any]) -> None:
        """Replace ``table``'s file with ``document``, atomically (a temporary file renamed over it)."""
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


class WordFacts:
    """What is known of one content's words: those found, those absent, whether the file has no coding
    cookie (``utf8``: its text is its bytes decoded as UTF-8, so a word is in the text exactly when its
    bytes are in the file) and whether it decodes (None: not known).

    Most files of a tree share the same facts (none of the run's words), so one object is kept per
    distinct value (:class:`StatFacts` interns them) and remembers its answer per question: a file's
    question is then two dictionary lookups.
    """

    __slots__ = ("_answers", "absent", "decodes", "found", "utf8")

    def __init__(self, found: frozenset[bytes], absent: frozenset[bytes], utf8: bool, decodes: bool | None):
        self.found = found
        self.absent = absent
        self.utf8 = utf8
        self.decodes = decodes
        self._answers: dict[tuple[bytes, ...], bool | None] = {}

    def answer(self, words: tuple[bytes, ...]) -> bool | None:
        """Whether one of ``words`` is in the content; None when these facts cannot tell."""
        try:
            return self._answers[words]
        except KeyError:
            pass
        answer = self._answers[words] = known_answer(self.found, self.absent, words)
        return answer

    def as_json(self) -> list[Any]:
        return [sorted(word.decode("latin-1") for word in self.found),
                sorted(word.decode("latin-1") for word in self.absent), self.utf8, self.decodes]  # fmt: skip


class StatFacts:
    """The ``stat`` table: path -> stat signature, content key and :class:`WordFacts`, for read-only runs.

    Its own compact document (it has an entry per file of the tree, and a warm run loads it whole): the
    distinct word facts once, in a list, and per path a list ``[size, mtime_ns, ctime_ns, ino, dev,
    facts index, content key or null]``. The content key (:func:`content_key` of the bytes, recorded when
    the run computed it) lets content-keyed answers (helper discovery's) be found without reading the file.
    """

    TABLE = "stat"
    FORMAT = 2

    def __init__(self, cache: ResultCache) -> None:
        self._cache = cache
        #: Files read from here on are recorded only if they were last changed before this, with margin.
        self.started_ns = time.time_ns()
        self._entries: dict[str, list[Any]] | None = None
        self._facts: list[WordFacts | None] = []
        self._interned: dict[tuple[Any, ...], WordFacts] = {}
        self._used: set[str] = set()
        self._dirty = False

    def _load(self) -> dict[str, list[Any]]:
        self._entries = {}
        document = self._cache.read_document(self.TABLE)
        if not isinstance(document, dict) or document.get("format") != self.FORMAT:
            return self._entries
        facts, entries = document.get("facts"), document.get("entries")
        if not isinstance(facts, list) or not isinstance(entries, dict):
            return self._entries
        self._facts = [self._decoded(raw) for raw in facts]
        self._entries = entries
        return entries

    def _decoded(self, raw: object) -> WordFacts | None:
        if not isinstance(raw, list) or len(raw) != 4:
            return None
        found, absent, utf8, decodes = raw
        if not (
            isinstance(found, list)
            and isinstance(absent, list)
            and all(isinstance(word, str) for word in (*found, *absent))
            and isinstance(utf8, bool)
            and isinstance(decodes, (bool, type(None)))
        ):
            return None  # a foreign value: the files pointing at it are read
        try:
            return self._intern(
                frozenset(word.encode("latin-1") for word in found),
                frozenset(word.encode("latin-1") for word in absent),
                utf8,
                decodes,
            )
        except UnicodeEncodeError:
            return None

    def _intern(
        self, found: frozenset[bytes], absent: frozenset[bytes], utf8: bool, decodes: bool | None
    ) -> WordFacts:
        value = (found, absent, utf8, decodes)
        facts = self._interned.get(value)
        if facts is None:
            facts = self._interned[value] = WordFacts(found, absent, utf8, decodes)
        return facts

    def lookup(self, path: str, info: os.stat_result) -> tuple[WordFacts, str | None] | None:
        """(word facts, content key or None) of ``path`` when its stat signature is the recorded one."""
        entries = self._entries if self._entries is not None else self._load()
        entry = entries.get(path)
        if (
            type(entry) is not list
            or len(entry) != 7
            or entry[0] != info.st_size
            or entry[1] != info.st_mtime_ns
            or entry[2] != info.st_ctime_ns
            or entry[3] != info.st_ino
            or entry[4] != info.st_dev
        ):
            return None
        index, key = entry[5], entry[6]
        if (
            type(index) is not int
            or not 0 <= index < len(self._facts)
            or (key is not None and type(key) is not str)
        ):
            return None
        facts = self._facts[index]
        if facts is None:
            return None
        self._used.add(path)
        return facts, key

    def record(
        self,
        path: str,
        info: os.stat_result,
        words: Mapping[bytes, bool],
        utf8: bool,
        *,
        decodes: bool | None = None,
        key: str | None = None,
    ) -> None:
        """Keep what this run learnt of ``path``'s bytes (read with ``info``), unless it may be racy.

        What an earlier run recorded of the same signature (the same content) is kept too: the words it
        asked, whether the text decodes and the content key, when this run did not learn them itself.
        """
        limit = self.started_ns - RACY_MARGIN_NS
        if info.st_mtime_ns >= limit or info.st_ctime_ns >= limit:
            return  # changed too recently: the same signature could hide a later change; read it next time
        found = {word for word, present in words.items() if present}
        absent = {word for word, present in words.items() if not present}
        earlier = self.lookup(path, info)
        if earlier is not None:
            facts, earlier_key = earlier
            found |= facts.found - absent
            absent |= facts.absent - found
            decodes = facts.decodes if decodes is None else decodes
            key = key or earlier_key
        merged = self._intern(frozenset(found), frozenset(absent), utf8, decodes)
        if earlier is not None and earlier == (merged, key):
            return  # an unchanged table is not written again
        try:
            index = self._facts.index(merged)
        except ValueError:
            index = len(self._facts)
            self._facts.append(merged)
        assert self._entries is not None  # loaded by lookup above
        self._entries[path] = [*signature(info), index, key]
        self._used.add(path)
        self._dirty = True

    def save(self) -> None:
        """Write the table atomically when this run changed it, keeping the entries this run used."""
        if not self._dirty or not self._cache.enabled or self._entries is None:
            return
        entries = {path: entry for path, entry in self._entries.items() if path in self._used}
        used = sorted({entry[5] for entry in entries.values()})
        renumber = {old: new for new, old in enumerate(used)}
        document = {
            "format": self.FORMAT,
            "facts": [self._facts[old].as_json() for old in used],
            "entries": {path: [*entry[:5], renumber[entry[5]], entry[6]] for path, entry in entries.items()},
        }
        try:
            self._cache.write_document(self.TABLE, document)
        except OSError:
            return  # a read-only tree still gets its report; the next run reads the files again
        self._dirty = False


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
