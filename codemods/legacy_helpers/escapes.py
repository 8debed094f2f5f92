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
  ``KeyError``; ``int(...)``: ``ValueError``, ``TypeError``) and its ``except`` blocks may raise, never
  caught. ``builtins.BaseException`` when it cannot tell (a call of anything else, a handler that
  re-raises): anything.
* :data:`TRY_LETS_OUT` + classes: its ``try`` lets out any exception that is not a subclass of these (the
  classes of its ``except`` blocks). What a connect raises is not modelled (the pooled drop-in adds its
  own configuration errors), so anything its ``except`` blocks do not name may come out of it.

The facts are sentences of the helper's contract analysis (:mod:`.equivalence`), so they reach the rules
through the runner's whole-tree analysis, and the result cache keys on them like on every other fact.
What a seed's handlers may catch is PS101's business (:mod:`codemods.rules.postgres_pooled.seed_proof`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import libcst as cst

from codemods.cst.literals import MISSING, literal, literal_string
from codemods.cst.syntax import simple_assignment, strip_docstring, suite_statements

ESCAPES_NOTHING = "nothing escapes it: every exception it can raise ends in an except that returns None"
MAY_RAISE = "it may let escape: "
TRY_LETS_OUT = "its try lets escape any exception but: "
#: The class that stands for "anything" (every exception is one).
ANYTHING = "builtins.BaseException"

_ENV_GETTERS = frozenset({"os.environ.get", "os.getenv"})
_NUMBER_CONVERSIONS = frozenset({"builtins.int", "builtins.float"})
_LOG_METHODS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "log"})

NamesOf = Callable[[cst.CSTNode], set[str]]


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


def escape_facts(function: cst.FunctionDef, names_of: NamesOf) -> list[str]:
    """The sentences for ``function``, a helper whose contract :mod:`.equivalence` has shown.

    Its body is: local assignments, one ``try`` around the connect whose handlers log and return None,
    then at most ``return conn``/``return None``.
    """
    body = strip_docstring(suite_statements(function.body))
    tries = [statement for statement in body if isinstance(statement, cst.Try)]
    if len(tries) != 1:
        return Escapes((ANYTHING,), ()).sentences()
    attempt = tries[0]
    bound = _parameter_names(function.params)
    raised: set[str] = set()
    for statement in body[: body.index(attempt)]:
        assignment = simple_assignment(statement)
        if assignment is None:
            raised.add(ANYTHING)
            continue
        raised |= _raises(assignment[1], names_of, bound)
        bound.add(assignment[0])
    caught: list[str] = []
    for handler in attempt.handlers:
        handler_bound = bound | ({_handler_name(handler)} - {""})
        raised |= _handler_raises(handler, names_of, handler_bound)
        caught.extend(_handler_classes(handler, names_of))
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


def _handler_classes(handler: cst.ExceptHandler, names_of: NamesOf) -> list[str]:
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
        names = names_of(node)
        if len(names) == 1 and "." in next(iter(names)):
            classes.append(next(iter(names)))
    return classes


def _handler_raises(handler: cst.ExceptHandler, names_of: NamesOf, bound: set[str]) -> set[str]:
    """What the handler's own statements may raise: nothing for log calls of plain values and ``pass``
    before ``return None``; anything for the rest (a re-raise, a call of anything else...)."""
    statements = suite_statements(handler.body)
    if not statements or not _returns_none(statements[-1]):
        return {ANYTHING}
    raised: set[str] = set()
    for statement in statements[:-1]:
        if not isinstance(statement, cst.SimpleStatementLine):
            return {ANYTHING}
        for small in statement.body:
            if isinstance(small, cst.Pass):
                continue
            call = small.value if isinstance(small, cst.Expr) else None
            if isinstance(call, cst.Call) and _is_log_call(call):
                raised |= _arguments_raise(call.args, names_of, bound)
                continue
            return {ANYTHING}
    return raised


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


def _arguments_raise(arguments: Sequence[cst.Arg], names_of: NamesOf, bound: set[str]) -> set[str]:
    raised: set[str] = set()
    for argument in arguments:
        if argument.star:
            return {ANYTHING}
        raised |= _raises(argument.value, names_of, bound)
    return raised


def _raises(node: cst.BaseExpression, names_of: NamesOf, bound: set[str]) -> set[str]:
    """What evaluating ``node`` may raise: a few shapes are known, anything else may raise anything."""
    if _is_constant(node):
        return set()
    if isinstance(node, cst.Name):
        return set() if node.value in bound or names_of(node) else {ANYTHING}
    if isinstance(node, cst.Subscript):
        return _environ_item(node, names_of)
    if isinstance(node, cst.Call):
        return _call_raises(node, names_of, bound)
    parts = _parts(node)
    if parts is None:
        return {ANYTHING}
    return set().union(*(_raises(part, names_of, bound) for part in parts))


def _is_constant(node: cst.BaseExpression) -> bool:
    return (
        literal(node) is not MISSING
        or literal_string(node) is not None
        or isinstance(node, (cst.Float, cst.Imaginary))
        or (isinstance(node, cst.Name) and node.value in {"True", "False"})
    )


def _parts(node: cst.BaseExpression) -> list[cst.BaseExpression] | None:
    """The expressions a tuple, list, dict (string keys) or f-string evaluates, and nothing else; None
    for any other node, or one that may raise on its own (``*x``, a computed key, a format spec)."""
    plain: bool
    if isinstance(node, (cst.Tuple, cst.List)):
        parts = [element.value for element in node.elements]
        plain = not any(isinstance(element, cst.StarredElement) for element in node.elements)
    elif isinstance(node, cst.Dict):
        items = [item for item in node.elements if isinstance(item, cst.DictElement)]
        parts = [item.value for item in items]
        plain = len(items) == len(node.elements) and all(
            literal_string(item.key) is not None for item in items
        )
    elif isinstance(node, cst.FormattedString):
        # f"... {error}": formatting a name's value (a string, a number, the caught exception) cannot
        # raise; a call, an attribute or a format spec may.
        pieces = [part for part in node.parts if isinstance(part, cst.FormattedStringExpression)]
        parts = [part.expression for part in pieces]
        plain = all(isinstance(part.expression, cst.Name) and part.format_spec is None for part in pieces)
    else:
        return None
    return parts if plain else None


def _environ_item(node: cst.Subscript, names_of: NamesOf) -> set[str]:
    """``os.environ["NAME"]``: a ``KeyError`` when the variable is not set."""
    if (
        names_of(node.value) == {"os.environ"}
        and len(node.slice) == 1
        and isinstance(node.slice[0].slice, cst.Index)
        and literal_string(node.slice[0].slice.value) is not None
    ):
        return {"builtins.KeyError"}
    return {ANYTHING}


def _call_raises(call: cst.Call, names_of: NamesOf, bound: set[str]) -> set[str]:
    callee = names_of(call.func)
    if any(argument.star or argument.keyword is not None for argument in call.args):
        return {ANYTHING}
    values = [argument.value for argument in call.args]
    if callee <= _ENV_GETTERS and callee and 1 <= len(values) <= 2:
        # A string key and a string (or no) default: a string or None comes back, nothing is raised.
        if literal_string(values[0]) is not None and (
            len(values) == 1 or literal_string(values[1]) is not None or literal(values[1]) is None
        ):
            return set()
        return {ANYTHING}
    if callee <= _NUMBER_CONVERSIONS and callee and len(values) == 1:
        return {"builtins.TypeError", "builtins.ValueError"} | _raises(values[0], names_of, bound)
    return {ANYTHING}
