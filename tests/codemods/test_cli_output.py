"""The CLI a team lives with, through the real command: records, notes, formats, diffs, config, rules.

Runs ``python -m codemods`` in temporary git repositories (see ``test_cli``); the legacy example app is
the tree where one helper call is seen by several rules.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.codemods.test_cli import GIT, make_tree, poolshift, snapshot

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "legacy_app"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    root = tmp_path / "legacy"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    subprocess.run([*GIT, "init", "-q", str(root)], check=True)
    subprocess.run([*GIT, "-C", str(root), "add", "-A"], check=True)
    subprocess.run([*GIT, "-C", str(root), "commit", "-qm", "legacy"], check=True)
    return root


def test_one_record_per_call_site_names_the_handling_rule_and_the_alternatives(example: Path) -> None:
    # PS102 is opt-in: selected, it and PS101 both judge every call of the helper.
    completed = poolshift("scan", ".", "--format", "json", "--select", "PS101,PS102,PS901", cwd=example)
    assert completed.returncode == 0, completed.stderr.decode()
    sites = json.loads(completed.stdout)["sites"]
    positions = [(s["path"], s["line"], s["column"]) for s in sites]
    assert len(positions) == len(set(positions)), "a call site appears twice"
    both = [s for s in sites if s["alternatives"]]
    assert both, "the example has calls that PS101 and PS102 both judge"
    judged = [{site["rule"], *(a["rule"] for a in site["alternatives"])} for site in both]
    assert sum(rules == {"PS101", "PS102"} for rules in judged) > 1
    for site in both:
        if site["status"] == "reported":  # a rule that rewrites the call would handle it instead
            assert all(a["status"] == "reported" for a in site["alternatives"])
    text = poolshift("scan", ".", "--select", "PS101,PS102,PS901", cwd=example).stdout.decode()
    assert "(also: PS102 reported: custom-factory)" in text
    assert text.count("differs from the shim") <= 1  # PS102's long message is not repeated per call
    verdicts = [v for s in sites for v in (s, *s["alternatives"])]
    cleanup = [v for v in verdicts if v["rule"] == "PS901"]
    assert len(cleanup) == 1  # one verdict on the helper, however many references remain
    assert len(cleanup[0]["details"]) > 3
    assert cleanup[0]["message"].startswith(f"{len(cleanup[0]['details'])} places: ")


def test_text_report_prints_a_shared_message_once_and_every_line_is_one_line(example: Path) -> None:
    text = poolshift("scan", ".", cwd=example).stdout.decode()
    lines = text.splitlines()
    notes = [line for line in lines if line.startswith("note ")]
    assert notes, text
    for note in notes:
        message = note.partition(": ")[2]
        assert text.count(message) == 1, f"{message!r} is repeated"
    assert sum("(note 1)" in line for line in lines) > 1
    verbose = poolshift("scan", ".", "-v", cwd=example).stdout.decode()
    assert len(verbose.splitlines()) > len(lines)  # the cleanup's places, one per line
    quiet = poolshift("scan", ".", "-q", cwd=example).stdout.decode().splitlines()
    assert quiet[0].startswith("Found ")
    assert not any(re.match(r"\S+:\d+:\d+: PS\d+ ", line) for line in quiet)


def test_diff_has_git_headers_and_json_carries_it_per_file(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "shop")
    plain = poolshift("migrate", ".", "--all", "--diff", cwd=root)
    assert plain.stdout.startswith(b"diff --git a/app/")
    data = json.loads(poolshift("migrate", ".", "--all", "--diff", "--format", "json", cwd=root).stdout)
    assert set(data["diffs"]) == {s["path"] for s in data["sites"] if s["status"] == "migratable"}
    assert (
        "".join(data["diffs"][path] for path in sorted(data["diffs"])).encode("utf-8", "surrogateescape")
        == plain.stdout
    )
    before = snapshot(root)
    markdown = poolshift("migrate", ".", "--all", "--diff", "--format", "markdown", cwd=root).stdout.decode()
    assert "## Diff" in markdown
    assert "```diff\ndiff --git a/app/api/handlers.py b/app/api/handlers.py\n" in markdown
    assert snapshot(root) == before, "--diff writes nothing, whatever the format"
    subprocess.run([*GIT, "-C", str(root), "apply", "-"], input=plain.stdout, check=True)
    assert poolshift("check", "app/api", cwd=root).returncode == 0


@pytest.mark.parametrize("command", [["migrate", ".", "--all", "--diff"], ["scan", "."]])
def test_a_reader_that_goes_away_ends_the_run_quietly(tmp_path: Path, command: list[str]) -> None:
    """``poolshift migrate . --diff | head -1``: no traceback, nothing written, exit 141 like SIGPIPE."""
    root = make_tree(tmp_path / "shop")
    before = snapshot(root)
    run = subprocess.Popen(
        [sys.executable, "-m", "codemods", *command],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert run.stdout is not None
    assert run.stderr is not None
    run.stdout.close()  # long before the interpreter has started: every write finds no reader
    errors = run.stderr.read().decode()
    assert run.wait() == 141, errors
    assert "Traceback" not in errors
    assert "BrokenPipeError" not in errors
    assert snapshot(root) == before


def test_config_file_and_exclude_on_the_command_line(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "shop")
    (root / "pyproject.toml").unlink()
    config = tmp_path / "ci" / "poolshift.toml"
    config.parent.mkdir()
    config.write_text('exclude = ["app/store.py"]\n\n[[phases]]\nname = "api"\npaths = ["app/api/**"]\n')
    completed = poolshift(
        "scan", ".", "--config", str(config), "--root", ".", "--exclude", "app/latin.py",
        "--exclude", "app/api/crlf.py", "--format", "json", cwd=root,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr.decode()
    sites = json.loads(completed.stdout)["sites"]
    paths = {s["path"] for s in sites}
    assert "app/store.py" not in paths  # the config's exclude
    assert "app/latin.py" not in paths  # --exclude, repeated
    assert "app/api/crlf.py" not in paths
    assert {s["phase"] for s in sites if s["path"].startswith("app/api/")} == {"api"}
    bad = poolshift("scan", ".", "--config", str(tmp_path / "missing.toml"), cwd=root)
    assert bad.returncode == 2
    assert b"cannot read the configuration" in bad.stderr


def _scanned(root: Path, *args: str, cwd: Path | None = None) -> tuple[set[str], str]:
    """The paths of the sites ``scan -v`` finds, and the configuration line it prints on stderr."""
    completed = poolshift("scan", *args, "-v", "--format", "json", cwd=cwd or root)
    assert completed.returncode == 0, completed.stderr.decode()
    sites = json.loads(completed.stdout)["sites"]
    line = next(
        text
        for text in completed.stderr.decode().splitlines()
        if text.startswith("poolshift: configuration:")
    )
    return {s["path"] for s in sites}, line


def test_the_closest_configuration_file_is_found_like_ruff_finds_its_own(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "shop")  # its pyproject.toml has [tool.poolshift] (exclude tests/**)
    paths, used = _scanned(root, ".")
    assert "tests/test_store.py" not in paths
    assert used == f"poolshift: configuration: {root / 'pyproject.toml'} (the closest)"
    # In one directory: .poolshift.toml, then poolshift.toml, then pyproject.toml (ruff's order).
    (root / "poolshift.toml").write_text('exclude = ["app/store.py"]\n')
    paths, used = _scanned(root, ".")
    assert "app/store.py" not in paths
    assert "tests/test_store.py" in paths  # pyproject.toml is not merged in: one file applies
    assert used.endswith(f"{root / 'poolshift.toml'} (the closest)")
    (root / ".poolshift.toml").write_text('exclude = ["app/latin.py"]\n')
    paths, used = _scanned(root, ".")
    assert "app/latin.py" not in paths
    assert "app/store.py" in paths
    assert used.endswith(f"{root / '.poolshift.toml'} (the closest)")
    # --config overrides whatever is found.
    paths, used = _scanned(root, ".", "--config", "pyproject.toml")
    assert "app/latin.py" in paths
    assert "tests/test_store.py" not in paths
    assert used.endswith(f"{root / 'pyproject.toml'} (--config)")


def test_the_closest_file_wins_and_pyproject_without_the_table_is_skipped(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "shop")
    sub = root / "app" / "api"
    # A sub-project's pyproject.toml without [tool.poolshift] does not count: the root's applies.
    (sub / "pyproject.toml").write_text('[project]\nname = "api"\n')
    paths, used = _scanned(root, "app/api")
    assert used.endswith(f"{root / 'pyproject.toml'} (the closest)")
    assert "app/api/crlf.py" in paths
    # A poolshift.toml closer to the target wins; its globs are relative to its own directory.
    (sub / "poolshift.toml").write_text('exclude = ["crlf.py"]\n')
    paths, used = _scanned(root, "app/api")
    assert used.endswith(f"{sub / 'poolshift.toml'} (the closest)")
    assert paths == {"handlers.py", "client.py"}  # paths are relative to the configuration's directory
    # Targets whose closest files differ run once per configuration (tests/codemods/test_monorepo.py).
    mixed = poolshift("scan", "app/api", "app/store.py", "--format", "json", cwd=root)
    assert mixed.returncode == 0, mixed.stderr.decode()
    paths = {site["path"] for site in json.loads(mixed.stdout)["sites"]}
    assert paths == {"app/api/handlers.py", "app/api/client.py", "app/store.py"}


def test_a_configuration_above_the_repository_never_applies(tmp_path: Path) -> None:
    (tmp_path / "poolshift.toml").write_text('exclude = ["app/**"]\n')
    root = make_tree(tmp_path / "shop")
    (root / "pyproject.toml").write_text('[project]\nname = "shop"\n')  # no [tool.poolshift]
    paths, used = _scanned(root, ".")
    assert "app/store.py" in paths
    assert "none found" in used
    assert "tests/test_store.py" in paths  # the defaults: nothing excluded


def test_rules_and_explain(tmp_path: Path) -> None:
    table = poolshift("rules", cwd=tmp_path).stdout.decode().splitlines()
    assert table[0].split() == ["ID", "NAME", "SAFETY", "PHASE", "DESCRIPTION"]
    assert any(line.startswith("PS901") and "cleanup" in line for line in table)
    rules = json.loads(poolshift("rules", "--format", "json", cwd=tmp_path).stdout)
    assert {rule["id"] for rule in rules} >= {"PS101", "PS102", "PS201", "PS301", "PS901"}
    page = poolshift("explain", "PS201", cwd=tmp_path).stdout.decode()
    assert page == (REPO / "migration_guide" / "rules" / "PS201.md").read_text(encoding="utf-8")
    code = poolshift("explain", "memory-database", cwd=tmp_path).stdout.decode()
    assert code.startswith("# memory-database (PS201, sqlite3-connect)\n\n### memory-database\n")
    assert "### callee-as-value" not in code  # the section alone
    assert "unused-suppression" in poolshift("explain", "unused-suppression", cwd=tmp_path).stdout.decode()
    unknown = poolshift("explain", "no-such-code", cwd=tmp_path)
    assert unknown.returncode == 2
    assert b"poolshift rules" in unknown.stderr


def test_help_points_at_the_configuration_and_lists_rules_and_phases(tmp_path: Path) -> None:
    top = poolshift("--help", cwd=tmp_path).stdout.decode()
    assert 'README.md, section "Configuration"' in top
    for command in ("scan", "migrate", "check", "status"):
        text = poolshift(command, "--help", cwd=tmp_path).stdout.decode()
        assert "PS201  sqlite3-connect" in text
        assert "phases:" in text
        assert "cleanup" in text
        assert "--config" in text


def _run_on_a_terminal(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    """The CLI with stdout on a pseudo-terminal, as a developer's shell runs it."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "codemods", *args], cwd=cwd, stdout=follower, stderr=subprocess.DEVNULL,
        env={**env, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process is done writing
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    process.wait(timeout=120)
    return b"".join(chunks).decode()


def test_colour_only_on_a_terminal_and_never_with_no_color(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "shop")
    env = {key: value for key, value in os.environ.items() if key != "NO_COLOR"}
    assert "\x1b[" in _run_on_a_terminal(["scan", "."], root, env)
    assert "\x1b[" not in _run_on_a_terminal(["scan", "."], root, {**env, "NO_COLOR": "1"})
    assert b"\x1b[" not in poolshift("scan", ".", cwd=root).stdout  # a pipe


def test_explain_without_the_checkout_prints_what_the_code_knows(monkeypatch: pytest.MonkeyPatch) -> None:
    """From a wheel (no migration_guide/ beside the package) explain still answers, and says where to read."""
    from codemods import guide

    monkeypatch.setattr(guide, "guide_dir", lambda: None)
    assert guide.explain("PS201") == (
        "PS201 (sqlite3-connect): sqlite3.connect(...) -> db_utils.sqlite.connect(...), keeping every "
        "argument\n(full page: migration_guide/ in the poolshift repository)\n"
    )
    memory = guide.explain("memory-database")
    assert memory is not None
    assert "never pooled" in memory
    assert guide.explain("no-such-code") is None
