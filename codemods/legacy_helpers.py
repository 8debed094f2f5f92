"""The runner's view of the project's home-grown ``get_postgres_connection`` helpers.

The runner needs four things before any file is transformed: the short names to prefilter on, the helpers
in the tree, whether each is equivalent to the shim, and (for the cleanup phase) every reference that is
left. The analyses themselves live in :mod:`codemods.analysis` (one job per module); this module is the
stable entry point the runner and the codemods contract name, so moving an analysis never breaks them.
"""

from __future__ import annotations

from codemods.analysis.helper_equivalence import analyse_legacy_helpers
from codemods.analysis.helper_names import (
    DEFAULT_HELPER_NAME,
    LEGACY_PREFILTER_NAMES,
    discover_legacy_helpers,
)
from codemods.analysis.helper_verdicts import DIFFERENCES_OPTION, TRUST_OPTION
from codemods.analysis.references import find_legacy_references

__all__ = [
    "DEFAULT_HELPER_NAME",
    "DIFFERENCES_OPTION",
    "LEGACY_PREFILTER_NAMES",
    "TRUST_OPTION",
    "analyse_legacy_helpers",
    "discover_legacy_helpers",
    "find_legacy_references",
]
