"""Rule discovery: every ``PoolshiftRule`` subclass with a ``RULE_ID`` in this package is a rule.

Discovery (rather than a hand-kept list) keeps "one rule per module" honest: adding a rule is adding a
module, or a package when the rule needs private helpers (``postgres_pooled/``: the rule in its
``__init__``, its proofs beside it); two rules claiming one ID is an import-time error, not a silent
override. ``base`` and modules starting with ``_`` (shared bases) are not rules.
"""

from __future__ import annotations

import importlib
import pkgutil

from codemods.rules.base import PoolshiftRule, RuleOptions, Site

__all__ = ["PoolshiftRule", "RuleOptions", "Site", "all_rules"]


def all_rules() -> dict[str, type[PoolshiftRule]]:
    """Every rule by ID, in ID order (which is also the order rules run in, cleanup last)."""
    found: dict[str, type[PoolshiftRule]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        if module_info.name == "base" or module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, PoolshiftRule)
                and value.RULE_ID
                and value.__module__ == module.__name__
            ):
                if value.RULE_ID in found:
                    raise RuntimeError(f"rule ID {value.RULE_ID} is defined twice")
                found[value.RULE_ID] = value
    return dict(sorted(found.items(), key=lambda item: (item[1].RUNS_LAST, item[0])))
