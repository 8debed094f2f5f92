"""Codemod throughput: ``poolshift scan`` / ``migrate --all --diff`` vs ``python -m libcst.tool codemod``.

Corpus: the running interpreter's standard library (``sysconfig.get_paths()["stdlib"]``, minus
site-packages), copied once into a temporary directory so nothing can touch the real one. Every contender
is the real command line in a subprocess, as a user runs it, with the same number of jobs (the CPU count).

* ``poolshift ... --select PS201`` vs ``libcst.tool codemod sqlite3_connect.Sqlite3ConnectRule
  --unified-diff``: the same rule through both runners (the issue's ">= 20x" target). LibCST's runner
  parses and analyses every file; poolshift reads every file but parses only the ones whose bytes can
  hold a candidate. When the LibCST runner would take more than ~4 minutes on the whole corpus it runs on
  a fixed subset (every PS201 candidate file plus every k-th other file, by path) and its time is
  extrapolated by bytes; the report says so.
* ``poolshift scan`` / ``migrate --all --diff`` with every rule: what a user actually runs.
* A file without candidates vs just reading it, in CPU time: scan over a tree of candidate-free files,
  minus the command's fixed start-up cost (scan of a one-file tree), per file, against a Python process
  that only reads the same files (timed inside it); warm rounds, plus a cold (``--no-cache``) figure.
* A generated 50k-line project with 20 candidate sites: ``scan`` cold (no ``.poolshift_cache/``) and warm
  (cache from the previous round) against ``ast.parse`` over the same files. All three run in this
  process after imports (interleaved rounds), so the ratio compares the work, not interpreter start-up
  and LibCST's import, which the command line adds to every run alike (reported separately).
* Peak memory of ``migrate --all`` over the stdlib plus hostile files (500 nested calls, a 5 MB generated
  module, deep nesting, a 1,000-term ``and``, 5,000 adjacent string literals, NUL bytes, odd encodings, a
  1 MB line): bounded by the per-file guards
  (:mod:`codemods.limits`).

Peak memory is the sum of the resident sets of the command's whole process tree (workers included),
sampled every 20 ms from /proc; ``ru_maxrss`` (the largest single process) is recorded too.

    python bench/bench_codemod.py [--quick]

``--quick`` is CI's smoke test (about a minute): small stdlib files only (every 2nd that may hold a
candidate, every 40th other), every 8th candidate-free file for the per-file cost, a
10k-line generated project and ``--timeout 5`` for the hostile migrate; the full run keeps the real
figures.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Target, environment, parse_args, print_targets, write_document
from codemods.project import load_project
from codemods.rules import all_rules
from codemods.runner import run as run_phases

LIBCST_CONFIG = """\
generated_code_marker: "@generated"
formatter: []
blacklist_patterns: []
modules:
  - codemods.rules
repo_root: .
"""
SAME_RULE = "PS201"
LIBCST_COMMAND = "sqlite3_connect.Sqlite3ConnectRule"
#: Beyond this estimated time the LibCST runner runs on a subset and is extrapolated (see module doc).
LIBCST_FULL_BUDGET_S = 240.0
JOBS = os.cpu_count() or 1
DIFF_SAME_RULE = ("migrate", "--all", "--diff", "--select", SAME_RULE, ".")
#: Quick mode (CI's smoke test): the generated project's size, and the per-file time limit of the
#: hostile migrate (the 1 MB line must still be reported as ``timeout``, sooner).
QUICK_LINES = 10_000
QUICK_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Corpus:
    root: Path
    files: tuple[Path, ...]  # relative paths
    size: int  # bytes


@dataclass(frozen=True)
class RunStats:
    wall_s: float
    peak_tree_rss_kb: int
    max_rss_kb: int
    returncode: int
    cpu_s: float = 0.0  # user + system time of the command's own process (workers not included)


# ---------------------------------------------------------------------------------------------------------
# Corpus


def stdlib_files() -> tuple[Path, list[Path]]:
    """The interpreter's stdlib .py files (no site-packages, caches or symlinks), sorted by path."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [
        path.relative_to(root)
        for path in root.rglob("*.py")
        if "site-packages" not in path.relative_to(root).parts
        and "__pycache__" not in path.parts
        and path.is_file()
        and not path.is_symlink()
    ]
    return root, sorted(files)


