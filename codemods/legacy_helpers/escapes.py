"""Which exceptions can escape a legacy helper that returns None when it cannot connect?

PS101 moves the helper's call from before the seed's ``try`` into the pooled block, inside that ``try``.
An exception the helper lets out went to the caller before; now the seed's ``except`` blocks see it. A
helper ``try: return psycopg2.connect(os.environ["DSN"]) except psycopg2.OperationalError: return None``
lets out a ``KeyError`` (the variable is missing) and a ``psycopg2.ProgrammingError`` (an invalid DSN),
and an ``except Exception: return X`` in the seed would turn that misconfiguration into a silent ``X``.

This module states, for a helper that keeps the contract (one ``try`` around the connect whose ``except``
blocks return None; :mod:`.equivalence` checks that shape), what can still escape it:

* :data:`ESCAPES_NOTHING`: every exception it can raise ends in an ``except`` (bare, ``BaseException``)
  that returns None, and nothing before its ``try`` can raise.
* :data:`MAY_RAISE` + classes: what its statements before the ``try`` (``dsn = os.environ["DSN"]``: a
  ``KeyError``; ``int(...)`` of a string: ``ValueError``) and its ``except`` blocks may raise, never
  caught. ``builtins.BaseException`` when it cannot tell (a call of anything else, a handler that
  re-raises): anything.

A call of a project function (``settings = _settings()``, the helper's own module or one it imports,
resolved like discovery resolves helpers) is followed when that function is only assignments and a
``return`` of such expressions: it raises what its body and its arguments raise, and its value is known
as far as a dict display's keys (``settings["host"]`` then raises nothing). Deeper than
:data:`MAX_FOLLOW_DEPTH` calls, a cycle, or any other body: anything.
* :data:`TRY_LETS_OUT` + classes: its ``try`` lets out any exception that is not a subclass of these (the
  classes of its ``except`` blocks). What a connect raises is not modelled (the pooled drop-in adds its
  own configuration errors), so anything its ``except`` blocks do not name may come out of it.

The facts are sentences of the helper's contract analysis (:mod:`.equivalence`), so they reach the rules
through the runner's whole-tree analysis, and the result cache keys on them like on every other fact.
What a seed's handlers may catch is PS101's business (:mod:`codemods.rules.postgres_pooled.seed_proof`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeAlias

import libcst as cst
from libcst.metadata import GlobalScope, MetadataWrapper, QualifiedName, QualifiedNameProvider, ScopeProvider

from codemods.cst.literals import MISSING, literal, literal_string
from codemods.cst.syntax import (
    module_level_functions,
    parse_or_none,
    simple_assignment,
    strip_docstring,
    suite_statements,
)
from codemods.legacy_helpers.discovery import absolute_names

ESCAPES_NOTHING = "nothing escapes it: every exception it can raise ends in an except that returns None"
MAY_RAISE = "it may let escape: "
TRY_LETS_OUT = "its try lets escape any exception but: "
#: The class that stands for "anything" (every exception is one).
ANYTHING = "builtins.BaseException"

_ENV_GETTERS = frozenset({"os.environ.get", "os.getenv"})
_NUMBER_CONVERSIONS = frozenset({"builtins.int", "builtins.float"})
_LOG_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "log"})
#: ``str`` methods that take no argument or only strings and raise nothing on those.
_STR_METHODS = {"strip": 0, "lstrip": 0, "rstrip": 0, "lower": 0, "upper": 0, "replace": 2}
#: What ``int()``/``float()`` of a value of each kind may raise (of anything else: whatever its
#: ``__int__`` raises): ``int("x")``, ``int(None)``, ``int(float("nan"))``, ``int(float("inf"))``.
_CONVERSION_ERRORS = {
    "str": {"builtins.ValueError"},
    "str-or-none": {"builtins.TypeError", "builtins.ValueError"},
    "number": {"builtins.ValueError", "builtins.OverflowError"},
    "none": {"builtins.TypeError"},
}
#: How many calls deep a pre-try statement's project function calls are followed.
MAX_FOLLOW_DEPTH = 3

# What an expression's value is known to be, as far as raising goes: a str, a str or None, a number
# (int, float, bool), None, a dict display (its string keys and their values), or anything else.
STR, OPTIONAL_STR, NUMBER, NONE, OTHER = "str", "str-or-none", "number", "none", "other"
Kind: TypeAlias = str | tuple[tuple[str, "Kind"], ...]
#: Kinds whose truth value, ``str()`` and formatting raise nothing.
_PLAIN = frozenset({STR, OPTIONAL_STR, NUMBER, NONE})

#: A project module's text and whether it is a package's ``__init__``, by module name; None: not found.
ModuleReader = Callable[[str], "tuple[str, bool] | None"]


@dataclass(frozen=True)
class Escapes:
    """What a helper lets out: ``raised`` (escape whatever happens) and, from its ``try``, anything that
    is not a subclass of one of ``caught``. Classes are qualified names (``builtins.KeyError``)."""

    raised: tuple[str, ...]
    caught: tuple[str, ...]

    @property
    def nothing(self) -> bool:
        return not self.raised and ANYTHING in self.caught

    def sentences(self) -> list[str]:
        if self.nothing:
            return [ESCAPES_NOTHING]
        stated = [MAY_RAISE + ", ".join(self.raised)] if self.raised else []
        if ANYTHING not in self.caught:
            stated.append(TRY_LETS_OUT + (", ".join(self.caught) or "none"))
        return stated

    @classmethod
    def from_sentences(cls, sentences: Iterable[str]) -> Escapes | None:
        """The facts back from the contract analysis' sentences; None when none is stated."""
        raised: tuple[str, ...] = ()
        caught: tuple[str, ...] = (ANYTHING,)
        stated = False
        for sentence in sentences:
            if sentence == ESCAPES_NOTHING:
                stated = True
            elif sentence.startswith(MAY_RAISE):
                raised, stated = _names(sentence.removeprefix(MAY_RAISE)), True
            elif sentence.startswith(TRY_LETS_OUT):
                caught, stated = _names(sentence.removeprefix(TRY_LETS_OUT)), True
        return cls(raised, caught) if stated else None


