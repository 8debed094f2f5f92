"""Does a helper's ``psycopg2.connect(...)`` call pass what the shim would pass?

Half of "is the legacy helper equivalent to ``db_utils.get_postgres_connection``": the connection
parameters. The shim reads each one from ``POSTGRES_*`` (then libpq's ``PG*``) with a fixed default; a
helper that reads another variable, uses another default or passes an extra parameter (``connect_timeout``,
``sslmode``...) connects differently, and every such difference is spelled out for the report. The other
half (control flow: ``try``/``except``/``return None``) is :mod:`~codemods.legacy_helpers.equivalence`.

What the shim reads is not written here: it is ``db_utils.postgres.settings.LEGACY_PARAMETERS``, the table
the shim itself connects with, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import TYPE_CHECKING

import libcst as cst
from libcst.metadata import QualifiedName

from codemods.cst.literals import literal, literal_string
from codemods.cst.syntax import (
    code_of,
    has_parameters,
    module_level_functions,
    strip_docstring,
    suite_statements,
)

if TYPE_CHECKING:
    from db_utils.postgres.settings import LegacyParameter

_PARAMETER_ALIASES = {"database": "dbname"}
_ENV_GETTERS = frozenset({"os.environ.get", "os.getenv"})


@cache
def _shim_parameters() -> Mapping[str, LegacyParameter]:
    """The shim's legacy parameters by ``psycopg2.connect`` keyword, in the order the shim passes them.

    Imported on first use: importing ``db_utils`` loads SQLAlchemy and psycopg2, which merely importing
    the rules (``poolshift --help``, ``python -m libcst.tool``) should not pay for.
    """
    from db_utils.postgres.settings import LEGACY_PARAMETERS

    return {parameter.keyword: parameter for parameter in LEGACY_PARAMETERS}


class ConnectArgumentCheck:
    """Reads a helper's connect arguments in one module (its local names and parameter functions too).

    ``locals`` maps names assigned in the helper before it connects to their values, so ``**params`` and
    ``host=host`` can be followed; the subclass that walks the helper's body fills it in.
    """

    def __init__(self, module: cst.Module, qualified: Mapping[cst.CSTNode, object]) -> None:
        self.module = module
        self.qualified = qualified
        self.locals: dict[str, cst.BaseExpression] = {}

    def names_of(self, node: cst.CSTNode) -> set[str]:
        value = self.qualified.get(node, ())
        # MetadataWrapper.resolve hands out lazily computed values for this provider.
        names = value() if callable(value) else value
        return (
            {q.name for q in names if isinstance(q, QualifiedName)} if isinstance(names, Iterable) else set()
        )

    def connect_differences(self, connect: cst.Call) -> list[str]:
        # PS100 may already have pooled the call: db_utils.postgres.connect takes the same arguments.
        if not self.names_of(connect.func) & {"psycopg2.connect", "db_utils.postgres.connect"}:
            return [f"it calls {code_of(connect.func)}, not psycopg2.connect"]
        return self._argument_differences(connect)

    def _argument_differences(self, call: cst.Call) -> list[str]:
        parameters: dict[str, cst.BaseExpression] = {}
        differences: list[str] = []
        for argument in call.args:
            if argument.star == "**":
                expanded = self._dict_items(argument.value)
                if expanded is None:
                    differences.append(
                        f"its parameters come from `{code_of(argument.value)}`, which poolshift cannot read"
                    )
                    continue
                parameters.update(expanded)
            elif argument.keyword is not None:
                parameters[argument.keyword.value] = argument.value
            else:
                differences.append(f"it connects with a DSN/positional argument `{code_of(argument.value)}`")
        shim = _shim_parameters()
        for keyword, value in parameters.items():
            name = _PARAMETER_ALIASES.get(keyword, keyword)
            if name not in shim:
                differences.append(f"it passes {keyword}={code_of(value)} (the shim does not)")
                continue
            problem = self._parameter_problem(shim[name], value)
            if problem:
                differences.append(problem)
        given = {_PARAMETER_ALIASES.get(keyword, keyword) for keyword in parameters}
        differences.extend(
            f"it does not pass {name} (the shim reads {parameter.variable})"
            for name, parameter in shim.items()
            if name not in given
        )
        return differences

    def _dict_items(self, node: cst.BaseExpression) -> dict[str, cst.BaseExpression] | None:
        if isinstance(node, cst.Name) and node.value in self.locals:
            return self._dict_items(self.locals[node.value])
        if isinstance(node, cst.Dict):
            items: dict[str, cst.BaseExpression] = {}
            for element in node.elements:
                key = literal_string(element.key) if isinstance(element, cst.DictElement) else None
                if key is None:
                    return None
                items[key] = element.value
            return items
        if isinstance(node, cst.Call) and not node.args and isinstance(node.func, cst.Name):
            target = [f for f in module_level_functions(self.module) if f.name.value == node.func.value]
            if len(target) == 1 and not has_parameters(target[0].params) and not target[0].decorators:
                body = strip_docstring(suite_statements(target[0].body))
                if len(body) == 1 and isinstance(body[0], cst.SimpleStatementLine):
                    small = body[0].body[0]
                    if isinstance(small, cst.Return) and small.value is not None:
                        return self._dict_items(small.value)
        return None

    def _parameter_problem(self, parameter: LegacyParameter, value: cst.BaseExpression) -> str | None:
        name, variable, libpq_variable, default = parameter
        if isinstance(value, cst.Name) and value.value in self.locals:
            value = self.locals[value.value]
        value = self._unwrap_conversion(name, value)
        lookup = self._env_lookup(value)
        if lookup is None:
            return f"{name} is `{code_of(value)}`; the shim reads {variable} (default {default!r})"
        read_variable, fallback = lookup
        if read_variable != variable:
            return f"{name} is read from {read_variable}; the shim reads {variable}"
        if fallback is not None:
            # The shim's own chain: POSTGRES_X, then libpq's PGX, then its default.
            nested = self._env_lookup(self._unwrap_conversion(name, fallback))
            if nested is not None and nested[0] == libpq_variable:
                fallback = nested[1]
        if not _same_default(name, fallback, default):
            shown = code_of(fallback) if fallback is not None else "none"
            return f"{name} defaults to {shown}; the shim's default is {default!r}"
        return None

    def _unwrap_conversion(self, name: str, value: cst.BaseExpression) -> cst.BaseExpression:
        if (
            isinstance(value, cst.Call)
            and len(value.args) == 1
            and value.args[0].keyword is None
            and not value.args[0].star
            and self.names_of(value.func)
            & ({"builtins.int", "builtins.str"} if name == "port" else {"builtins.str"})
        ):
            return value.args[0].value
        return value

    def _env_lookup(self, value: cst.BaseExpression) -> tuple[str, cst.BaseExpression | None] | None:
        """("POSTGRES_HOST", default expression or None) for ``os.environ.get("POSTGRES_HOST", ...)``."""
        if not isinstance(value, cst.Call) or not self.names_of(value.func) & _ENV_GETTERS:
            return None
        positional = [argument for argument in value.args if argument.keyword is None and not argument.star]
        keywords = {argument.keyword.value: argument.value for argument in value.args if argument.keyword}
        variable = literal_string(positional[0].value) if positional else None
        if variable is None:
            return None
        fallback = positional[1].value if len(positional) > 1 else keywords.get("default")
        return variable, fallback


def _same_default(name: str, fallback: cst.BaseExpression | None, default: str | None) -> bool:
    value = literal(fallback)
    if name == "password":
        # libpq treats an empty password as "no password" (it then looks in PGPASSWORD/.pgpass).
        return fallback is None or value in ("", None)
    if name == "port":
        return value in ("5432", 5432)
    return value == default
