"""Does a helper's ``psycopg2.connect(...)`` call pass what the shim would pass?

Half of "is the legacy helper equivalent to ``db_utils.get_postgres_connection``": the connection
parameters. The shim reads each one from ``POSTGRES_*`` (then libpq's ``PG*``) with a fixed default; a
helper that reads another variable, uses another default or passes an extra parameter (``connect_timeout``,
``sslmode``...) connects differently, and every such difference is spelled out for the report. The other
half (control flow: ``try``/``except``/``return None``) is :mod:`~codemods.analysis.helper_equivalence`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import libcst as cst
from libcst.metadata import QualifiedName

from codemods.analysis.syntax import has_parameters, literal, module_level_functions, strip_docstring

# What db_utils.get_postgres_connection reads for each psycopg2.connect parameter, and its default.
_SHIM_PARAMETERS: dict[str, tuple[str, str, object]] = {
    # parameter: (POSTGRES_* variable, libpq variable, shim default)
    "host": ("POSTGRES_HOST", "PGHOST", "localhost"),
    "port": ("POSTGRES_PORT", "PGPORT", "5432"),
    "dbname": ("POSTGRES_DB", "PGDATABASE", "postgres"),
    "user": ("POSTGRES_USER", "PGUSER", "postgres"),
    "password": ("POSTGRES_PASSWORD", "PGPASSWORD", None),
}
_PARAMETER_ALIASES = {"database": "dbname"}
_ENV_GETTERS = frozenset({"os.environ.get", "os.getenv"})


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

    def code(self, node: cst.CSTNode) -> str:
        return " ".join(self.module.code_for_node(node).split())

    def connect_differences(self, connect: cst.Call) -> list[str]:
        if not self.names_of(connect.func) & {"psycopg2.connect"}:
            return [f"it calls {self.code(connect.func)}, not psycopg2.connect"]
        return self._argument_differences(connect)

    def _argument_differences(self, call: cst.Call) -> list[str]:
        parameters: dict[str, cst.BaseExpression] = {}
        differences: list[str] = []
        for argument in call.args:
            if argument.star == "**":
                expanded = self._dict_items(argument.value)
                if expanded is None:
                    differences.append(
                        f"its parameters come from `{self.code(argument.value)}`, which poolshift cannot read"
                    )
                    continue
                parameters.update(expanded)
            elif argument.keyword is not None:
                parameters[argument.keyword.value] = argument.value
            else:
                differences.append(
                    f"it connects with a DSN/positional argument `{self.code(argument.value)}`"
                )
        for keyword, value in parameters.items():
            name = _PARAMETER_ALIASES.get(keyword, keyword)
            if name not in _SHIM_PARAMETERS:
                differences.append(f"it passes {keyword}={self.code(value)} (the shim does not)")
                continue
            problem = self._parameter_problem(name, value)
            if problem:
                differences.append(problem)
        given = {_PARAMETER_ALIASES.get(keyword, keyword) for keyword in parameters}
        for name in _SHIM_PARAMETERS:
            if name not in given:
                variable = _SHIM_PARAMETERS[name][0]
                differences.append(f"it does not pass {name} (the shim reads {variable})")
        return differences

    def _dict_items(self, node: cst.BaseExpression) -> dict[str, cst.BaseExpression] | None:
        if isinstance(node, cst.Name) and node.value in self.locals:
            return self._dict_items(self.locals[node.value])
        if isinstance(node, cst.Dict):
            items: dict[str, cst.BaseExpression] = {}
            for element in node.elements:
                if not isinstance(element, cst.DictElement) or not isinstance(element.key, cst.SimpleString):
                    return None
                key = element.key.evaluated_value
                if not isinstance(key, str):
                    return None
                items[key] = element.value
            return items
        if isinstance(node, cst.Call) and not node.args and isinstance(node.func, cst.Name):
            target = [f for f in module_level_functions(self.module) if f.name.value == node.func.value]
            if len(target) == 1 and not has_parameters(target[0].params) and not target[0].decorators:
                body = strip_docstring(
                    list(target[0].body.body) if isinstance(target[0].body, cst.IndentedBlock) else []
                )
                if len(body) == 1 and isinstance(body[0], cst.SimpleStatementLine):
                    small = body[0].body[0]
                    if isinstance(small, cst.Return) and small.value is not None:
                        return self._dict_items(small.value)
        return None

    def _parameter_problem(self, name: str, value: cst.BaseExpression) -> str | None:
        variable, libpq_variable, default = _SHIM_PARAMETERS[name]
        if isinstance(value, cst.Name) and value.value in self.locals:
            value = self.locals[value.value]
        value = self._unwrap_conversion(name, value)
        lookup = self._env_lookup(value)
        if lookup is None:
            return f"{name} is `{self.code(value)}`; the shim reads {variable} (default {default!r})"
        read_variable, fallback = lookup
        if read_variable != variable:
            return f"{name} is read from {read_variable}; the shim reads {variable}"
        if fallback is not None:
            # The shim's own chain: POSTGRES_X, then libpq's PGX, then its default.
            nested = self._env_lookup(self._unwrap_conversion(name, fallback))
            if nested is not None and nested[0] == libpq_variable:
                fallback = nested[1]
        if not _same_default(name, fallback, default):
            shown = self.code(fallback) if fallback is not None else "none"
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
        if not positional or not isinstance(positional[0].value, cst.SimpleString):
            return None
        variable = positional[0].value.evaluated_value
        if not isinstance(variable, str):
            return None
        fallback = positional[1].value if len(positional) > 1 else keywords.get("default")
        return variable, fallback


def _same_default(name: str, fallback: cst.BaseExpression | None, default: object) -> bool:
    value = literal(fallback)
    if name == "password":
        # libpq treats an empty password as "no password" (it then looks in PGPASSWORD/.pgpass).
        return fallback is None or value in ("", None)
    if name == "port":
        return value in ("5432", 5432)
    return value == default
