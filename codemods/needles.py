"""Which words a file's bytes contain: the text prefilter every phase, rule and helper lookup asks.

Most files of a large tree contain none of the words (the rules' ``PREFILTER`` strings, the legacy
helpers' names, ``connect`` for helper discovery), and on such a file the searches are most of the run's
cost: each one is a pass over the file's bytes about as long as reading it. So one :class:`NeedleIndex`
per run remembers every answer per file version (the bytes object it was asked about), whoever asked,
and a word never needs its own pass when a shorter word inside it is already known to be absent
(``connect`` absent: ``get_postgres_connection`` absent too).

One compiled regular expression over all the words was tried instead: CPython's ``re`` tries the
alternation at every position that starts like one of the words, which costs several times the
``bytes.__contains__`` passes it would replace.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["NeedleIndex"]


class NeedleIndex:
    """The answers of ``word in data`` for each file, computed at most once per file version and word."""

    def __init__(self) -> None:
        #: path -> (the bytes asked about, word -> found, the words found absent)
        self._files: dict[str, tuple[bytes, dict[bytes, bool], list[bytes]]] = {}

    def contains(self, path: str, data: bytes, words: Iterable[bytes]) -> bool:
        """Whether ``data`` (``path``'s current bytes) holds one of ``words``."""
        entry = self._files.get(path)
        if entry is None or entry[0] is not data:
            entry = (data, {}, [])
            self._files[path] = entry
        _, known, absent = entry
        for word in words:
            found = known.get(word)
            if found is None:
                found = not any(shorter in word for shorter in absent) and word in data
                known[word] = found
                if not found:
                    absent.append(word)
            if found:
                return True
        return False
