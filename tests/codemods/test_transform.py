"""transform_bytes: encodings, line endings, bad files and bad rules, all at the byte level."""

from __future__ import annotations

from typing import ClassVar

import libcst as cst
import pytest

from codemods.rules.base import PoolshiftRule
from codemods.transform import PositionMap, line_ending_of, transform_bytes
from tests.codemods.harness import run_rules
from tests.codemods.toy_rules import BrokenOutputRule, CrashingRule, RewriteLatin1Rule, ToySqliteRule

SOURCE = "import sqlite3\n\n\ndef open_db(path):\n    return sqlite3.connect(path)\n"
EXPECTED = (
    "import sqlite3\n\nimport db_utils.sqlite\n\n\n"
    "def open_db(path):\n    return db_utils.sqlite.connect(path)\n"
)


def test_rewrites_and_records_migrated_site() -> None:
    result = run_rules(SOURCE, [ToySqliteRule])
    assert result.error is None
    assert result.output == EXPECTED.encode()
    assert [(s.rule, s.line, s.column, s.status, s.path) for s in result.sites] == [
        ("PS990", 5, 12, "migrated", "app/module.py")
    ]


def test_dry_run_returns_output_but_sites_are_migratable() -> None:
    result = run_rules(SOURCE, [ToySqliteRule], dry_run=True)
    assert result.output == EXPECTED.encode()
    assert [s.status for s in result.sites] == ["migratable"]


def test_unchanged_file_has_no_output_but_keeps_reported_sites() -> None:
    result = run_rules("import sqlite3\nsqlite3.connect(':memory:')\n", [ToySqliteRule])
    assert result.output is None
    assert result.error is None
    assert [(s.status, s.reason) for s in result.sites] == [("reported", "memory-database")]


def test_crlf_is_preserved_including_added_lines() -> None:
    data = SOURCE.replace("\n", "\r\n").encode()
    result = transform_bytes(data, [ToySqliteRule], path="m.py")
    assert result.output == EXPECTED.replace("\n", "\r\n").encode()


def test_lone_cr_line_endings_are_preserved() -> None:
    data = SOURCE.replace("\n", "\r").encode()
    result = transform_bytes(data, [ToySqliteRule], path="m.py")
    assert result.error is None
    assert result.output == EXPECTED.replace("\n", "\r").encode()


def test_utf8_bom_is_preserved() -> None:
    data = b"\xef\xbb\xbf" + SOURCE.encode()
    result = transform_bytes(data, [ToySqliteRule], path="m.py")
    assert result.output == b"\xef\xbb\xbf" + EXPECTED.encode()


def test_latin1_coding_cookie_round_trips_non_ascii_bytes() -> None:
    source = "# -*- coding: latin-1 -*-\nimport sqlite3\nNAME = 'caf\xe9'\nsqlite3.connect(NAME)\n"
    data = source.encode("latin-1")
    result = transform_bytes(data, [ToySqliteRule], path="m.py")
    assert result.error is None
    assert result.output is not None
    assert b"NAME = 'caf\xe9'" in result.output  # still one latin-1 byte, not UTF-8's two
    assert result.output.decode("latin-1").endswith("db_utils.sqlite.connect(NAME)\n")


def test_output_that_cannot_be_encoded_in_the_cookie_encoding_is_rolled_back() -> None:
    data = "# coding: latin-1\nold_name = 1\n".encode("latin-1")
    result = transform_bytes(data, [RewriteLatin1Rule], path="m.py")
    assert (result.output, result.error, result.sites) == (None, "output-does-not-parse", [])


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"import sqlite3\r\nsqlite3.connect('a')\n", "mixed-line-endings"),
        (b"import sqlite3\nsqlite3.connect('a')\r", "mixed-line-endings"),
        (b"import sqlite3\ndef broken(:\n    sqlite3.connect('a')\n", "syntax-error"),
        (b"import sqlite3\nsqlite3.connect('\xff\xfe')\n", "undecodable"),
        (b"# coding: no-such-codec\nimport sqlite3\nsqlite3.connect('a')\n", "undecodable"),
        (b"\xef\xbb\xbf# coding: latin-1\nimport sqlite3\nsqlite3.connect('a')\n", "undecodable"),
    ],
    ids=["crlf-and-lf", "lf-and-cr", "syntax-error", "bad-utf8", "unknown-cookie", "bom-vs-cookie"],
)
def test_bad_files_are_left_untouched_with_a_reason(data: bytes, error: str) -> None:
    result = transform_bytes(data, [ToySqliteRule], path="bad.py")
    assert result.error == error
    assert result.output is None
    assert result.original == data
    assert result.sites == []
    assert result.error_detail


