"""PS100 postgres-connect: ``psycopg2.connect(...)`` -> ``db_utils.postgres.connect(...)``, arguments kept.

The first PostgreSQL phase. It pools the project's own connection recipe: a helper's ``connect_timeout``,
``sslmode``, variable names, ``load_dotenv()`` and settings modules stay exactly as written, and only the
call that opens the connection changes. ``db_utils.postgres.connect`` has ``psycopg2.connect``'s signature
and errors, keeps one pool per distinct set of parameters and hands what it cannot pool (asynchronous
connections) to psycopg2 unchanged; so no equivalence proof is needed and the rule rewrites wherever the
call resolves, inside helpers or anywhere else.

Name resolution, shadowing, import handling and the common reports are PS201's
(:class:`~codemods.rules._redirect.RedirectCallRule`). What is PS100's own: a literal truthy ``async_``
is left alone (an asynchronous connection is never pooled, so there is nothing to gain), a connection kept
by a long-lived object is migrated but said, and a call spelled through an attribute chain poolshift
cannot resolve (``self.m.psycopg2.connect(...)``) is reported instead of silently skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import libcst as cst
from libcst.helpers import get_full_name_for_node

from codemods.cst.arguments import bind_arguments
from codemods.rules._redirect import COMMON_REASON_CODES, RedirectCallRule
from codemods.rules.base import Verdict

#: psycopg2.connect(dsn=None, connection_factory=None, cursor_factory=None, **kwargs).
CONNECT_POSITIONAL = ("dsn", "connection_factory", "cursor_factory")
#: The spellings of psycopg2's asynchronous-connection flag (``async`` before Python 3.7 made it a keyword).
ASYNC_KEYWORDS = frozenset({"async_", "async"})


class PostgresConnectRule(RedirectCallRule):
    """PS100: route ``psycopg2.connect`` through the pooled drop-in ``db_utils.postgres.connect``."""

    RULE_ID = "PS100"
    NAME = "postgres-connect"
    DESCRIPTION = "psycopg2.connect(...) -> db_utils.postgres.connect(...), keeping every argument"
    SAFETY = "safe"
    PREFILTER = ("psycopg2",)
    REASON_CODES: ClassVar[Mapping[str, str]] = {
        **COMMON_REASON_CODES,
        "dynamic-callee": (
            "the function is reached through getattr or an attribute chain poolshift cannot resolve"
        ),
        "async-connection": "a literal truthy async_= asks for an asynchronous connection: never pooled",
        "long-lived-connection": (
            "migrated; the connection is stored on an object, a global or a class attribute, so it holds "
            "a pool slot for its whole life"
        ),
    }

    TARGETS = frozenset({"psycopg2.connect"})
    SOURCE_MODULES = frozenset({"psycopg2"})
    SHORT_NAME = "connect"
    REPLACEMENT_MODULE = "db_utils.postgres"
    VALUE_ADVICE = (
        "code that receives it may compare or patch it; pass db_utils.postgres.connect by hand if it is "
        "only called (the drop-in accepts the same arguments)"
    )
    DROP_IN_REACHES_STAND_INS = True

    def check_call(self, call: cst.Call) -> Verdict:
        # Any other keyword is a libpq parameter that **kwargs takes: only the named three can clash.
        named = [arg for arg in call.args if arg.keyword is None or arg.keyword.value in CONNECT_POSITIONAL]
        bound = bind_arguments(call.with_changes(args=named), CONNECT_POSITIONAL)
        if bound.problems:
            return Verdict(False, "unsupported-argument", "; ".join(bound.problems))
        flag = _async_flag(call)
        if flag is not None:
            return Verdict(
                False,
                "async-connection",
                f"{flag} asks for an asynchronous connection, which is never pooled; left as is",
            )
        where = self.stored_where(call)
        if where is None:
            return Verdict(True)
        return Verdict(
            True,
            "long-lived-connection",
            f"the connection is stored {where}: it holds a pool slot until it is closed; "
            "close it when done, or borrow one per unit of work",
        )

    def _check_unresolvable_call(self, call: cst.Call, star: bool) -> None:
        """Also report ``<something>.psycopg2.connect(...)``: a module reached through an object."""
        recorded = len(self.sites)
        super()._check_unresolvable_call(call, star)
        if len(self.sites) > recorded:
            return
        name = get_full_name_for_node(call.func) or ""
        if name == "psycopg2.connect" or name.endswith(".psycopg2.connect"):
            self.record(
                call,
                "reported",
                "dynamic-callee",
                f"`{name}` may be psycopg2.connect reached through an object or a parameter, which "
                "poolshift cannot resolve; call psycopg2.connect (or db_utils.postgres.connect) by name",
            )


def _async_flag(call: cst.Call) -> str | None:
    """``async_=True`` (or ``**{"async": 1}``) spelled as a truthy literal; a dynamic flag is not."""
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value in ASYNC_KEYWORDS:
            if _truthy_literal(arg.value):
                return f"{arg.keyword.value}={cst.Module([]).code_for_node(arg.value)}"
        elif arg.star == "**" and isinstance(arg.value, cst.Dict):
            for element in arg.value.elements:
                if (
                    isinstance(element, cst.DictElement)
                    and isinstance(element.key, cst.SimpleString)
                    and element.key.evaluated_value in ASYNC_KEYWORDS
                    and _truthy_literal(element.value)
                ):
                    return f"{element.key.evaluated_value!s}={cst.Module([]).code_for_node(element.value)}"
    return None


def _truthy_literal(value: cst.BaseExpression) -> bool:
    if isinstance(value, cst.Name):
        return value.value == "True"
    if isinstance(value, cst.Integer):
        return value.evaluated_value != 0
    return False
