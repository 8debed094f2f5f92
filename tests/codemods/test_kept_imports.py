"""An import a rewrite keeps for a test's patch path says so on its line, and only when it is unused."""

from __future__ import annotations

import libcst as cst
import pytest

from codemods.cst.imports.kept import KEPT_COMMENT, mark_kept_imports


def marked(source: str, *names: str) -> str:
    return mark_kept_imports(cst.parse_module(source), names).code


def test_an_unused_kept_import_is_marked_for_the_linter() -> None:
    expected = f"import psycopg2  {KEPT_COMMENT}\nimport os\n"
    assert marked("import psycopg2\nimport os\n", "psycopg2") == expected


def test_the_users_comment_stays_in_front() -> None:
    source = "from urllib import request  # stdlib\n"
    assert marked(source, "request") == f"from urllib import request  # stdlib  {KEPT_COMMENT}\n"


@pytest.mark.parametrize(
    "source",
    [
        "import psycopg2\n\nError = psycopg2.Error\n",  # still read: no linter complains
        "import psycopg2\n\n__all__ = ['psycopg2']\n",  # exported
        "import psycopg2  # noqa: F401\n",  # the user's own directive
        "def f():\n    import psycopg2\n",  # not a module attribute: no patch path reaches it
        "import os\n",  # not a kept name
    ],
)
def test_left_alone(source: str) -> None:
    assert marked(source, "psycopg2") == source