def is_escape_fact(sentence: str) -> bool:
    """Whether a contract sentence is one of this module's facts (not a difference from the contract)."""
    return sentence == ESCAPES_NOTHING or sentence.startswith((MAY_RAISE, TRY_LETS_OUT))


def _names(text: str) -> tuple[str, ...]:
    return tuple(name for name in text.split(", ") if name and name != "none")


class ModuleScope:
    """One parsed module as the analysis sees it: qualified names, module-level bindings, its package."""

    def __init__(self, module: cst.Module, module_name: str | None, is_package: bool) -> None:
        self.module = module
        self.module_name = module_name
        self.package = module_name if is_package or module_name is None else module_name.rpartition(".")[0]
        self.wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
        self.qualified: Mapping[cst.CSTNode, object] = self.wrapper.resolve(QualifiedNameProvider)

    @cached_property
    def global_scope(self) -> GlobalScope | None:
        """Resolved on first use: only a call to follow needs it."""
        first = self.module.body[0] if self.module.body else None
        scope = self.wrapper.resolve(ScopeProvider).get(first) if first is not None else None
        return scope if isinstance(scope, GlobalScope) else None

    def qualified_names(self, node: cst.CSTNode) -> Collection[QualifiedName]:
        value = self.qualified.get(node, ())
        names = value() if callable(value) else value  # MetadataWrapper.resolve hands out lazy values
        return {q for q in names if isinstance(q, QualifiedName)} if isinstance(names, Iterable) else set()

    def names_of(self, node: cst.CSTNode) -> set[str]:
        return {qualified.name for qualified in self.qualified_names(node)}

    def function(self, name: str) -> cst.FunctionDef | None:
        """The module-level function ``name`` when nothing else at module level binds that name."""
        found = [f for f in module_level_functions(self.module) if f.name.value == name]
        if len(found) != 1 or self.global_scope is None or len(self.global_scope.assignments[name]) != 1:
            return None
        return found[0]


