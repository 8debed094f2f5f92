"""The text prefilter answers exactly what searching each word would, with fewer passes over the bytes.

Every answer of :class:`NeedleIndex` (and of the lazily decoded sources helper discovery reads) decides
whether a file is looked at at all: a wrong "absent" would hide a site, so each shortcut is checked against
the plain search it replaces, on bytes built to trip it.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from codemods.legacy_helpers.discovery import find_helpers
from codemods.needles import NeedleIndex, shared_parts
from codemods.project import FileStore, ProjectSources, decoded_sources, load_project

WORDS = (b"urlopen", b"urllib", b"url", b"connect", b"get_postgres_connection", b"psycopg2", b"sqlite3")
TEXTS = (
    b"",
    b"import urllib.request\n",
    b"from urllib.request import urlopen\n",
    b"curl = 1\n",  # holds "url" only
    b"conn = get_postgres_connection()\n",
    b"connect()\n",
    b"import sqlite3, psycopg2\n",
    b"nothing to see\n",
)


@pytest.mark.parametrize("data", TEXTS)
def test_every_combination_of_words_gets_the_plain_answer(data: bytes) -> None:
    index = NeedleIndex()  # one index for all questions: earlier answers feed later ones
    for size in (1, 2, 3):
        for words in itertools.permutations(WORDS, size):
            assert index.contains("f.py", data, words) == any(word in data for word in words), words


def test_a_new_version_of_a_file_is_searched_again() -> None:
    index = NeedleIndex()
    assert not index.contains("f.py", b"x = 1\n", (b"sqlite3",))
    assert index.contains("f.py", b"import sqlite3\n", (b"sqlite3",))


def test_an_absent_shared_part_rules_out_every_word_holding_it() -> None:
    assert shared_parts((b"urllib", b"urlopen", b"sqlite3")) == (b"url",)
    index = NeedleIndex()
    assert not index.contains("f.py", b"plain code\n", (b"urlopen", b"urllib"))
    _, known, _ = index._files["f.py"]
    assert known == {b"url": False, b"urllib": False, b"urlopen": False}
    # A shared part that is there proves nothing: each word is then searched on its own.
    assert not index.contains("g.py", b"curl\n", (b"urlopen", b"urllib"))
    assert index.contains("h.py", b"curl; urllib\n", (b"urlopen", b"urllib"))


# A coding cookie can make letters of bytes that do not spell the word (utf-7's base64, escapes), and a
# file that does not decode (or mixes line endings) has no text at all.
SOURCES = {
    "plain.py": b"def connect():\n    pass\n",
    "absent.py": b"x = 1\n",
    "utf7.py": b"# coding: utf-7\nx = '+AGMAbwBuAG4AZQBjAHQ-'\n",
    "escapes.py": b"# coding: unicode_escape\nx = '\\x63onnect'\n",
    "latin1.py": b"# -*- coding: latin-1 -*-\nconnect = '\xe9'\n",
    "bad_utf8.py": b"connect = '\xff'\n",
    "mixed.py": b"connect = 1\r\nx = 2\n",
    "bom.py": b"\xef\xbb\xbfconnect = 1\n",
    "cr_only.py": b"x = 1\rconnect = 2\r",
}


@pytest.mark.parametrize("path", sorted(SOURCES))
def test_mentions_is_exactly_a_search_of_the_decoded_text(path: str, tmp_path: Path) -> None:
    texts = decoded_sources(SOURCES)
    sources = ProjectSources(_store(tmp_path, SOURCES), SOURCES)
    for words in (("connect",), ("nothing", "connect"), ("nothing",)):
        expected = path in texts and any(word in texts[path] for word in words)
        assert sources.mentions(path, words) == expected
    assert (path in sources) == (path in texts)
    assert dict(sources) == texts


def test_discovery_finds_a_helper_whose_connect_only_the_text_shows(tmp_path: Path) -> None:
    """utf-7 spells ``connect`` in base64: the bytes never hold the word, the text does."""
    helper = "import psycopg2\n\n\ndef open_db():\n    return psycopg2.connect('')\n"
    encoded = b"# coding: utf-7\n" + helper.encode("utf-7").replace(b"connect", b"+AGM-onnect")
    assert b"connect" not in encoded
    sources = {"app/db.py": encoded}
    names = {"app/db.py": "app.db"}
    found = find_helpers(ProjectSources(_store(tmp_path / "read", sources), sources), names)
    assert [helper.name for helper in found] == ["app.db.open_db"]
    assert found == find_helpers(decoded_sources(sources), names)
    project = tmp_path / "project"
    (project / "app").mkdir(parents=True)
    (project / "app" / "db.py").write_bytes(encoded)
    (project / "pyproject.toml").write_text("[project]\nname = 'app'\n")
    assert load_project([project]).legacy_helpers == ("app.db.open_db",)


def _store(root: Path, files: dict[str, bytes]) -> FileStore:
    """``files`` written under ``root``, read through the FileStore a run reads them with."""
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return FileStore(root, NeedleIndex())
