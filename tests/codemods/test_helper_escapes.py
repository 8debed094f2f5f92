"""What escapes a legacy helper that returns None on a failed connect (``legacy_helpers/escapes.py``).

Each helper keeps the contract (its analysis finds no difference), and the facts stated with it say which
exceptions still get out: the statements before its ``try`` and its ``except`` blocks (``MAY_RAISE``), and
from its ``try`` anything its ``except`` blocks do not name (``TRY_LETS_OUT``). Unknown means anything.
"""

from __future__ import annotations

import textwrap

import pytest

from codemods.legacy_helpers.equivalence import analyse_legacy_helpers, helper_differences
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
        ('port = int(os.environ.get("PORT", "5432"))', ("builtins.ValueError",)),
        ('port = int(os.getenv("PORT"))', ("builtins.TypeError", "builtins.ValueError")),  # int(None)
        ('port = int(float(os.getenv("PORT", "0")))', ("builtins.OverflowError", "builtins.ValueError")),
        ("port = int(PORT)", (ANYTHING,)),  # a value of unknown type: its __int__ may raise anything
        (
            'port = int(os.environ["PORT"])',
            ("builtins.KeyError", "builtins.ValueError"),
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


# What the example app's helper does: settings from a function, a handler that scrubs the password.
SETTINGS = """
def _settings():
    return {
        "host": os.environ.get("POSTGRES_HOST", "localhost"),
        "port": int(os.environ.get("POSTGRES_PORT", "5432")),
        "password": os.environ.get("POSTGRES_PASSWORD", ""),
    }
"""
SCRUBBING_HANDLER = [
    "message = str(error).strip()",
    'if settings["password"]:',
    '    message = message.replace(settings["password"], "***")',
    'log.error("cannot connect to %s:%s: %s", settings["host"], settings["port"], message)',
]


def _with_functions(functions: str, body: str) -> Escapes:
    source = HEADER + functions + "\n\ndef get_postgres_connection():\n" + textwrap.indent(body, "    ")
    sentences = helper_differences(source, "get_postgres_connection", contract_only=True)
    assert sentences is not None
    assert all(is_escape_fact(sentence) for sentence in sentences), sentences
    found = Escapes.from_sentences(sentences)
    assert found is not None
    return found


def _settings_try(*handler_body: str) -> str:
    lines = ["settings = _settings()", "try:", "    return psycopg2.connect(**settings)"]
    lines += ["except BaseException as error:", *(f"    {line}" for line in (*handler_body, "return None"))]
    return "\n".join(lines) + "\n"


def test_a_settings_function_is_followed_and_its_int_raises_value_error() -> None:
    found = _with_functions(SETTINGS, _settings_try(*SCRUBBING_HANDLER))
    assert found.raised == ("builtins.ValueError",)
    without_int = SETTINGS.replace('int(os.environ.get("POSTGRES_PORT", "5432"))', "PORT")
    assert _with_functions(without_int, _settings_try(*SCRUBBING_HANDLER)).nothing


@pytest.mark.parametrize(
    ("functions", "raised"),
    [
        # Arguments count: os.environ["PORT"] raises KeyError before the function runs.
        (
            "def _port(text):\n    return int(text)\n\n"
            'def _settings():\n    return {"port": _port(os.environ["PORT"])}\n',
            ("builtins.KeyError", "builtins.ValueError"),
        ),
        # Assignments, then a return; a default that is a constant.
        ('def _settings(prefix="PG"):\n    host = os.getenv("PGHOST")\n    return {"host": host}\n', ()),
        # Not analysable: a call of anything else, a statement that is no assignment, a decorator.
        ('def _settings():\n    return dict(host=os.getenv("PGHOST"))\n', (ANYTHING,)),
        ("def _settings():\n    if PORT:\n        return {}\n    return {}\n", (ANYTHING,)),
        ("import functools\n\n@functools.cache\ndef _settings():\n    return {}\n", (ANYTHING,)),
        # Called with the wrong number of arguments: a TypeError the analysis does not model.
        ("def _settings(prefix):\n    return {}\n", (ANYTHING,)),
        # Rebound at module level: which function runs is not known.
        ("def _settings():\n    return {}\n\n_settings = dict\n", (ANYTHING,)),
        # A cycle, and a chain deeper than MAX_FOLLOW_DEPTH: anything; three calls deep is followed.
        ("def _settings():\n    return _again()\n\ndef _again():\n    return _settings()\n", (ANYTHING,)),
        (
            "def _settings():\n    return _a()\n\ndef _a():\n    return _b()\n\ndef _b():\n    return {}\n",
            (),
        ),
        (
            "def _settings():\n    return _a()\n\ndef _a():\n    return _b()\n\n"
            "def _b():\n    return _c()\n\ndef _c():\n    return {}\n",
            (ANYTHING,),
        ),
    ],
)
def test_what_a_followed_function_raises(functions: str, raised: tuple[str, ...]) -> None:
    body = "settings = _settings()\n" + _try("except BaseException:")
    assert _with_functions(functions, body).raised == raised


@pytest.mark.parametrize(
    "handler_line",
    [
        'log.error("down: %s", settings["user"])',  # a key the dict does not have
        "message = error.pgerror",  # an attribute of the exception
        "if error:\n    pass",  # the truth value of an object may run its code
        'log.error("down: %s", later)\nlater = "x"',  # a local used before it is bound
    ],
)
def test_a_handler_that_may_raise_lets_anything_out(handler_line: str) -> None:
    found = _with_functions(SETTINGS, _settings_try(*handler_line.split("\n")))
    assert found.raised == (ANYTHING,)


def test_a_name_bound_in_one_branch_only_is_unbound_after_the_if() -> None:
    both = [
        'if settings["password"]:',
        '    note = "a"',
        "else:",
        '    note = "b"',
        "log.error(note.upper())",
    ]
    assert _with_functions(SETTINGS, _settings_try(*both)).raised == ("builtins.ValueError",)
    one = ['if settings["password"]:', '    note = "a"', "log.error(note.upper())"]
    assert _with_functions(SETTINGS, _settings_try(*one)).raised == (ANYTHING,)


def test_a_function_of_another_project_module_is_followed_through_its_import() -> None:
    """Resolved like discovery resolves helpers: absolute and relative imports, module by module."""
    config = "import os\n" + SETTINGS
    for import_line, call in (
        ("from app.config import _settings", "_settings()"),
        ("from .config import _settings as read_settings", "read_settings()"),
        ("import app.config", "app.config._settings()"),
    ):
        helper = (
            f"import psycopg2\n\n{import_line}\n\n\ndef get_postgres_connection():\n"
            f"    settings = {call}\n    try:\n        return psycopg2.connect(**settings)\n"
            "    except psycopg2.Error:\n        return None\n"
        )
        sources = {"app/db.py": helper, "app/config.py": config, "app/__init__.py": ""}
        names = {"app/db.py": "app.db", "app/config.py": "app.config", "app/__init__.py": "app"}
        contracts = analyse_legacy_helpers(
            sources, names, ("app.db.get_postgres_connection",), contract_only=True
        )
        found = Escapes.from_sentences(contracts["app.db.get_postgres_connection"])
        assert found == Escapes(("builtins.ValueError",), ("psycopg2.Error",)), import_line
        # The module is not part of the project: nothing is known about the function.
        del sources["app/config.py"]
        contracts = analyse_legacy_helpers(
            sources, names, ("app.db.get_postgres_connection",), contract_only=True
        )
        assert Escapes.from_sentences(contracts["app.db.get_postgres_connection"]) == Escapes(
            (ANYTHING,), ("psycopg2.Error",)
        )