@dataclass
class ProjectModules:
    """Where the helper lives and how to read the project's other modules (None: only its own)."""

    module_name: str | None = None
    is_package: bool = False
    read: ModuleReader | None = None
    loaded: dict[str, ModuleScope | None] = field(default_factory=dict)

    def scope(self, module_name: str) -> ModuleScope | None:
        if module_name not in self.loaded:
            found = self.read(module_name) if self.read is not None else None
            parsed = parse_or_none(found[0]) if found is not None else None
            self.loaded[module_name] = (
                ModuleScope(parsed, module_name, found[1]) if parsed is not None and found else None
            )
        return self.loaded[module_name]


def escape_facts(function: cst.FunctionDef, scope: ModuleScope, project: ProjectModules) -> list[str]:
    """The sentences for ``function``, a helper whose contract :mod:`.equivalence` has shown.

    Its body is: local assignments, one ``try`` around the connect whose handlers log and return None,
    then at most ``return conn``/``return None``.
    """
    body = strip_docstring(suite_statements(function.body))
    tries = [statement for statement in body if isinstance(statement, cst.Try)]
    if len(tries) != 1:
        return Escapes((ANYTHING,), ()).sentences()
    attempt = tries[0]
    evaluator = _Evaluator(scope, project, (f"{scope.module_name or ''}.{function.name.value}",))
    env: dict[str, Kind] = dict.fromkeys(_parameter_names(function.params), OTHER)
    raised = evaluator.statements(body[: body.index(attempt)], env)
    caught: list[str] = []
    for handler in attempt.handlers:
        handler_env = {**env, **({_handler_name(handler): OTHER} if _handler_name(handler) else {})}
        raised |= evaluator.handler(handler, handler_env)
        caught.extend(_handler_classes(handler, scope))
    if attempt.orelse is not None or attempt.finalbody is not None:
        raised.add(ANYTHING)
    if ANYTHING in raised:
        raised = {ANYTHING}
    return Escapes(tuple(sorted(raised)), tuple(dict.fromkeys(caught))).sentences()


def _parameter_names(params: cst.Parameters) -> set[str]:
    names = {p.name.value for p in (*params.posonly_params, *params.params, *params.kwonly_params)}
    for star in (params.star_arg, params.star_kwarg):
        if isinstance(star, cst.Param):
            names.add(star.name.value)
    return names


def _handler_name(handler: cst.ExceptHandler) -> str:
    name = handler.name.name if handler.name is not None else None
    return name.value if isinstance(name, cst.Name) else ""


def _handler_classes(handler: cst.ExceptHandler, scope: ModuleScope) -> list[str]:
    """The classes whose exceptions this handler turns into ``return None``: a class named by anything but
    one plain qualified name (``DBError = psycopg2.Error``...) is left out, so more is taken to escape."""
    if handler.type is None:
        return [ANYTHING]
    types = (
        [element.value for element in handler.type.elements]
        if isinstance(handler.type, cst.Tuple)
        else [handler.type]
    )
    classes: list[str] = []
    for node in types:
        names = scope.names_of(node)
        if len(names) == 1 and "." in next(iter(names)):
            classes.append(next(iter(names)))
    return classes


def _anything() -> tuple[set[str], Kind]:
    return {ANYTHING}, OTHER


