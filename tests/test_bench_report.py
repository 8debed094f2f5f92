"""bench.report: only a full run rewrites the committed aggregate; a quick run leaves the checkout clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import report


def test_a_quick_run_writes_last_run_json_and_leaves_latest_json_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    committed = tmp_path / report.LATEST
    committed.write_text('{"committed": true}\n')
    (tmp_path / "sqlite.json").write_text(json.dumps({"benchmark": "sqlite", "results": [], "targets": []}))

    documents = report.write_report({"cpu": "test"}, readme=False)

    assert [doc["benchmark"] for doc in documents] == ["sqlite"]
    assert committed.read_text() == '{"committed": true}\n'
    written = json.loads((tmp_path / report.LAST_RUN).read_text())
    assert [doc["benchmark"] for doc in written["benchmarks"]] == ["sqlite"]
    # Neither aggregate is read back as a benchmark of its own by the next report.
    assert [doc["benchmark"] for doc in report.load_results(tmp_path)] == ["sqlite"]
