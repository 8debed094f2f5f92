"""The codemods package imports only downward, and nothing in it imports in a cycle.

Read from the source with ``ast``, so every import counts: module level, inside functions and under
``TYPE_CHECKING`` alike (a cycle there is still a sign that two modules are one). Every module must sit
in a layer: a new module is placed deliberately, not by accident.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import codemods

PACKAGE_DIR = Path(codemods.__file__).parent
ROOT = PACKAGE_DIR.parent

#: Lowest first. A module may import its own layer and the ones below it, never one above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("codemods",),  # the package itself: its version, nothing else
    ("codemods.cst",),  # generic LibCST helpers
    ("codemods.suppressions",),  # `# poolshift: ignore` comments (rules ask, the transform marks)
    ("codemods.legacy_helpers",),  # facts about the project's own connection helpers
    ("codemods.rules",),  # the rule contract, private bases and one module (or package) per rule
    ("codemods.limits",),  # per-file size, time and memory guards (standard library only)
    ("codemods.transform",),  # one file's bytes through the rules
    ("codemods.first_pass", "codemods.detached"),  # the ast pass and read-only verdicts, before LibCST
    # what a run looks at (needles: which words a file's bytes contain)
    ("codemods.plan", "codemods.files", "codemods.project", "codemods.cache", "codemods.needles"),
    ("codemods.runner", "codemods.report"),  # phases, execution and writes; what the user reads
    # progress; scan's helper lines; rules; the PATHs grouped by configuration
    ("codemods.status", "codemods.helper_summary", "codemods.guide", "codemods.groups"),
    ("codemods.cli", "codemods.__main__"),  # the command line
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules_of(package_dir: Path) -> dict[str, Path]:
    return {module_name(path): path for path in sorted(package_dir.rglob("*.py"))}


MODULES = modules_of(PACKAGE_DIR)
DB_UTILS_MODULES = modules_of(ROOT / "db_utils")


def layer_of(module: str) -> int:
    """The index of the most specific layer holding ``module`` (``codemods`` alone is the package)."""
    matches = [
        (len(prefix), index)
        for index, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or (prefix != "codemods" and module.startswith(prefix + "."))
    ]
    if not matches:
        raise LookupError(f"{module} is in no layer of LAYERS; place it there")
    return max(matches)[1]


def imports_in(source: str, package: str, modules: dict[str, Path] = MODULES) -> set[str]:
    """The ``modules`` that ``source`` (a module of ``package``) imports, relative imports resolved."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else base)
    return {name for name in found if name in modules}


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        graph[module] = imports_in(path.read_text(encoding="utf-8"), package, modules) - {module}
    return graph


GRAPH = import_graph(MODULES)


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_downward(module: str) -> None:
    upward = sorted(name for name in GRAPH[module] if layer_of(name) > layer_of(module))
    assert not upward, f"{module} imports a layer above its own: {upward}"


def cycles_in(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(module: str, stack: list[str]) -> None:
        state[module] = "open"
        for name in sorted(graph[module]):
            if state.get(name) == "open":
                cycles.append([*stack[stack.index(name) :], name])
            elif name not in state:
                visit(name, [*stack, name])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


@pytest.mark.parametrize("graph", [GRAPH, import_graph(DB_UTILS_MODULES)], ids=["codemods", "db_utils"])
def test_no_import_cycles(graph: dict[str, set[str]]) -> None:
    cycles = cycles_in(graph)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_the_cycle_finder_finds_one() -> None:
    assert cycles_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_checker_sees_every_kind_of_import() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from codemods.runner import RunResult\n"
        "def f():\n"
        "    from . import plan\n"
        "    from .rules import base\n"
        "    import codemods.cli\n"
        "import libcst\n"
    )
    assert imports_in(source, "codemods") == {
        "codemods.runner",
        "codemods.plan",
        "codemods.rules.base",
        "codemods.cli",
    }
    assert "codemods.rules.postgres_pooled.seed_proof" in GRAPH["codemods.rules.postgres_pooled"]
    assert layer_of("codemods.rules.postgres_pooled.seed_proof") == layer_of("codemods.rules")
    assert layer_of("codemods.cli") > layer_of("codemods.runner") > layer_of("codemods.transform")


def test_db_utils_never_imports_codemods() -> None:
    """Migrated code imports only db_utils; the shim must not drag the migration engine in."""
    for path in sorted((ROOT / "db_utils").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            assert not any(name.split(".")[0] == "codemods" for name in names), path
