"""What differs from the shim for each legacy helper, seen from the file a rule is transforming.

PS101 and PS102 ask this for every helper call in a file. The answer comes from the runner's whole-tree
analysis when it passed one, else from the helper's definition in this file or next to it on disk. ``None``
means the definition was not found: the rules never take such a helper for equivalent silently. What a
rule does with the answer (reason codes, the user's trust opt-out) is the rule's business.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import libcst as cst

from codemods.legacy_helpers.equivalence import helper_differences
from codemods.legacy_helpers.escapes import ProjectModules


class HelperDifferences:
    """Per-file cache: each helper's differences from the shim (runner's analysis, this file, or the disk).

    With ``contract_only`` only the helper's contract counts (a connection, or None on a failed connect),
    not its connection parameters; ``known`` is then the runner's contract analysis.
    """

    def __init__(
        self,
        module: cst.Module,
        *,
        filename: str | None,
        module_name: str | None,
        known: Mapping[str, Sequence[str]],
        contract_only: bool = False,
    ) -> None:
        self.module = module
        self.filename = filename
        self.module_name = module_name
        self.known = known
        self.contract_only = contract_only
        self.cache: dict[str, Sequence[str] | None] = {}

    def of(self, helper: str) -> Sequence[str] | None:
        """What ``helper`` does differently from the shim (empty: nothing); None: definition not found."""
        if helper not in self.cache:
            self.cache[helper] = self._lookup(helper)
        return self.cache[helper]

    def _lookup(self, helper: str) -> Sequence[str] | None:
        if helper in self.known:
            return self.known[helper]
        helper_module, _, function_name = helper.rpartition(".")
        found = self._read(helper_module)
        if found is None:
            return None
        return helper_differences(
            found[0],
            function_name,
            contract_only=self.contract_only,
            project=ProjectModules(helper_module, found[1], self._read),
        )

    def _read(self, module_name: str) -> tuple[str, bool] | None:
        """A module's text and whether it is a package: this file's own, or read from the disk."""
        if module_name == self.module_name:
            return self.module.code, bool(self.filename and Path(self.filename).name == "__init__.py")
        return self._read_from_disk(module_name)

    def _read_from_disk(self, helper_module: str) -> tuple[str, bool] | None:
        """The module's text, found next to this file (root = filename minus module path)."""
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
                return candidate.read_text(encoding="utf-8"), candidate.name == "__init__.py"
            except (OSError, UnicodeDecodeError):
                continue
        return None
