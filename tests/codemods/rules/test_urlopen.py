"""PS301 urlopen: fixtures, exact site reports, guide examples, and migrated code run against a real server.

The exact-site and guide helpers are PS201's; the guide's examples run in tests/codemods/test_guide.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from codemods.rules import all_rules
from codemods.rules.urlopen import UrlopenRule
from tests.codemods.harness import check_fixture, fixture_cases, run_rules
from tests.codemods.rules.test_sqlite3_connect import (
    REPO,
    assert_exact_sites,
    assert_guide_documents_reason_codes,
)
from testservers.http import PoolTestServer

CASES = Path(__file__).parent / "fixtures" / "urlopen"


@pytest.mark.parametrize("case", fixture_cases(CASES))
def test_fixture(case: str) -> None:
    check_fixture(UrlopenRule, CASES, case)


@pytest.mark.parametrize("case", fixture_cases(CASES))
def test_fixture_sites_are_exact(case: str) -> None:
    assert_exact_sites(UrlopenRule, CASES, case)


def test_every_case_declares_its_sites_or_is_a_noop() -> None:
    for case in fixture_cases(CASES):
        assert (CASES / f"{case}.sites.json").exists() != case.startswith("noop_"), case
        if case.startswith("noop_"):
            assert not (CASES / f"{case}.after.py").exists(), case


def test_guide_documents_every_reason_code() -> None:
    assert_guide_documents_reason_codes(UrlopenRule)


def test_rule_is_registered_with_its_contract() -> None:
    rules = all_rules()
    assert rules["PS301"] is UrlopenRule
    assert list(rules).index("PS201") < list(rules).index("PS301")
    assert UrlopenRule.NAME == "urlopen"
    assert not UrlopenRule.RUNS_LAST


def test_prefilter_matches_every_file_the_rule_changes_or_reports() -> None:
    for case in fixture_cases(CASES):
        text = (CASES / f"{case}.before.py").read_text("utf-8")
        if not case.startswith("noop_"):
            assert any(word in text for word in UrlopenRule.PREFILTER), case


def test_both_simple_rules_together_rewrite_one_file() -> None:
    """PS201 then PS301 on one file, as the runner does: both rewrites, each import added once."""
    source = (
        "import sqlite3\nimport urllib.request\n\n\n"
        "def sync(path, url):\n"
        "    conn = sqlite3.connect(path)\n"
        "    return conn, urllib.request.urlopen(url), urllib.request.urlopen(url)\n"
    )
    result = run_rules(source, [all_rules()["PS201"], UrlopenRule])
    assert result.output is not None
    assert result.output.decode() == (
        "import db_utils.http\nimport db_utils.sqlite\n\n\n"
        "def sync(path, url):\n"
        "    conn = db_utils.sqlite.connect(path)\n"
        "    return conn, db_utils.http.urlopen(url), db_utils.http.urlopen(url)\n"
    )
    assert sorted((s.rule, s.line) for s in result.sites) == [("PS201", 6), ("PS301", 7), ("PS301", 7)]


PROGRAM = """
import json
import sys
import urllib.error
{imports}

base = sys.argv[1]


def show(response):
    payload = json.loads(response.read())
    token = dict(payload["headers"]).get("X-Token")
    print(response.status, response.geturl().removeprefix(base), payload["method"], payload["body"], token)


with {call}(base + "/echo/get", timeout=5) as response:
    show(response)
show({call}(base + "/echo/post", b"a=1"))
show({call}(Request(base + "/echo/put", data=b"x", headers={{"X-Token": "t"}}, method="PUT")))
show({call}(base + "/redirect/302?to=/echo/moved"))
try:
    {call}(base + "/status/404")
except urllib.error.HTTPError as error:
    print("HTTPError", error.code, error.read())
"""


@pytest.mark.parametrize(
    ("imports", "call"),
    [
        ("import urllib.request\nfrom urllib.request import Request", "urllib.request.urlopen"),
        ("from urllib import request\nfrom urllib.request import Request", "request.urlopen"),
        ("from urllib.request import Request, urlopen", "urlopen"),
        ("from urllib.request import Request, urlopen as fetch", "fetch"),
    ],
)
def test_migrated_program_behaves_like_the_original(
    tmp_path: Path, http_server: PoolTestServer, imports: str, call: str
) -> None:
    """Run the original and the migrated program against a real HTTP server on 127.0.0.1."""
    original = PROGRAM.format(imports=imports, call=call)
    result = run_rules(original, [UrlopenRule])
    assert result.output is not None
    migrated = result.output.decode()
    assert "db_utils.http" in migrated
    environment = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    outputs = []
    for name, source in (("original", original), ("migrated", migrated)):
        script = tmp_path / f"{name}.py"
        script.write_text(source, encoding="utf-8")
        completed = subprocess.run(
            [sys.executable, str(script), http_server.url],
            capture_output=True,
            text=True,
            check=False,
            cwd=REPO,
            env=environment,
            timeout=60,
        )
        assert completed.returncode == 0, completed.stderr
        outputs.append(completed.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0].splitlines() == [
        "200 /echo/get GET  None",
        "200 /echo/post POST a=1 None",
        "200 /echo/put PUT x t",
        "200 /echo/moved GET  None",
        "HTTPError 404 b'status 404'",
    ]


@pytest.mark.parametrize(
    "command", [["scan"], ["migrate", "--diff"]], ids=["detached shortcut", "full analysis"]
)
def test_a_test_inspecting_its_mock_is_told_nothing_needs_changing(
    tmp_path: Path, command: list[str]
) -> None:
    """delogger's tests read their mock through the stdlib name; the drop-in reaches the mock (stand_ins)."""
    source = (
        "import urllib.request\n"
        "\n"
        "def test_posts():\n"
        "    assert urllib.request.urlopen.call_count == 1\n"
        "    saved = urllib.request.urlopen\n"
    )
    (tmp_path / "test_slack.py").write_text(source)
    run = [sys.executable, "-m", "codemods", *command, str(tmp_path), "--select", "PS301", "--no-cache"]
    finished = subprocess.run(run, capture_output=True, text=True, check=False)
    report = finished.stdout + finished.stderr
    inspected, saved = (line for line in report.splitlines() if "callee-as-value" in line)
    assert "test_slack.py:4:" in inspected
    assert "nothing to change" in inspected
    assert "test_slack.py:5:" in saved
    assert "pass db_utils.http.urlopen by hand" in saved
