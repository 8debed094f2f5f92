"""Finding the legacy ``get_postgres_connection`` helpers and resolving names to them.

PS101, PS102 and PS901 (and the runner) must agree on what "a reference to the helper" is, so the
resolution lives here once: by LibCST's ``QualifiedNameProvider`` (imports, aliases, relative imports made
absolute), never by text matching.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from libcst.metadata import QualifiedName

from codemods.cst.syntax import module_level_functions, parse_or_none

DEFAULT_HELPER_NAME = "get_postgres_connection"


def absolute_name(name: str, package: str | None) -> str | None:
    """``..db.get_conn`` seen from package ``app.api`` -> ``app.db.get_conn`` (None if unresolvable)."""
    if not name.startswith("."):
        return name
    level = len(name) - len(name.lstrip("."))
    rest = name[level:]
    if package is None:
        return None
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    joined = ".".join([*base, rest]) if rest else ".".join(base)
    return joined or None


def resolve_helper(
    qualified_names: Iterable[QualifiedName],
    helpers: Sequence[str],
    module_name: str | None,
    package_name: str | None,
) -> tuple[str | None, bool]:
    """(helper FQN, ambiguous) for the qualified names of an expression.

    A module-level name of the helper's own module resolves to ``<module>.<name>``; a relative import
    is made absolute with the package. ``ambiguous`` is True when the name may be the helper *or*
    something else (e.g. imported, then reassigned): such a site is reported, never rewritten.
    """
    resolved: set[str] = set()
    for qualified in qualified_names:
        name = qualified.name
        if "<locals>" in name:
            resolved.add(name)
            continue
        if qualified.source.name == "LOCAL" and module_name:
            name = f"{module_name}.{name}"
        absolute = absolute_name(name, package_name)
        resolved.add(absolute if absolute is not None else name)
    matching = resolved.intersection(helpers)
    if not matching:
        return None, False
    return sorted(matching)[0], len(resolved) > 1


def prefilter_names(helpers: Sequence[str]) -> tuple[str, ...]:
    """The short names a file must mention to possibly define or refer to a helper (a text prefilter).

    The default name is always among them: discovery looks for it, whatever the configured helpers are.
    """
    return tuple(sorted({DEFAULT_HELPER_NAME, *(helper.rpartition(".")[2] for helper in helpers)}))


def discover_legacy_helpers(
    sources: Mapping[str, str], root_package_names: Mapping[str, str]
) -> tuple[str, ...]:
    """FQNs of every module-level ``def get_postgres_connection`` in ``sources`` (path -> text)."""
    found: set[str] = set()
    for path, text in sources.items():
        module_name = root_package_names.get(path)
        if not module_name or DEFAULT_HELPER_NAME not in text:
            continue
        module = parse_or_none(text)
        if module is None:
            continue
        for function in module_level_functions(module):
            if function.name.value == DEFAULT_HELPER_NAME:
                found.add(f"{module_name}.{DEFAULT_HELPER_NAME}")
    return tuple(sorted(found))