class _Evaluator:
    """What statements and expressions of one module may raise, and what their values are known to be.

    ``following`` names the functions being followed (the helper first), against cycles and for depth.
    """

    def __init__(self, scope: ModuleScope, project: ProjectModules, following: tuple[str, ...]) -> None:
        self.scope = scope
        self.project = project
        self.following = following

    def statements(self, statements: Sequence[cst.BaseStatement], env: dict[str, Kind]) -> set[str]:
        """Simple assignments (bound in ``env`` as they run); anything else may raise anything."""
        raised: set[str] = set()
        for statement in statements:
            assignment = simple_assignment(statement)
            if assignment is None:
                return {ANYTHING}
            found, kind = self.value(assignment[1], env)
            raised |= found
            env[assignment[0]] = kind
        return raised

    def handler(self, handler: cst.ExceptHandler, env: dict[str, Kind]) -> set[str]:
        """What an ``except`` block runs before its final ``return None``: log calls, ``pass``, simple
        assignments and ``if`` around them; anything else (a re-raise, a call...) may raise anything."""
        statements = suite_statements(handler.body)
        if not statements or not _returns_none(statements[-1]):
            return {ANYTHING}
        return self._logging_block(statements[:-1], env)

    def _logging_block(self, statements: Sequence[cst.BaseStatement], env: dict[str, Kind]) -> set[str]:
        raised: set[str] = set()
        for statement in statements:
            if isinstance(statement, cst.If):
                raised |= self._if(statement, env)
                continue
            if not isinstance(statement, cst.SimpleStatementLine):
                return {ANYTHING}
            for small in statement.body:
                raised |= self._small(small, env)
        return raised

    def _small(self, small: cst.BaseSmallStatement, env: dict[str, Kind]) -> set[str]:
        if isinstance(small, cst.Pass):
            return set()
        if (
            isinstance(small, cst.Assign)
            and len(small.targets) == 1
            and isinstance(small.targets[0].target, cst.Name)
        ):
            found, kind = self.value(small.value, env)
            env[small.targets[0].target.value] = kind
            return found
        call = small.value if isinstance(small, cst.Expr) else None
        if isinstance(call, cst.Call) and _is_log_call(call):
            raised: set[str] = set()
            for argument in call.args:
                if argument.star:
                    return {ANYTHING}
                raised |= self.value(argument.value, env)[0]
            return raised
        return {ANYTHING}

    def _if(self, statement: cst.If, env: dict[str, Kind]) -> set[str]:
        """Its test (whose truth value must not run user code) and both branches; a name is bound after
        it only when both branches bind it (an ``elif`` is an ``if`` in the ``else``)."""
        raised, kind = self.value(statement.test, env)
        if kind not in _PLAIN and not isinstance(kind, tuple):
            return {ANYTHING}
        taken = dict(env)
        raised |= self._logging_block(suite_statements(statement.body), taken)
        other = dict(env)
        if isinstance(statement.orelse, cst.If):
            raised |= self._if(statement.orelse, other)
        elif isinstance(statement.orelse, cst.Else):
            raised |= self._logging_block(suite_statements(statement.orelse.body), other)
        env.clear()
        env.update(
            {
                name: (bound if other[name] == bound else OTHER)
                for name, bound in taken.items()
                if name in other
            }
        )
        return raised

    def value(self, node: cst.BaseExpression, env: Mapping[str, Kind]) -> tuple[set[str], Kind]:
        """What evaluating ``node`` may raise, and its kind: a few shapes are known, anything else may raise
        anything."""
        constant = _constant_kind(node)
        if constant is not None:
            return set(), constant
        if isinstance(node, cst.Name):
            return self._name(node, env)
        if isinstance(node, (cst.Subscript, cst.Call, cst.Dict)):
            return self._operation(node, env)
        parts = _parts(node)
        if parts is None:
            return _anything()
        raised: set[str] = set()
        for part in parts:
            raised |= self.value(part, env)[0]
        return raised, STR if isinstance(node, cst.FormattedString) else OTHER

    def _name(self, node: cst.Name, env: Mapping[str, Kind]) -> tuple[set[str], Kind]:
        if node.value in env:
            return set(), env[node.value]
        names = self.scope.names_of(node)
        # A module-level name or a builtin (bound when the helper runs); a local not bound yet is not.
        return (set(), OTHER) if names and not any("<locals>" in n for n in names) else _anything()

    def _operation(
        self, node: cst.Subscript | cst.Call | cst.Dict, env: Mapping[str, Kind]
    ) -> tuple[set[str], Kind]:
        if isinstance(node, cst.Subscript):
            return self._subscript(node, env)
        if isinstance(node, cst.Call):
            return self._call(node, env)
        return self._dict(node, env)

    def _dict(self, node: cst.Dict, env: Mapping[str, Kind]) -> tuple[set[str], Kind]:
        raised: set[str] = set()
        keys: dict[str, Kind] = {}
        for element in node.elements:
            key = literal_string(element.key) if isinstance(element, cst.DictElement) else None
            if key is None:
                return _anything()
            found, kind = self.value(element.value, env)
            raised |= found
            keys[key] = kind
        return raised, tuple(keys.items())

    def _subscript(self, node: cst.Subscript, env: Mapping[str, Kind]) -> tuple[set[str], Kind]:
        """``os.environ["NAME"]``: a ``KeyError`` when the variable is not set; ``d["key"]`` of a dict
        display that has that key: nothing."""
        key = (
            literal_string(node.slice[0].slice.value)
            if len(node.slice) == 1 and isinstance(node.slice[0].slice, cst.Index)
            else None
        )
        if key is None:
            return _anything()
        if self.scope.names_of(node.value) == {"os.environ"}:
            return {"builtins.KeyError"}, STR
        raised, kind = self.value(node.value, env)
        if isinstance(kind, tuple) and key in dict(kind):
            return raised, dict(kind)[key]
        return _anything()

    def _call(self, call: cst.Call, env: Mapping[str, Kind]) -> tuple[set[str], Kind]:
        if any(argument.star or argument.keyword is not None for argument in call.args):
            return _anything()
        values = [argument.value for argument in call.args]
        known = self._builtin_call(call, values, env)
        return known if known is not None else self._follow(call, values, env)

    def _builtin_call(
        self, call: cst.Call, values: Sequence[cst.BaseExpression], env: Mapping[str, Kind]
    ) -> tuple[set[str], Kind] | None:
        """An environment read, ``int()``/``float()``/``str()`` or a ``str`` method; None: another call."""
        callee = self.scope.names_of(call.func)
        if callee and callee <= _ENV_GETTERS and 1 <= len(values) <= 2:
            return _env_read(values)
        if callee and callee <= _NUMBER_CONVERSIONS and len(values) == 1:
            raised, kind = self.value(values[0], env)
            converting = _CONVERSION_ERRORS.get(kind) if isinstance(kind, str) else None
            return (raised | converting, NUMBER) if converting is not None else _anything()
        if callee == {"builtins.str"} and len(values) == 1:
            # Like formatting in an f-string: a name's value (the caught exception too) or a plain value.
            raised, kind = self.value(values[0], env)
            return (raised, STR) if kind in _PLAIN or isinstance(values[0], cst.Name) else _anything()
        if isinstance(call.func, cst.Attribute) and _STR_METHODS.get(call.func.attr.value) == len(values):
            raised, kind = self.value(call.func.value, env)
            for argument in values:
                found, argument_kind = self.value(argument, env)
                raised, kind = raised | found, kind if argument_kind == STR else OTHER
            return (raised, STR) if kind == STR else _anything()
        return None

    def _follow(
        self, call: cst.Call, values: Sequence[cst.BaseExpression], env: Mapping[str, Kind]
    ) -> tuple[set[str], Kind]:
        """A project function's call: what its arguments and its body raise, and the kind it returns."""
        target = self._resolve(call.func)
        if target is None or target[2] in self.following or len(self.following) > MAX_FOLLOW_DEPTH:
            return _anything()
        scope, function, name = target
        parameters = _plain_parameters(function, len(values))
        if parameters is None:
            return _anything()
        raised: set[str] = set()
        local: dict[str, Kind] = {}
        for parameter, argument in zip(parameters, values, strict=False):
            found, kind = self.value(argument, env)
            raised |= found
            local[parameter] = kind
        local.update(dict.fromkeys(parameters[len(values) :], OTHER))
        body = strip_docstring(suite_statements(function.body))
        if not body or not isinstance(body[-1], cst.SimpleStatementLine) or len(body[-1].body) != 1:
            return _anything()
        returned = body[-1].body[0]
        if not isinstance(returned, cst.Return) or returned.value is None:
            return _anything()
        inner = _Evaluator(scope, self.project, (*self.following, name))
        raised |= inner.statements(body[:-1], local)
        found, kind = inner.value(returned.value, local)
        return raised | found, kind

    def _resolve(self, func: cst.BaseExpression) -> tuple[ModuleScope, cst.FunctionDef, str] | None:
        """The project function a callee names, resolved as discovery resolves helpers; None if unsure."""
        names = absolute_names(self.scope.qualified_names(func), self.scope.module_name, self.scope.package)
        if len(names) != 1:
            return None
        module_name, _, function_name = next(iter(names)).rpartition(".")
        if "<locals>" in module_name:
            return None
        here = self.scope.module_name or ""
        scope = (
            self.scope if module_name == here else self.project.scope(module_name) if module_name else None
        )
        function = scope.function(function_name) if scope is not None else None
        if scope is None or function is None:
            return None
        return scope, function, f"{module_name}.{function_name}"


