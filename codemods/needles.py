"""Which words a file's bytes contain: the text prefilter every phase, rule and helper lookup asks.

Most files of a large tree contain none of the words (the rules' ``PREFILTER`` strings, the legacy
helpers' names, ``connect`` for helper discovery), and on such a file the searches are most of the run's
cost: each one is a pass over the file's bytes about as long as reading it. So one :class:`NeedleIndex`
per run remembers every answer per file version (the bytes object it was asked about), whoever asked,
and a word never needs its own pass when a shorter word inside it is already known to be absent
(``connect`` absent: ``get_postgres_connection`` absent too).

Words asked together that share a part (``urlopen``, ``urllib``: ``url``) are ruled out together: the
shared part is searched first, and when it is absent, so are they, for one pass instead of two.

One compiled regular expression over all the words was tried instead: CPython's ``re`` tries the
alternation at every position that starts like one of the words, which costs several times the
``bytes.__contains__`` passes it would replace.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import lru_cache

__all__ = ["NeedleIndex", "known_answer", "shared_parts"]

#: A shared part shorter than this is in too many files to rule anything out.
MIN_SHARED = 3


@lru_cache(maxsize=256)
def shared_parts(words: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """The longest part (at least MIN_SHARED bytes) each pair of ``words`` shares, when it is not one of
    the words itself (a word inside another is already searched first, see NeedleIndex.contains)."""
    parts: dict[bytes, None] = {}
    for index, first in enumerate(words):
        for second in words[index + 1 :]:
            part = _longest_common(first, second)
            if len(part) >= MIN_SHARED and part not in words:
                parts[part] = None
    return tuple(parts)


def _longest_common(first: bytes, second: bytes) -> bytes:
    for length in range(min(len(first), len(second)), 0, -1):
        for start in range(len(first) - length + 1):
            if first[start : start + length] in second:
                return first[start : start + length]
    return b""


class NeedleIndex:
    """The answers of ``word in data`` for each file, computed at most once per file version and word."""

    def __init__(self) -> None:
        #: path -> (the bytes asked about, word -> found, the words found absent)
        self._files: dict[str, tuple[bytes, dict[bytes, bool], list[bytes]]] = {}

    def contains(self, path: str, data: bytes, words: Sequence[bytes]) -> bool:
        """Whether ``data`` (``path``'s current bytes) holds one of ``words``."""
        entry = self._files.get(path)
        if entry is None or entry[0] is not data:
            entry = (data, {}, [])
            self._files[path] = entry
        _, known, absent = entry
        ordered = sorted(words, key=len)  # a shorter word absent rules out the longer ones holding it
        if len(ordered) > 1:
            for part in shared_parts(tuple(ordered)):
                if part not in known and sum(part in word and word not in known for word in ordered) > 1:
                    _search(data, part, known, absent)
        for word in ordered:
            found = known.get(word)
            if found is None:
                found = _search(data, word, known, absent)
            if found:
                return True
        return False

    def answers(self, path: str, data: bytes) -> dict[bytes, bool]:
        """Every word asked about ``data`` (``path``'s bytes) so far: word -> found."""
        entry = self._files.get(path)
        return dict(entry[1]) if entry is not None and entry[0] is data else {}


def known_answer(found: Collection[bytes], absent: Collection[bytes], words: Sequence[bytes]) -> bool | None:
    """Whether one of ``words`` is in a content of which ``found`` and ``absent`` words are known; None
    when that cannot tell.

    A word not asked before is absent when a word inside it is known absent (see NeedleIndex.contains).
    """
    if any(word in found for word in words):
        return True
    if all(word in absent or any(part in word for part in absent) for word in words):
        return False
    return None


def _search(data: bytes, word: bytes, known: dict[bytes, bool], absent: list[bytes]) -> bool:
    found = not any(part in word for part in absent) and word in data
    known[word] = found
    if not found:
        absent.append(word)
    return found
