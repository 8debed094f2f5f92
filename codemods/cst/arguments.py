"""Matching a call's visible arguments to a stdlib signature, without evaluating anything.

PS201 and PS301 rewrite a call only when its argument list is one the drop-in is shown to handle; to know
that, each needs to see which parameter every argument binds to (and when ``*args``/``**kwargs`` hide it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import libcst as cst


@dataclass
class BoundArguments:
    """A call's arguments matched against a known signature, as far as the source shows them."""

    values: dict[str, cst.BaseExpression] = field(default_factory=dict)
    has_star: bool = False
    problems: list[str] = field(default_factory=list)


def bind_arguments(
    call: cst.Call, positional: Sequence[str], keyword_only: Sequence[str] = ()
) -> BoundArguments:
    """Match ``call``'s visible arguments to parameter names, like Python would (without evaluating).

    Positions after a ``*args`` are unknown, so positional arguments are only bound up to the first star.
    """
    bound = BoundArguments()
    index = 0
    for arg in call.args:
        if arg.star:
            bound.has_star = True
        elif arg.keyword is not None:
            _bind_one(bound, arg.keyword.value, arg.value, (*positional, *keyword_only))
        elif not bound.has_star:
            if index < len(positional):
                _bind_one(bound, positional[index], arg.value, positional)
            else:
                bound.problems.append(f"more than {len(positional)} positional arguments")
            index += 1
    return bound


def _bind_one(bound: BoundArguments, name: str, value: cst.BaseExpression, known: Sequence[str]) -> None:
    if name not in known:
        bound.problems.append(f"unknown argument {name!r}")
    elif name in bound.values:
        bound.problems.append(f"argument {name!r} given twice")
    else:
        bound.values[name] = value
