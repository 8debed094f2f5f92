"""Turn bench/results/*.json into the README's figures: a markdown table, a log-scale chart, latest.json.

Every benchmark module writes its own JSON (see bench/common.py); this module only reads them, so a
benchmark can be rerun alone and the report regenerated. The README block between the ``bench:start`` and
``bench:end`` markers is replaced, nothing else in the README is touched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
CHART = RESULTS / "op_cost.png"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
#: The aggregate of a full run (committed with the README it feeds) and of any other run (not committed).
LATEST, LAST_RUN = "latest.json", "last-run.json"
ORDER = ("postgres", "load", "sqlite", "http", "codemod")
#: The chart shows the cost of one operation; the load test (latency under contention) and the codemod
#: runs (whole-corpus seconds) are on other scales and stay in the tables.
CHARTED = ("postgres", "sqlite", "http")


def load_results(directory: Path = RESULTS) -> list[dict[str, Any]]:
    """Every benchmark document in ``directory``, in the README's order (unknown names last)."""
    documents = []
    for path in sorted(directory.glob("*.json")):
        if path.name in (LATEST, LAST_RUN):
            continue
        documents.append(json.loads(path.read_text()))

    def rank(doc: dict[str, Any]) -> tuple[int, str]:
        name = str(doc.get("benchmark", ""))
        prefix = next((i for i, key in enumerate(ORDER) if name.startswith(key)), len(ORDER))
        return prefix, name

    return sorted(documents, key=rank)


def _format_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def _results_table(doc: dict[str, Any]) -> list[str]:
    rows = doc.get("results", [])
    if not rows or "median_s" not in rows[0]:
        return []
    baseline = doc.get("baseline", "")
    # Client CPU per op, where measured: what a contender's own code costs, and how fast the machine ran
    # (bench/README.md, "Reading the figures": in a slow phase every contender's CPU per op grows).
    with_cpu = any(isinstance(row.get("cpu_s"), int | float) for row in rows)
    cpu_header, cpu_rule = (" client CPU per op |", "---:|") if with_cpu else ("", "")
    lines = [
        f"| {doc['benchmark']} | median per op | IQR |{cpu_header} speed vs {baseline} |",
        f"|---|---:|---:|{cpu_rule}---:|",
    ]
    for row in rows:
        ratio = row.get("speedup_vs_baseline")
        ratio_text = f"{ratio:.2f}x" if isinstance(ratio, int | float) else ""
        cpu = row.get("cpu_s")
        cpu_cell = (f" {_format_time(cpu)} |" if isinstance(cpu, int | float) else " |") if with_cpu else ""
        lines.append(
            f"| {row['name']} | {_format_time(row['median_s'])} | {_format_time(row.get('iqr_s', 0.0))} "
            f"|{cpu_cell} {ratio_text} |"
        )
    return lines


def _targets_table(documents: Iterable[dict[str, Any]]) -> list[str]:
    lines = ["| benchmark | target | measured | met | what limits it |", "|---|---|---:|:---:|---|"]
    for doc in documents:
        for target in doc.get("targets", []):
            measured = target.get("measured")
            measured_text = f"{measured:.2f}" if isinstance(measured, int | float) else str(measured)
            lines.append(
                f"| {doc['benchmark']} | {target['name']} ({target.get('target', '')}) | {measured_text} "
                f"| {'yes' if target.get('met') else '**no**'} | {target.get('limit', '') or ''} |"
            )
    return lines


def markdown(documents: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    """The README block: machine line, targets, then each benchmark's table."""
    quick = any(doc.get("quick") for doc in documents)
    kind = "QUICK (smoke-test sizes, not a measurement)" if quick else "full"
    packages = ", ".join(f"{name} {version}" for name, version in machine.get("packages", {}).items())
    header = (
        f"Latest {kind} run: {machine.get('date', '?')} on {machine.get('cpu', '?')} "
        f"({machine.get('cores', '?')} cores), Python {machine.get('python', '?')}, "
        f"PostgreSQL {machine.get('postgres', '?')}; {packages}; "
        f"{machine.get('cpu idle', 'idle CPUs as configured')}"
        + "".join(f"; {doc['benchmark']}: {doc['placement']}" for doc in documents if doc.get("placement"))
        + "."
    )
    parts = [header, "", "![op cost per approach, log scale](bench/results/op_cost.png)", ""]
    parts += [*_targets_table(documents), ""]
    for doc in documents:
        table = _results_table(doc)
        if table:
            parts += [*table, ""]
        summary = doc.get("summary_markdown")
        if summary:
            parts += [summary, ""]
    return "\n".join(parts).rstrip() + "\n"


def update_readme(block: str, readme: Path = README) -> None:
    text = readme.read_text()
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    replacement = f"{START}\n{block}{END}"
    if pattern.search(text):
        text = pattern.sub(lambda _: replacement, text)
    else:
        text = text.rstrip() + f"\n\n## Benchmarks\n\n{replacement}\n"
    readme.write_text(text)


def chart(documents: list[dict[str, Any]], path: Path = CHART) -> None:
    """Horizontal bars of median op cost per approach, one group per op-cost benchmark, on a log scale."""
    import matplotlib

    matplotlib.use("Agg")  # no display on CI machines
    import matplotlib.pyplot as plt

    labels: list[str] = []
    values: list[float] = []
    colors: list[str] = []
    palette = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]
    charted = [
        doc
        for doc in documents
        if str(doc.get("benchmark", "")).startswith(CHARTED)
        and doc.get("results")
        and "median_s" in doc["results"][0]
    ]
    for index, doc in enumerate(charted):
        for row in doc["results"]:
            labels.append(f"{doc['benchmark']}: {row['name']}")
            values.append(row["median_s"] * 1e6)
            colors.append(palette[index % len(palette)])
    if not values:
        return
    fig, axis = plt.subplots(figsize=(10, 0.32 * len(values) + 1.2))
    axis.barh(range(len(values)), values, color=colors)
    axis.set_yticks(range(len(values)), labels, fontsize=8)
    axis.invert_yaxis()
    axis.set_xscale("log")
    axis.set_xlabel("median time per operation (µs, log scale; shorter is faster)")
    axis.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(machine: dict[str, Any], *, readme: bool) -> list[dict[str, Any]]:
    """Aggregate: the chart, the README block and latest.json (committed with them) for full runs only;
    a quick or partial run writes last-run.json (ignored by git), so CI leaves the checkout clean."""
    documents = load_results(RESULTS)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / (LATEST if readme else LAST_RUN)).write_text(
        json.dumps({"machine": machine, "benchmarks": documents}, indent=2, default=str) + "\n"
    )
    block = markdown(documents, machine)
    print(block)
    if readme:
        chart(documents)
        update_readme(block)
    return documents