def _env_read(values: Sequence[cst.BaseExpression]) -> tuple[set[str], Kind]:
    """``os.environ.get(key[, default])``: a string key and a string (or no, or None) default give a
    string (or None) and raise nothing."""
    if literal_string(values[0]) is None:
        return _anything()
    if len(values) == 2 and literal_string(values[1]) is not None:
        return set(), STR
    if len(values) == 1 or literal(values[1]) is None:
        return set(), OPTIONAL_STR
    return _anything()


def _plain_parameters(function: cst.FunctionDef, given: int) -> list[str] | None:
    """The parameter names when ``given`` positional arguments bind them all (the rest with constant
    defaults) and the function is plain (not async, not decorated); None otherwise."""
    params = function.params
    if function.asynchronous is not None or function.decorators:
        return None
    if params.kwonly_params or isinstance(params.star_arg, cst.Param) or params.star_kwarg is not None:
        return None
    every = [*params.posonly_params, *params.params]
    if given > len(every) or any(
        parameter.default is None or _constant_kind(parameter.default) is None for parameter in every[given:]
    ):
        return None
    return [parameter.name.value for parameter in every]


def _constant_kind(node: cst.BaseExpression) -> Kind | None:
    if literal_string(node) is not None:
        return STR
    if isinstance(node, cst.Name) and node.value in {"True", "False"}:
        return NUMBER
    if isinstance(node, (cst.Float, cst.Imaginary)):
        return NUMBER
    value = literal(node)
    if value is MISSING:
        return None
    if value is None:
        return NONE
    return NUMBER if isinstance(value, (int, float)) else OTHER


