"""The plan: phases from [tool.poolshift], glob matching, phase resolution, validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from codemods.plan import PlanError, glob_matches, load_plan, select_rule_ids

PLAN = """\
[tool.poolshift]
legacy_helpers = ["app.db.get_postgres_connection"]
exclude = ["tests/**"]

[[tool.poolshift.phases]]
name = "api"
paths = ["app/api/**"]

[[tool.poolshift.phases]]
name = "rest"
paths = ["app/**", "scripts/*.py"]
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(text)
    return tmp_path


def test_phases_in_order_with_implicit_cleanup(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, PLAN))
    assert [(p.number, p.name) for p in plan.phases] == [(1, "api"), (2, "rest"), (3, "cleanup")]
    assert plan.legacy_helpers == ("app.db.get_postgres_connection",)
    assert plan.cleanup.is_cleanup


@pytest.mark.parametrize(
    ("path", "phase"),
    [
        ("app/api/users.py", "api"),
        ("app/api/v2/deep/orders.py", "api"),
        ("app/models.py", "rest"),
        ("scripts/run.py", "rest"),
        ("scripts/sub/run.py", None),
        ("other.py", None),
    ],
)
def test_first_matching_phase_wins(tmp_path: Path, path: str, phase: str | None) -> None:
    found = load_plan(write(tmp_path, PLAN)).phase_of(path)
    assert (found.name if found else None) == phase


def test_resolve_phase_by_number_or_name(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, PLAN))
    assert plan.resolve_phase("2").name == "rest"
    assert plan.resolve_phase("api").number == 1
    assert plan.resolve_phase("cleanup").number == 3
    assert plan.resolve_phase("3").is_cleanup
    with pytest.raises(PlanError, match=r"unknown phase '7'.*1:api, 2:rest, 3:cleanup"):
        plan.resolve_phase("7")


def test_no_config_means_one_phase_all(tmp_path: Path) -> None:
    plan = load_plan(tmp_path)
    assert [p.name for p in plan.phases] == ["all", "cleanup"]
    assert plan.phase_of("any/where/x.py") == plan.phases[0]
    assert plan.legacy_helpers is None
    assert [p.name for p in load_plan(write(tmp_path, "[project]\nname='x'\n")).phases] == ["all", "cleanup"]


def test_excludes(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, PLAN))
    assert plan.is_excluded("tests/test_x.py")
    assert not plan.is_excluded("app/tests.py")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tool.poolshift]\nphases = 3\n", "phases must be an array of tables"),
        ("[tool.poolshift]\nlegacy_helpers = 'x'\n", "legacy_helpers must be a list of strings"),
        ("[tool.poolshift]\nphasez = []\n", "unknown \\[tool.poolshift\\] keys \\['phasez'\\]"),
        ("[[tool.poolshift.phases]]\nname = 'cleanup'\npaths = ['a/**']\n", "reserved or used twice"),
        (
            "[[tool.poolshift.phases]]\nname = 'a'\npaths = ['a/**']\n[[tool.poolshift.phases]]\nname = 'a'\n"
            "paths = ['b/**']\n",
            "reserved or used twice",
        ),
        ("[[tool.poolshift.phases]]\nname = '2'\npaths = ['a/**']\n", "non-numeric name"),
        ("[[tool.poolshift.phases]]\nname = 'a'\n", "non-empty paths"),
        ("[[tool.poolshift.phases]]\nname = 'a'\npaths = ['a']\nglob = 1\n", "unknown keys \\['glob'\\]"),
        ("[tool.poolshift\n", "not valid TOML"),
        ("[tool.poolshift]\ntrust_legacy_helpers = true\n", "trust_legacy_helpers was removed"),
    ],
)
def test_bad_plans_are_explained(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(PlanError, match=message) as info:
        load_plan(write(tmp_path, text))
    assert "pyproject.toml" in str(info.value)


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("app/**", "app/x.py", True),
        ("app/**", "app/a/b/x.py", True),
        ("app/**", "application/x.py", False),
        ("**/gen_*.py", "gen_1.py", True),
        ("**/gen_*.py", "a/b/gen_1.py", True),
        ("*.py", "a/x.py", False),
        ("app", "app/x.py", True),
        ("app/", "app/x.py", True),
        ("a?c.py", "abc.py", True),
        ("[ab].py", "b.py", True),
        ("[!ab].py", "b.py", False),
        ("a.b/*.py", "axb/x.py", False),
    ],
)
def test_glob_matching(pattern: str, path: str, expected: bool) -> None:
    assert glob_matches(pattern, path) is expected


def test_select_and_ignore_rule_ids() -> None:
    ids = ["PS101", "PS102", "PS201", "PS301", "PS901"]
    assert select_rule_ids(ids, ["PS1"]) == ["PS101", "PS102"]
    assert select_rule_ids(ids, [], ["PS301", "PS9"]) == ["PS101", "PS102", "PS201"]
    with pytest.raises(PlanError, match="unknown rule 'PS7'"):
        select_rule_ids(ids, ["PS7"])