def copy_corpus(source: Path, files: Sequence[Path], target: Path) -> Corpus:
    """Copy ``files`` under ``target``; a pyproject.toml pins the project root there."""
    for relative in files:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / relative, target / relative)
    (target / "pyproject.toml").write_text("[project]\nname = 'corpus'\n")
    (target / ".libcst.codemod.yaml").write_text(LIBCST_CONFIG)
    return Corpus(target, tuple(files), sum((target / path).stat().st_size for path in files))


def needles(rule_ids: Sequence[str] | None = None) -> list[bytes]:
    rules = all_rules()
    chosen = rule_ids or list(rules)
    return [needle.encode() for rule_id in chosen for needle in rules[rule_id].PREFILTER]


def has_any(data: bytes, words: Sequence[bytes]) -> bool:
    return any(word in data for word in words)


def every_kth(paths: Sequence[Path], k: int) -> list[Path]:
    return [path for index, path in enumerate(paths) if index % k == 0]


# ---------------------------------------------------------------------------------------------------------
# Running a command and watching its process tree


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(child) for child in handle.read().split()]
    except OSError:
        pass
    return found


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kb(pid: int) -> int:
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        total += _rss_kb(current)
        pending += _children(current)
    return total


def run_command(command: Sequence[str], cwd: Path, stdout: Path) -> RunStats:
    """Run ``command``; wall time, peak RSS of its process tree (sampled) and its own ru_maxrss."""
    peak = 0
    done = threading.Event()
    with stdout.open("wb") as out, (stdout.with_suffix(".err")).open("wb") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err)

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.02):
                peak = max(peak, tree_rss_kb(process.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # wait4 gives this child's own rusage (ru_maxrss: its largest process, workers included once
        # reaped), where RUSAGE_CHILDREN would be the high-water mark of every child so far.
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)
    return RunStats(wall, peak, usage.ru_maxrss, process.returncode, usage.ru_utime + usage.ru_stime)


# -P: the commands run inside a copy of the stdlib, which must not shadow the real one on sys.path.
def poolshift(*args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "codemods", *args]


def libcst_tool(*paths: str) -> list[str]:
    return [
        sys.executable, "-P", "-m", "libcst.tool", "codemod", "--no-format", f"--jobs={JOBS}",
        "--unified-diff=3",
        "--hide-progress", LIBCST_COMMAND, *paths,
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# Measurements


@dataclass
class Result:
    name: str
    files: int
    bytes: int
    walls: list[float]
    peak_tree_rss_kb: int
    max_rss_kb: int
    extrapolated: bool = False
    note: str = ""

    @property
    def median_s(self) -> float:
        return statistics.median(self.walls)

    def as_dict(self) -> dict[str, Any]:
        walls = sorted(self.walls)
        q1, q3 = (walls[0], walls[-1]) if len(walls) < 2 else _quartiles(walls)
        return {
            "name": self.name, "median_s": self.median_s, "q1_s": q1, "q3_s": q3, "rounds": len(walls),
            "samples_s": self.walls, "files": self.files, "bytes": self.bytes,
            "files_per_s": self.files / self.median_s, "mb_per_s": self.bytes / 1e6 / self.median_s,
            "peak_tree_rss_mb": round(self.peak_tree_rss_kb / 1024, 1),
            "max_rss_mb": round(self.max_rss_kb / 1024, 1), "extrapolated": self.extrapolated,
            "note": self.note,
        }  # fmt: skip


def _quartiles(values: list[float]) -> tuple[float, float]:
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def measure(
    name: str, command: list[str], corpus: Corpus, rounds: int, out: Path, *, ok: tuple[int, ...] = (0,)
) -> Result:
    walls, peak, max_rss = [], 0, 0
    for round_index in range(rounds):
        stats = run_command(command, corpus.root, out / f"{name.replace(' ', '_')}.{round_index}.out")
        err = (out / f"{name.replace(' ', '_')}.{round_index}.err").read_text(errors="replace")
        if stats.returncode not in ok or ("Traceback" in err[-3000:] and "Finished codemodding" not in err):
            raise RuntimeError(f"{name}: exit {stats.returncode}\n{err[-2000:]}")
        walls.append(stats.wall_s)
        peak, max_rss = max(peak, stats.peak_tree_rss_kb), max(max_rss, stats.max_rss_kb)
    return Result(name, len(corpus.files), corpus.size, walls, peak, max_rss)


def measure_interleaved(
    contenders: dict[str, list[str]], corpus: Corpus, rounds: int, out: Path
) -> dict[str, Result]:
    """Rounds alternate across contenders so background load drifts onto all of them alike."""
    results: dict[str, Result] = {}
    for _ in range(rounds):
        for name, command in contenders.items():
            one = measure(name, command, corpus, 1, out, ok=(0, 1))  # migrate exits 1 for untouched files
            if name in results:
                kept = results[name]
                kept.walls += one.walls
                kept.peak_tree_rss_kb = max(kept.peak_tree_rss_kb, one.peak_tree_rss_kb)
                kept.max_rss_kb = max(kept.max_rss_kb, one.max_rss_kb)
            else:
                results[name] = one
    return results


def libcst_runner(corpus: Corpus, subset: Corpus, tiny: Corpus, out: Path) -> tuple[Result, Result]:
    """The LibCST runner on the subset (measured), and on the whole corpus (measured or extrapolated)."""
    startup = measure("libcst startup", libcst_tool("."), tiny, 1, out, ok=(0, 1)).median_s
    on_subset = measure("libcst.tool PS201 (subset)", libcst_tool("."), subset, 1, out, ok=(0, 1))
    per_byte = max(on_subset.median_s - startup, 0.0) / subset.size
    estimate = startup + per_byte * corpus.size
    if subset.files == corpus.files:
        return on_subset, on_subset
    if estimate <= LIBCST_FULL_BUDGET_S:
        whole = measure("libcst.tool PS201", libcst_tool("."), corpus, 1, out, ok=(0, 1))
        return on_subset, whole
    note = (
        f"extrapolated by bytes from a measured run on {len(subset.files)} of {len(corpus.files)} files "
        f"({subset.size / 1e6:.1f} of {corpus.size / 1e6:.1f} MB: every {SAME_RULE} candidate file plus "
        f"every k-th other file by path): start-up {startup:.2f} s + "
        f"{per_byte * 1e6:.2f} s/MB"
    )
    whole = Result(
        "libcst.tool PS201", len(corpus.files), corpus.size, [estimate], on_subset.peak_tree_rss_kb,
        on_subset.max_rss_kb, extrapolated=True, note=note,
    )  # fmt: skip
    return on_subset, whole


#: Reads every .py file under the current directory and prints the CPU time the reading took (in the
#: process: no start-up to subtract, which on a loaded machine drowns the few milliseconds of reading).
READER = """\
import os, time
start = time.process_time()
for directory, _, names in os.walk("."):
    for name in names:
        if name.endswith(".py"):
            with open(os.path.join(directory, name), "rb") as handle:
                handle.read()
print(time.process_time() - start)
"""


def candidate_free_cost(free: Corpus, tiny: Corpus, rounds: int, out: Path) -> dict[str, Any]:
    """Marginal CPU cost per candidate-free file: poolshift scan vs a process that only reads the files.

    Each round runs ``scan`` on the candidate-free tree and on a one-file tree (its difference is the
    files' cost, start-up cancelled) and the reader, back to back; the ratio is of the medians. CPU time
    (user + system), not wall time: other jobs on the machine stretch wall time by whatever they take.
    Every round is warm (a first, unmeasured scan of each tree fills ``.poolshift_cache/``, as a user's
    second run finds it); a cold round (``--no-cache``) per round is reported too.
    """
    command = poolshift("scan", "-q", ".")
    cold = poolshift("scan", "-q", "--no-cache", ".")
    for corpus in (free, tiny):
        run_command(command, corpus.root, out / "free-warmup.out")

    def cpu(corpus: Corpus, argv: list[str]) -> float:
        stats = run_command(argv, corpus.root, out / "free.out")
        if stats.returncode != 0:
            raise RuntimeError(f"{argv}: exit {stats.returncode}")
        return stats.cpu_s

    samples: dict[str, list[float]] = {"scan": [], "scan cold": [], "read": []}
    for _ in range(rounds):
        samples["scan"].append((cpu(free, command) - cpu(tiny, command)) / len(free.files))
        samples["scan cold"].append((cpu(free, cold) - cpu(tiny, cold)) / len(free.files))
        reader = subprocess.run(
            [sys.executable, "-P", "-c", READER], cwd=free.root, capture_output=True, text=True, check=True
        )
        samples["read"].append(float(reader.stdout) / len(free.files))
    scan, scan_cold, read = (statistics.median(samples[name]) for name in ("scan", "scan cold", "read"))
    return {
        "files": len(free.files), "bytes": free.size, "rounds": rounds, "clock": "cpu (user + system)",
        "scan_per_file_us": scan * 1e6, "scan_cold_per_file_us": scan_cold * 1e6,
        "read_per_file_us": read * 1e6, "ratio": scan / read if read > 0 else float("inf"),
        "cold_ratio": scan_cold / read if read > 0 else float("inf"),
        "samples_us": {name: [value * 1e6 for value in values] for name, values in samples.items()},
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# A generated project and hostile files

_MODULE_BODY = """\
def {name}_{index}(items, limit={index}):
    \"\"\"Sum what passes the filter; a docstring like real code has.\"\"\"
    total = 0
    for position, item in enumerate(items):
        if item is None or position > limit:
            continue
        key = f"{{item!r}}-{{position}}"
        total += len(key) * (position % 7)
    return {{"total": total, "name": "{name}", "count": len(items)}}


class {title}{index}:
    def __init__(self, config):
        self.config = dict(config)
        self.cache = {{}}

    def lookup(self, key, default=None):
        if key not in self.cache:
            self.cache[key] = self.config.get(key, default)
        return self.cache[key]

"""
_CANDIDATE = """\
def open_store_{index}(path):
    conn = sqlite3.connect(path, timeout={index})
    return conn.execute("select 1").fetchone()

"""


def generated_project(target: Path, lines: int = 50_000, sites: int = 20) -> Corpus:
    """~``lines`` lines in 100 modules of plain code; ``sites`` of them hold one sqlite3.connect call."""
    modules = 100
    per_module = max(-(-lines // modules // _MODULE_BODY.count("\n")), 1)
    files: list[Path] = []
    for number in range(modules):
        relative = Path("genpkg") / f"module_{number:03}.py"
        chunks = ["import json\nimport os\n"]
        if number < sites:
            chunks.append("import sqlite3\n")
        chunks.append("\n\n")
        for index in range(per_module):
            chunks.append(_MODULE_BODY.format(name=f"step{number}", title=f"Store{number}x", index=index))
        if number < sites:
            chunks.append(_CANDIDATE.format(index=number))
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        (target / relative).write_text("".join(chunks))
        files.append(relative)
    (target / "genpkg" / "__init__.py").write_text("")
    (target / "pyproject.toml").write_text("[project]\nname = 'generated'\n")
    files.append(Path("genpkg/__init__.py"))
    return Corpus(target, tuple(files), sum((target / path).stat().st_size for path in files))


def hostile_files(target: Path) -> list[str]:
    """The pathological inputs the issue names; each must be reported or handled, never take the run."""
    nested = "f(" * 500 + "1" + ")" * 500
    blocks = "".join(" " * level + "if x:\n" for level in range(100)) + " " * 100 + "sqlite3.connect('a')\n"
    lists = "[" * 150 + "sqlite3.connect('a')" + "]" * 150
    candidate = "import sqlite3\nsqlite3.connect('a')\n"
    strings = " ".join(["'s'"] * 5000)
    files = {
        "hostile/nested_calls.py": f"import sqlite3\nsqlite3.connect({nested})\n".encode(),
        "hostile/generated_5mb.py": b"import sqlite3\n"
        + b"".join(b"conn_%d = sqlite3.connect('db_%d.sqlite')\n" % (i, i) for i in range(120_000)),
        "hostile/deep_blocks.py": f"import sqlite3\n{blocks}".encode(),
        "hostile/deep_lists.py": f"import sqlite3\nvalue = {lists}\n".encode(),
        "hostile/nul_bytes.py": b"import sqlite3\nsqlite3.connect('a')\x00\n",
        "hostile/latin1.py": b"# -*- coding: latin-1 -*-\nimport sqlite3\nsqlite3.connect('\xe9')\n",
        "hostile/bad_utf8.py": b"import sqlite3\nsqlite3.connect('\xff\xfe')\n",
        "hostile/utf16.py": "import sqlite3\nsqlite3.connect('a')\n".encode("utf-16"),
        "hostile/long_line.py": b"import sqlite3\nx = [" + b"1, " * 330_000 + b"sqlite3.connect('a')]\n",
        # LibCST nests what CPython keeps flat: migrated in the deep thread, or past LibCST's parser.
        "hostile/and_chain.py": f"{candidate}x = {' and '.join(['a'] * 1000)}\n".encode(),
        "hostile/long_concatenation.py": f"{candidate}x = {strings}\n".encode(),
    }
    for name, data in files.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(data)
    return sorted(files)


def _timed(action: Any) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def generated_project_scan(work: Path, rounds: int, lines: int = 50_000) -> dict[str, Any]:
    """Cold and warm ``scan`` (in this process) against ``ast.parse`` of the same files, interleaved."""
    corpus = generated_project(work / "generated", lines)
    cache = corpus.root / ".poolshift_cache"

    def parse_all() -> None:
        for relative in corpus.files:
            ast.parse((corpus.root / relative).read_bytes())

    def scan(*, cold: bool) -> None:
        if cold:
            shutil.rmtree(cache, ignore_errors=True)
        project = load_project([corpus.root], read_only=True)  # as the scan command loads it
        run_phases(project, project.plan.phases, dry_run=True, chain=False, include_unassigned=True)

    samples: dict[str, list[float]] = {"ast.parse": [], "scan cold": [], "scan warm": []}
    scan(cold=True)  # imports and first-use costs out of the way
    for _ in range(rounds):
        samples["ast.parse"].append(_timed(parse_all))
        samples["scan cold"].append(_timed(lambda: scan(cold=True)))
        samples["scan warm"].append(_timed(lambda: scan(cold=False)))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    lines = sum((corpus.root / relative).read_text().count("\n") for relative in corpus.files)
    cli = {
        name: measure(name, poolshift("scan", "-q", "."), corpus, 1, work, ok=(0,)).median_s
        for name in ("cli scan (warm cache)",)
    }
    return {
        "files": len(corpus.files), "lines": lines, "bytes": corpus.size, "sites": 20, "rounds": rounds,
        "median_s": medians, "samples_s": samples,
        "cold_vs_ast": medians["scan cold"] / medians["ast.parse"],
        "warm_vs_ast": medians["scan warm"] / medians["ast.parse"],
        "cli_s": cli,
    }  # fmt: skip


def hostile_migrate(corpus: Corpus, work: Path, timeout_s: float | None = None) -> dict[str, Any]:
    """``migrate --all`` over a copy of the corpus plus the hostile files: time, peak memory, outcomes.

    ``timeout_s`` is passed as ``--timeout`` (quick mode: the 1 MB line is still stopped and reported,
    without waiting out the default limit); None keeps the command line's default.
    """
    target = work / "hostile-tree"
    shutil.copytree(corpus.root, target)
    names = hostile_files(target)
    limit = () if timeout_s is None else ("--timeout", f"{timeout_s:g}")
    stats = run_command(
        poolshift("migrate", "--all", "-q", *limit, "--format", "json", "."), target, work / "hostile.out"
    )
    report = json.loads((work / "hostile.out").read_text())
    errors = {error["path"]: error["error"] for error in report["errors"]}
    return {
        "wall_s": stats.wall_s, "peak_tree_rss_mb": round(stats.peak_tree_rss_kb / 1024, 1),
        "max_rss_mb": round(stats.max_rss_kb / 1024, 1), "exit": stats.returncode,
        "hostile": {name: errors.get(name, "handled") for name in names},
        "errors": len(errors), "sites": len(report["sites"]),
    }  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# The run


def build_corpora(work: Path, quick: bool) -> dict[str, Corpus]:
    source, files = stdlib_files()
    same_rule = needles([SAME_RULE])
    every_rule = needles()
    data = {path: (source / path).read_bytes() for path in files}
    # Candidate-free files: the marginal cost per file needs many files (quick: every 8th is enough for
    # a smoke test).
    free = [path for path in files if not has_any(data[path], every_rule)]
    if quick:
        free = every_kth(free, 8)
    if quick:
        # A smoke test: small files only (no worker grinds through a 200 KB test module alone).
        small = [path for path in files if len(data[path]) <= 12_000]
        candidates = [path for path in small if has_any(data[path], every_rule)]
        others = [path for path in small if not has_any(data[path], every_rule)]
        files = sorted(set(every_kth(candidates, 2)) | set(every_kth(others, 40)))
    candidates = [path for path in files if has_any(data[path], same_rule)]
    others = [path for path in files if not has_any(data[path], same_rule)]
    subset = files if quick else sorted(set(candidates) | set(every_kth(others, 8)))
    tiny = [min(free, key=lambda path: len(data[path]))]
    return {
        "corpus": copy_corpus(source, files, work / "corpus"),
        "subset": copy_corpus(source, subset, work / "subset"),
        "free": copy_corpus(source, free, work / "free"),
        "tiny": copy_corpus(source, tiny, work / "tiny"),
    }


def print_result(result: Result, baseline: float) -> None:
    spread = f"{min(result.walls):.2f}-{max(result.walls):.2f}" if len(result.walls) > 1 else "1 run"
    flag = " (extrapolated)" if result.extrapolated else ""
    print(
        f"  {result.name:<38} {result.median_s:8.2f} s ({spread})"
        f"  {result.files / result.median_s:8.1f} files/s"
        f"  peak {result.peak_tree_rss_kb / 1024:6.0f} MB  {baseline / result.median_s:7.1f}x vs libcst{flag}"
    )


def run(quick: bool) -> dict[str, Any]:
    rounds = 2 if quick else 3
    with tempfile.TemporaryDirectory(prefix="poolshift-bench-") as tmp:
        work = Path(tmp)
        corpora = build_corpora(work, quick)
        corpus, out = corpora["corpus"], work / "out"
        out.mkdir()
        print(
            f"corpus: {len(corpus.files)} files, {corpus.size / 1e6:.1f} MB"
            f" ({'quick subset' if quick else 'stdlib'})"
        )
        same_rule = measure_interleaved(
            {
                "poolshift scan PS201": poolshift("scan", "--select", SAME_RULE, "."),
                "poolshift migrate --diff PS201": poolshift(*DIFF_SAME_RULE),
            },
            corpus, rounds, out,
        )  # fmt: skip
        diff_ps201 = same_rule["poolshift migrate --diff PS201"]
        on_subset_ps = diff_ps201
        if corpora["subset"].files != corpus.files:
            on_subset_ps = measure(
                "poolshift migrate --diff PS201 (subset)",
                poolshift(*DIFF_SAME_RULE), corpora["subset"], 1, out,
                ok=(0, 1),
            )  # fmt: skip
        libcst_subset, libcst_whole = libcst_runner(corpus, corpora["subset"], corpora["tiny"], out)
        every_rule = measure_interleaved(
            {
                "poolshift scan (all rules)": poolshift("scan", "."),
                "poolshift migrate --diff (all rules)": poolshift("migrate", "--all", "--diff", "."),
            },
            corpus, 1, out,
        )  # fmt: skip
        free = candidate_free_cost(corpora["free"], corpora["tiny"], rounds if quick else 5, out)
        generated = generated_project_scan(work, 3 if quick else 5, QUICK_LINES if quick else 50_000)
        hostile = hostile_migrate(corpus, work, QUICK_TIMEOUT_S if quick else None)
        parsed = sum(has_any((corpus.root / p).read_bytes(), needles([SAME_RULE])) for p in corpus.files)
    on_corpus = [libcst_whole, *same_rule.values(), *every_rule.values()]
    on_subset = [libcst_subset, on_subset_ps] if libcst_subset is not libcst_whole else []
    base = libcst_whole.median_s
    print(f"\ncodemod throughput ({JOBS} jobs each); median (min-max) wall time per run")
    for result in on_corpus:
        print_result(result, base)
    for result in on_subset:
        print_result(result, libcst_subset.median_s)
    results = on_corpus + on_subset
    print(
        f"  candidate-free file (CPU time): scan {free['scan_per_file_us']:.0f} us"
        f" vs read {free['read_per_file_us']:.0f} us per file ({free['ratio']:.2f}x);"
        f" cold (--no-cache) {free['scan_cold_per_file_us']:.0f} us ({free['cold_ratio']:.2f}x);"
        f" over {free['files']} files"
    )
    subset_ratio = libcst_subset.median_s / on_subset_ps.median_s
    print(
        f"  migrate --diff on the measured subset: {subset_ratio:.1f}x faster than libcst.tool (no"
        " extrapolation; informational: the subset holds every candidate file, which both runners parse)"
    )
    medians = generated["median_s"]
    print(
        f"  generated project ({generated['lines']} lines, {generated['files']} files, 20 sites), in-process:"
        f" ast.parse {medians['ast.parse']:.3f} s, scan cold {medians['scan cold']:.3f} s"
        f" ({generated['cold_vs_ast']:.2f}x), warm {medians['scan warm']:.3f} s"
        f" ({generated['warm_vs_ast']:.2f}x);"
        f" command line, warm: {generated['cli_s']['cli scan (warm cache)']:.2f} s"
    )
    print(
        f"  migrate --all over the corpus + {len(hostile['hostile'])} hostile files:"
        f" {hostile['wall_s']:.1f} s,"
        f" peak {hostile['peak_tree_rss_mb']:.0f} MB (process tree), exit {hostile['exit']};"
        f" {hostile['hostile']}"
    )
    scan_ratio = base / same_rule["poolshift scan PS201"].median_s
    diff_ratio = base / same_rule["poolshift migrate --diff PS201"].median_s
    limit = "LibCST's per-file parse and analysis: poolshift pays it only for files that can hold a candidate"
    same = "faster than libcst.tool (same rule, PS201)"
    targets = [
        Target.at_least(f"poolshift scan >= 100x {same}", scan_ratio, 100.0, limit),
        Target.at_least(f"migrate --all --diff >= 20x {same}", diff_ratio, 20.0, limit),
        Target.at_most(
            "candidate-free file costs <= 2x reading it", free["ratio"], 2.0,
            "a warm run reads no unchanged file (helper discovery's answers are found by the content key"
            " its stat entry holds); what remains per file is the listing, one stat, the stat table's"
            " JSON and the questions of discovery and each phase in Python (two dictionary lookups each),"
            " which a loaded machine's noise can push over: see bench/README.md",
        ),
        Target.at_most(
            f"scan of a generated {generated['lines'] // 1000}k-line project, cold <= 3x ast.parse of it",
            generated["cold_vs_ast"], 3.0,
            "LibCST parses the files with candidates (judged without it where the rule allows)",
        ),
        Target.at_most(
            "scan of the generated project, warm cache <= 0.3x ast.parse of it",
            generated["warm_vs_ast"], 0.3,
            "reading and hashing every file plus project loading (git ls-files, plan)",
        ),
        Target.at_most(
            "migrate over the stdlib + hostile files: peak memory of the process tree <= 4 GB",
            hostile["peak_tree_rss_mb"] / 1024, 4.0, "see codemods.limits",
        ),
    ]  # fmt: skip
    print_targets(targets)
    document = {
        "benchmark": "codemod",
        "quick": quick,
        "baseline": libcst_whole.name,
        **environment(),
        "jobs": JOBS,
        "results": [
            {**result.as_dict(), "speedup_vs_baseline": base / result.median_s} for result in results
        ],
        "notes": {
            "corpus": f"{len(corpus.files)} .py files of the stdlib ({corpus.size / 1e6:.1f} MB)"
            + (", quick subset: files <= 12 KB" if quick else ""),
            "files_parsed_by_poolshift_PS201": parsed,
            "libcst": libcst_whole.note or "measured on the whole corpus",
            "candidate_free": free,
            "generated_project": generated,
            "hostile_migrate": hostile,
            "peak memory": "sum of RSS over the command's process tree, sampled every 20 ms",
        },
        "targets": [target.__dict__ for target in targets],
    }
    write_document("codemod", document)
    return document


if __name__ == "__main__":
    run(parse_args(__doc__ or "").quick)
