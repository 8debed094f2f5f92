"""What escapes a legacy helper that returns None on a failed connect (``legacy_helpers/escapes.py``).

Each helper keeps the contract (its analysis finds no difference), and the facts stated with it say which
exceptions still get out: the statements before its ``try`` and its ``except`` blocks (``MAY_RAISE``), and
from its ``try`` anything its ``except`` blocks do not name (``TRY_LETS_OUT``). Unknown means anything.
"""

from __future__ import annotations

import textwrap

import pytest

from codemods.legacy_helpers.equivalence import helper_differences
from codemods.legacy_helpers.escapes import (
    ANYTHING,
    ESCAPES_NOTHING,
    MAY_RAISE,
    TRY_LETS_OUT,
    Escapes,
    is_escape_fact,
)

HEADER = """\
import logging
import os

import psycopg2
from psycopg2 import OperationalError

log = logging.getLogger(__name__)
PORT = "5432"
DBError = psycopg2.Error
"""


def escapes(body: str) -> Escapes:
    """The facts stated for ``def get_postgres_connection(): <body>`` (which must keep the contract)."""
    source = HEADER + "\n\ndef get_postgres_connection():\n" + textwrap.indent(textwrap.dedent(body), "    ")
    sentences = helper_differences(source, "get_postgres_connection", contract_only=True)
    assert sentences is not None
    assert all(is_escape_fact(sentence) for sentence in sentences), sentences  # the contract is kept
    found = Escapes.from_sentences(sentences)
    assert found is not None
    return found


def _try(handler: str = "except psycopg2.OperationalError:", *handler_body: str) -> str:
    lines = ["try:", '    return psycopg2.connect(os.environ["DSN"])', handler]
    lines += [f"    {line}" for line in (*handler_body, "return None")]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("handler", ["except:", "except BaseException:", "except (KeyError, BaseException):"])
def test_nothing_escapes_a_try_that_catches_everything(handler: str) -> None:
    found = escapes(_try(handler, 'log.exception("database unreachable")'))
    assert found.nothing
    assert found.sentences() == [ESCAPES_NOTHING]


@pytest.mark.parametrize(
    ("handler", "caught"),
    [
        ("except Exception:", ("builtins.Exception",)),  # KeyboardInterrupt, SystemExit still get out
        ("except psycopg2.OperationalError:", ("psycopg2.OperationalError",)),
        ("except OperationalError as error:", ("psycopg2.OperationalError",)),
        ("except (psycopg2.OperationalError, KeyError):", ("psycopg2.OperationalError", "builtins.KeyError")),
        # An alias is not resolved: taken to catch nothing.
        ("except (psycopg2.OperationalError, DBError):", ("psycopg2.OperationalError",)),
    ],
)
def test_the_try_lets_out_what_its_except_blocks_do_not_name(handler: str, caught: tuple[str, ...]) -> None:
    found = escapes(_try(handler))
    assert found == Escapes(raised=(), caught=caught)
    assert not found.nothing
    assert found.sentences() == [TRY_LETS_OUT + (", ".join(caught) or "none")]


@pytest.mark.parametrize(
    ("before", "raised"),
    [
        ('dsn = os.environ["DSN"]', ("builtins.KeyError",)),
        ('port = int(os.environ.get("PORT", "5432"))', ("builtins.TypeError", "builtins.ValueError")),
        (
            'port = int(os.environ["PORT"])',
            ("builtins.KeyError", "builtins.TypeError", "builtins.ValueError"),
        ),
        ('port = os.environ.get("PORT", "5432")', ()),
        ('host = os.getenv("HOST")', ()),
        ('params = {"host": os.getenv("HOST"), "port": PORT, "connect_timeout": 5}', ()),
        ("dsn = load_dsn()", (ANYTHING,)),  # a call of anything else may raise anything
        ('dsn = os.environ.get("DSN").strip()', (ANYTHING,)),
        ('dsn = os.environ.get(PORT, "x")', (ANYTHING,)),  # a key that may not be a string
        ("options = f\"-c search_path={os.getenv('SCHEMA')}\"", (ANYTHING,)),
    ],
)
def test_what_runs_before_the_try_escapes_whatever_it_catches(before: str, raised: tuple[str, ...]) -> None:
    found = escapes(before + "\n" + _try("except BaseException:"))
    assert found.raised == raised
    assert found.nothing is (not raised)


@pytest.mark.parametrize(
    ("handler_body", "raises"),
    [
        (['log.exception("database unreachable")'], False),
        (['log.error("database unreachable: %s", error)', "print(error)"], False),
        (['log.warning(f"database unreachable: {error}")', "pass"], False),
        (["log.error(error.pgerror)"], True),  # an attribute: a KeyError has no pgerror
        (['log.error(f"down: {error.pgerror}")'], True),
        (['log.error("down", extra=details(error))'], True),
    ],
)
def test_what_its_except_block_runs_escapes_too(handler_body: list[str], raises: bool) -> None:
    found = escapes(_try("except BaseException as error:", *handler_body))
    assert found.raised == ((ANYTHING,) if raises else ())


def test_a_later_handler_that_re_raises_lets_anything_out() -> None:
    found = escapes(_try() + "except Exception:\n    raise\n")
    assert found.raised == (ANYTHING,)


def test_a_helper_that_breaks_the_contract_gets_no_escape_fact() -> None:
    """Its differences already stop PS101 when the seed has except blocks: nothing more is stated."""
    source = HEADER + "\n\ndef get_postgres_connection():\n    return psycopg2.connect(os.environ['DSN'])\n"
    sentences = helper_differences(source, "get_postgres_connection", contract_only=True)
    assert sentences
    assert not any(is_escape_fact(sentence) for sentence in sentences)
    assert Escapes.from_sentences(sentences) is None


def test_the_facts_read_back_from_their_sentences() -> None:
    for stated in (
        Escapes(raised=("builtins.KeyError",), caught=("psycopg2.OperationalError", "builtins.KeyError")),
        Escapes(raised=(ANYTHING,), caught=()),
        Escapes(raised=(), caught=(ANYTHING,)),
    ):
        assert Escapes.from_sentences(stated.sentences()) == stated
    assert Escapes.from_sentences(["it is decorated"]) is None
    assert not is_escape_fact("it is decorated")
    keyerror = Escapes(raised=("builtins.KeyError",), caught=())
    assert keyerror.sentences() == [MAY_RAISE + "builtins.KeyError", TRY_LETS_OUT + "none"]
