"""Test helpers shared by every rule's tests: run rules on a snippet, check before/after fixtures.

Everything goes through :func:`codemods.transform.transform_bytes`, the same function the runner uses,
so a fixture that passes here behaves the same in ``poolshift migrate`` (encodings, BOM, CRLF included).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codemods.rules.base import PoolshiftRule, RuleOptions
from codemods.transform import FileResult, transform_bytes

__all__ = ["check_fixture", "fixture_cases", "load_options", "module_name_for", "run_rules"]

BOM = b"\xef\xbb\xbf"
DEFAULT_PATH = "app/module.py"
DEFAULT_MODULE = "app.module"


def module_name_for(path: str) -> tuple[str, str]:
    """(module, package) for a relative posix path, the way the runner computes them."""
    parts = path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def run_rules(
    source: str | bytes,
    rules: Sequence[type[PoolshiftRule]],
    *,
    path: str = DEFAULT_PATH,
    options: RuleOptions | None = None,
    module_name: str | None = DEFAULT_MODULE,
    dry_run: bool = False,
) -> FileResult:
    """Run ``rules`` on ``source`` (text is UTF-8 encoded) as if it were the file ``path``.

    ``module_name`` defaults to ``app.module`` for the default path and is derived from ``path`` when a
    different path is given with the default module name.
    """
    data = source.encode("utf-8") if isinstance(source, str) else source
    if module_name == DEFAULT_MODULE and path != DEFAULT_PATH:
        module_name = module_name_for(path)[0]
    package_name = None
    if module_name is not None:
        is_package = path.endswith("/__init__.py") or path == "__init__.py"
        package_name = module_name if is_package else module_name.rpartition(".")[0]
    return transform_bytes(
        data,
        rules,
        path=path,
        options=options or RuleOptions(),
        dry_run=dry_run,
        module_name=module_name,
        package_name=package_name,
    )


def fixture_cases(case_dir: Path) -> list[str]:
    """Case names in ``case_dir`` (every ``<case>.before.py``), sorted, for ``pytest.mark.parametrize``."""
    return sorted(path.name.removesuffix(".before.py") for path in case_dir.glob("*.before.py"))


def load_options(case_dir: Path, case: str, default: RuleOptions | None = None) -> tuple[RuleOptions, str]:
    """RuleOptions from ``<case>.options.json`` (merged over ``default``) and the path to run the case as.

    Besides RuleOptions fields the JSON may hold ``"path"`` (relative posix path the snippet pretends to
    be, default ``app/module.py``) so relative-import cases can live in a package. The fields about legacy
    helpers (``legacy_helper_differences``, ``legacy_helper_contracts``) sit in an ``"extra"`` table.
    """
    options = default or RuleOptions()
    path = DEFAULT_PATH
    options_file = case_dir / f"{case}.options.json"
    if options_file.exists():
        raw: dict[str, Any] = json.loads(options_file.read_text(encoding="utf-8"))
        path = raw.pop("path", path)
        for key in ("legacy_helpers", "remaining_legacy_references"):
            if key in raw:
                raw[key] = tuple(raw[key])
        helper_knowledge: dict[str, Any] = raw.pop("extra", {})
        options = dataclasses.replace(
            options,
            legacy_helpers=raw.pop("legacy_helpers", options.legacy_helpers),
            remaining_legacy_references=raw.pop(
                "remaining_legacy_references", options.remaining_legacy_references
            ),
            **helper_knowledge,  # an unknown key is a TypeError: a typo never passes silently
        )
        if raw:
            raise ValueError(f"{options_file}: unknown keys {sorted(raw)}")
    return options, path


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _assert_same_transform(
    rule: type[PoolshiftRule],
    before: bytes,
    expected: bytes,
    *,
    variant: str,
    path: str,
    options: RuleOptions,
) -> None:
    result = run_rules(before, [rule], path=path, options=options)
    assert result.error is None, f"[{variant}] {result.error}: {result.error_detail}"
    actual = result.output if result.output is not None else before
    assert actual == expected, f"[{variant}] output differs from the expected bytes"


def check_fixture(
    rule: type[PoolshiftRule], case_dir: Path, case: str, options: RuleOptions | None = None
) -> None:
    """Check one fixture case; see the module docstring of the contract for the file layout.

    Asserts: the output equals ``<case>.after.py`` (or the input when there is no after file); the output
    parses (transform_bytes rolls back otherwise, so no error is allowed); a second run changes nothing;
    the CRLF and UTF-8-BOM variants of the input give the same variants of the output; every site in
    ``<case>.sites.json`` was recorded.
    """
    options, path = load_options(case_dir, case, options)
    before = (case_dir / f"{case}.before.py").read_bytes()
    after_file = case_dir / f"{case}.after.py"
    expected = after_file.read_bytes() if after_file.exists() else before

    result = run_rules(before, [rule], path=path, options=options)
    assert result.error is None, f"{result.error}: {result.error_detail}"
    actual = result.output if result.output is not None else before
    assert actual.decode("utf-8") == expected.decode("utf-8")
    if not after_file.exists():
        assert result.output is None, "a case without .after.py must not change the file"

    second = run_rules(actual, [rule], path=path, options=options)
    assert second.error is None, f"second run: {second.error}: {second.error_detail}"
    assert second.output is None, "a second run changed the output again (not idempotent)"

    _assert_same_transform(rule, _crlf(before), _crlf(expected), variant="CRLF", path=path, options=options)
    _assert_same_transform(
        rule, BOM + before, BOM + expected, variant="UTF-8 BOM", path=path, options=options
    )

    sites_file = case_dir / f"{case}.sites.json"
    if sites_file.exists():
        expected_sites = json.loads(sites_file.read_text(encoding="utf-8"))
        recorded = {(site.rule, site.line, site.status, site.reason) for site in result.sites}
        for site in expected_sites:
            key = (rule.RULE_ID, site["line"], site["status"], site.get("reason"))
            assert key in recorded, f"expected site {key} not among {sorted(recorded, key=str)}"