def _returns_none(statement: cst.BaseStatement) -> bool:
    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
        return False
    small = statement.body[0]
    return isinstance(small, cst.Return) and literal(small.value) is None


def _is_log_call(call: cst.Call) -> bool:
    """``print(...)`` or ``<name>.<log method>(...)``: a logger's handlers swallow their own errors."""
    func = call.func
    if isinstance(func, cst.Name):
        return func.value == "print"
    return (
        isinstance(func, cst.Attribute)
        and isinstance(func.value, cst.Name)
        and func.attr.value in _LOG_METHODS
    )


def _parts(node: cst.BaseExpression) -> list[cst.BaseExpression] | None:
    """The expressions a tuple, list or f-string evaluates, and nothing else; None for any other node,
    or one that may raise on its own (``*x``, a format spec)."""
    plain: bool
    if isinstance(node, (cst.Tuple, cst.List)):
        parts = [element.value for element in node.elements]
        plain = not any(isinstance(element, cst.StarredElement) for element in node.elements)
    elif isinstance(node, cst.FormattedString):
        # f"... {error}": formatting a name's value (a string, a number, the caught exception) cannot
        # raise; a call, an attribute or a format spec may.
        pieces = [part for part in node.parts if isinstance(part, cst.FormattedStringExpression)]
        parts = [part.expression for part in pieces]
        plain = all(isinstance(part.expression, cst.Name) and part.format_spec is None for part in pieces)
    else:
        return None
    return parts if plain else None
