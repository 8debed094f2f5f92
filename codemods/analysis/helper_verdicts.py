"""May calls of a legacy helper be routed to the shim? One cached verdict per helper, inside a rule.

PS101 and PS102 ask this for every helper call in a file. The answer comes from the runner's whole-tree
analysis when it passed one, else from the helper's definition in this file or next to it on disk, and
the user's ``trust_legacy_helpers`` opt-out overrides it. A helper whose definition cannot be found is
never trusted silently (``unknown-helper``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import libcst as cst

from codemods.analysis.helper_equivalence import helper_differences

#: Options key under which the runner may pass ``analyse_legacy_helpers``' result (FQN -> differences).
DIFFERENCES_OPTION = "legacy_helper_differences"
#: Options key for the user's opt-out: "I know my helper is equivalent to the shim".
TRUST_OPTION = "trust_legacy_helpers"


@dataclass(frozen=True)
class Verdict:
    """Whether calls to one helper may be routed to the shim; ``reason``/``message`` say why not."""

    equivalent: bool
    reason: str | None = None
    message: str = ""


class HelperVerdicts:
    """Per-file cache of helper verdicts for a rule (runner's analysis, the file itself, or the disk)."""

    def __init__(
        self,
        module: cst.Module,
        *,
        filename: str | None,
        module_name: str | None,
        extra: Mapping[str, object],
    ) -> None:
        self.module = module
        self.filename = filename
        self.module_name = module_name
        self.trusted = extra.get(TRUST_OPTION) is True
        given = extra.get(DIFFERENCES_OPTION)
        self.given: Mapping[str, Sequence[str]] = given if isinstance(given, Mapping) else {}
        self.cache: dict[str, Verdict] = {}

    def verdict(self, helper: str) -> Verdict:
        if helper not in self.cache:
            self.cache[helper] = self._compute(helper)
        return self.cache[helper]

    def _compute(self, helper: str) -> Verdict:
        differences = self._differences(helper)
        if differences is None:
            if self.trusted:
                return Verdict(True)
            return Verdict(
                False,
                "unknown-helper",
                f"the definition of {helper} was not found, so poolshift cannot show it connects like the "
                "shim (set trust_legacy_helpers = true in [tool.poolshift] if it does)",
            )
        if differences and not self.trusted:
            return Verdict(
                False, "custom-factory", f"{helper} differs from the shim: " + "; ".join(differences)
            )
        return Verdict(True)

    def _differences(self, helper: str) -> Sequence[str] | None:
        if helper in self.given:
            return self.given[helper]
        helper_module, _, function_name = helper.rpartition(".")
        if helper_module == self.module_name:
            return helper_differences(self.module.code, function_name)
        source = self._read_from_disk(helper_module)
        return helper_differences(source, function_name) if source is not None else None

    def _read_from_disk(self, helper_module: str) -> str | None:
        """The helper module's text, found next to this file (root = filename minus module path)."""
        if not self.filename or not self.module_name:
            return None
        path = Path(self.filename)
        depth = len(self.module_name.split("."))
        parts = path.with_suffix("").parts
        if path.name == "__init__.py":
            parts = parts[:-1]
        if len(parts) < depth:
            return None
        root = Path(*path.parts[: len(parts) - depth]) if len(parts) > depth else Path()
        relative = Path(*helper_module.split("."))
        for candidate in (root / relative.with_suffix(".py"), root / relative / "__init__.py"):
            try:
                return candidate.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
        return None