def test_rule_that_raises_leaves_file_untouched_even_after_other_rules_changed_it() -> None:
    data = (SOURCE + "boom()\n").encode()
    result = transform_bytes(data, [ToySqliteRule, CrashingRule], path="m.py")
    assert (result.output, result.error, result.sites) == (None, "rule-crashed", [])
    assert "PS991" in result.error_detail
    assert "toy rule exploded" in result.error_detail


def test_output_that_does_not_parse_is_rolled_back() -> None:
    data = b"import sqlite3\nsqlite3.connect('a')\nbroken()\n"
    result = transform_bytes(data, [ToySqliteRule, BrokenOutputRule], path="m.py")
    assert (result.output, result.error, result.sites) == (None, "output-does-not-parse", [])


def test_rules_run_in_order_and_all_changes_and_sites_are_kept() -> None:
    data = (SOURCE + "old_name = 1\n").encode()
    result = transform_bytes(data, [ToySqliteRule, RewriteLatin1Rule], path="m.py")
    assert result.output == (EXPECTED + "new_\u0394 = 1\n").encode()
    assert [s.rule for s in result.sites] == ["PS990", "PS993"]


def test_second_run_changes_nothing() -> None:
    first = run_rules(SOURCE, [ToySqliteRule])
    assert first.output is not None
    assert run_rules(first.output, [ToySqliteRule]).output is None


def test_names_that_only_look_like_candidates_are_not_rewritten() -> None:
    source = (
        "def connect(p):\n    return p\n\n\nconnect('x')  # sqlite3.connect('x')\nS = 'sqlite3.connect'\n"
    )
    result = run_rules(source, [ToySqliteRule])
    assert (result.output, result.sites) == (None, [])


@pytest.mark.parametrize(
    ("data", "ending"),
    [
        (b"a\nb\n", "\n"),
        (b"a\r\nb\r\n", "\r\n"),
        (b"a\rb\r", "\r"),
        (b"no newline", "\n"),
        (b"a\r\nb\n", None),
    ],
)
def test_line_ending_detection(data: bytes, ending: str | None) -> None:
    assert line_ending_of(data) == ending


class ReportCallsRule(PoolshiftRule):
    """Reports every ``report_me()`` call and changes nothing: a rule that runs after a rewriting one."""

    RULE_ID = "PS995"
    PREFILTER: ClassVar[tuple[str, ...]] = ("report_me",)
    REASON_CODES: ClassVar[dict[str, str]] = {"seen": "a report_me() call"}

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Name) and node.func.value == "report_me":
            self.record(node, "reported", "seen")


TWO_RULES_SOURCE = (
    "import sqlite3\n\n\ndef open_db(path):\n"
    "    conn = sqlite3.connect(path); report_me()\n"
    "    report_me()\n"
    "    return conn\n"
)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_sites_of_a_later_rule_are_positions_in_the_original_file(newline: str) -> None:
    # ToySqliteRule adds `import db_utils.sqlite` above both report_me() calls (every later line moves
    # down one) and lengthens the callee left of the first one (its column moves right by 8).
    data = TWO_RULES_SOURCE.replace("\n", newline).encode()
    together = transform_bytes(data, [ToySqliteRule, ReportCallsRule], path="m.py")
    assert together.output is not None
    assert b"import db_utils.sqlite" in together.output
    alone = transform_bytes(data, [ReportCallsRule], path="m.py")
    expected = [("PS995", 5, 35), ("PS995", 6, 5)]
    assert [(s.rule, s.line, s.column) for s in alone.sites] == expected
    assert [(s.rule, s.line, s.column) for s in together.sites] == [("PS990", 5, 12), *expected]


def test_position_map_equal_changed_and_inserted_lines() -> None:
    original = "a\nb\nc = f(x)\nd\n"
    rewritten = "import z\na\nb\nc = g.h.f(x)\nd\nextra\n"
    positions = PositionMap(original, rewritten)
    assert positions.locate(2, 1) == (1, 1)  # shifted by the inserted first line
    assert positions.locate(4, 11) == (3, 7)  # the `x`, after a callee that grew by four characters
    assert positions.locate(4, 5) == (3, 5)  # inside the rewritten part: where it starts in the original
    assert positions.locate(1, 3) == (1, 1)  # an inserted line: the original line it was placed above
    assert positions.locate(6, 2) == (4, 1)  # inserted at the end: the last original line


def test_position_map_hunk_that_grew_maps_to_its_last_original_line() -> None:
    positions = PositionMap("keep\nold\nkeep2\n", "keep\nnew1\nnew2\nnew3\nkeep2\n")
    assert [positions.locate(line, 1)[0] for line in range(1, 6)] == [1, 2, 2, 2, 3]
