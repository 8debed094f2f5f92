"""Session-state leak probe: processes x threads of shim callers through a real PgBouncer.

The seed of the issue's PgBouncer load test (8 processes x 25 threads, transaction pooling,
``default_pool_size=20``, ``max_connections=50``): it counts successes, the peak number of server
connections, and calls that see session state another call left behind.

Every call is one unit of work through the shim, as migrated code does it: borrow a connection
(``get_pooled_connection(url)`` or ``get_postgres_connection()``), read the session's state in one
``SELECT``, insert one row, and, on setter threads (every fourth by default), leave one kind of session state
behind, tagged with the call's number; then give the connection back. Observing comes first, so any tag
a call sees was left by an earlier call. The kinds, one per setter call in turn:

    SET          SET search_path TO s<n>, public
    set_session  autocommit on, then set_session(readonly=True): psycopg2 sends
                 SET default_transaction_read_only (untagged: a leak shows as a read-only session,
                 and the next borrower's INSERT fails)
    temp table   CREATE TEMP TABLE tmp<n>
    advisory     SELECT pg_advisory_lock(n)            (session level: a COMMIT does not release it)
    LISTEN       LISTEN ch<n>
    PREPARE      PREPARE ps<n> AS SELECT 1
    TimeZone     SET TimeZone: the control; PgBouncer restores it per client, so it must never leak

Run it (from the repository root; starts its own PostgreSQL and PgBouncer, prints a summary and JSON):

    python -m tests.pgbouncer_probe [--api pooled|legacy] [--mode local|pgbouncer]
                                    [--reset-always] [--direct]
                                    [--processes 8] [--threads 25] [--calls 20]
                                    [--setter-every 4] [--kinds SET,LISTEN,...]

``--mode pgbouncer`` runs the shim with ``DB_POOL_MODE=pgbouncer``: it undoes what setters leave before
their COMMIT, and refuses ``set_session`` (sent in autocommit mode) and ``LISTEN``: a refused call still
commits its row, and counts as ``refused``. ``--reset-always`` sets PgBouncer's
``server_reset_query_always = 1``; ``--direct`` skips PgBouncer (the control: the shim's own reset must
leave nothing behind when every borrower reaches the same session).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

KINDS = ("SET", "set_session", "temp table", "advisory", "LISTEN", "PREPARE", "TimeZone")
CONTROL_TIMEZONE = "Pacific/Chatham"
POLL_INTERVAL = 0.005
RESULT_TIMEOUT = 600.0  # seconds the parent waits for a worker's result

OBSERVE = """
SELECT current_setting('search_path'),
       current_setting('default_transaction_read_only'),
       current_setting('TimeZone'),
       (SELECT coalesce(string_agg(relname, ','), '') FROM pg_class
         WHERE relnamespace = pg_my_temp_schema() AND relkind = 'r'),
       (SELECT coalesce(string_agg(objid::text, ','), '') FROM pg_locks
         WHERE locktype = 'advisory' AND pid = pg_backend_pid()),
       (SELECT coalesce(string_agg(channel, ','), '') FROM pg_listening_channels() AS channel),
       (SELECT coalesce(string_agg(name, ','), '') FROM pg_prepared_statements)
"""


@dataclass(frozen=True)
class Shape:
    """How many callers there are, and which of their calls leave which state behind."""

    processes: int = 8
    threads: int = 25
    calls: int = 20
    setter_every: int = 4  # thread t is a setter when t % setter_every == 0; the others only observe
    kinds: tuple[str, ...] = KINDS  # what setters leave behind, in turn

    def kind(self, thread: int, call: int) -> str | None:
        """What this call leaves behind, or None for an observer."""
        if thread % self.setter_every:
            return None
        return self.kinds[(thread + call) % len(self.kinds)]

    def call_id(self, process: int, thread: int, call: int) -> int:
        """A number unique to one call, >= 1 (advisory lock keys and object names are built from it)."""
        return (process * self.threads + thread) * self.calls + call + 1

    def origin(self, seen: int, process: int, thread: int) -> str:
        """Who left the state a call sees: an earlier call of its own thread, or another caller."""
        seen_thread, _call = divmod(seen - 1, self.calls)
        seen_process, seen_thread = divmod(seen_thread, self.threads)
        if seen_process != process:
            return "other process"
        return "same thread, earlier call" if seen_thread == thread else "other thread"


@dataclass
class Tally:
    """What one worker process saw; merged by the parent."""

    calls: int = 0
    ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # kinds DB_POOL_MODE=pgbouncer refused
    calls_seeing_foreign_state: int = 0  # any kind, left by any earlier call
    calls_seeing_other_callers_state: int = 0  # any kind, left by another thread or process
    by_kind: Counter[str] = field(default_factory=Counter)  # calls seeing that kind
    by_origin: Counter[str] = field(default_factory=Counter)  # "kind <- origin" pairs

    def merge(self, other: Tally) -> None:
        self.calls += other.calls
        self.ok += other.ok
        self.failures.update(other.failures)
        self.refused.update(other.refused)
        self.calls_seeing_foreign_state += other.calls_seeing_foreign_state
        self.calls_seeing_other_callers_state += other.calls_seeing_other_callers_state
        self.by_kind.update(other.by_kind)
        self.by_origin.update(other.by_origin)


# -- one call --------------------------------------------------------------------------------------


def leave_state(conn: Any, kind: str, n: int) -> None:
    """Leave one kind of session state behind on ``conn``, tagged with ``n`` where the kind has a name."""
    if kind == "set_session":
        conn.commit()
        conn.autocommit = True
        conn.set_session(readonly=True)
        return
    statement = {
        "SET": f"SET search_path TO s{n}, public",
        "temp table": f"CREATE TEMP TABLE tmp{n} (id int)",
        "advisory": f"SELECT pg_advisory_lock({n})",
        "LISTEN": f"LISTEN ch{n}",
        "PREPARE": f"PREPARE ps{n} AS SELECT 1",
        "TimeZone": f"SET TimeZone TO '{CONTROL_TIMEZONE}'",
    }[kind]
    with conn.cursor() as cur:
        cur.execute(statement)


def foreign_state(row: tuple[Any, ...]) -> dict[str, list[int]]:
    """Kind -> tags (call numbers) of state found in a fresh borrower's session; 0 for untagged state."""
    search_path, read_only, timezone, temps, locks, channels, statements = row
    found: dict[str, list[int]] = {}
    if search_path != '"$user", public':
        found["SET"] = [int(search_path.split(",")[0].strip().lstrip("s"))]
    if read_only != "off":
        found["set_session"] = [0]
    if timezone == CONTROL_TIMEZONE:
        found["TimeZone"] = [0]
    for kind, names, prefix in (
        ("temp table", temps, "tmp"),
        ("advisory", locks, ""),
        ("LISTEN", channels, "ch"),
        ("PREPARE", statements, "ps"),
    ):
        if names:
            found[kind] = [int(name.removeprefix(prefix)) for name in names.split(",")]
    return found


def one_call(conn: Any, kind: str | None, n: int, observed: Callable[[dict[str, list[int]]], None]) -> bool:
    """Observe (reported at once, so a failing INSERT cannot hide what was seen), write, leave state.

    Returns False when the shim refused to leave the state (``SessionStateNotSupported``, raised before
    anything is sent): the call's work still commits.
    """
    from db_utils import SessionStateNotSupported

    with conn.cursor() as cur:
        cur.execute(OBSERVE)
        observed(foreign_state(cur.fetchone()))
        cur.execute("INSERT INTO probe_calls (n) VALUES (%s)", (n,))
    if kind is not None:
        try:
            leave_state(conn, kind, n)
        except SessionStateNotSupported:
            if conn.autocommit:  # set_session's refusal leaves it on: the INSERT is committed already
                conn.autocommit = False
            return False
    return True


def borrow_and_call(
    api: str, url: str, kind: str | None, n: int, observed: Callable[[dict[str, list[int]]], None]
) -> bool:
    """One call through the shim's ``api``; False if the shim refused the state it was to leave."""
    import db_utils

    if api == "pooled":
        with db_utils.get_pooled_connection(url) as conn:
            return one_call(conn, kind, n, observed)
    conn = db_utils.get_postgres_connection()
    if conn is None:
        raise RuntimeError("get_postgres_connection() returned None (the reason is in its log)")
    try:
        left = one_call(conn, kind, n, observed)
        conn.commit()
    finally:
        conn.close()
    return left


# -- one worker process ----------------------------------------------------------------------------


def record(
    tally: Tally, lock: threading.Lock, shape: Shape, process: int, thread: int, seen: dict[str, list[int]]
) -> None:
    with lock:
        if not seen:
            return
        tally.calls_seeing_foreign_state += 1
        others = False
        for kind, tags in seen.items():
            tally.by_kind[kind] += 1
            for tag in tags:
                origin = shape.origin(tag, process, thread) if tag else "untagged"
                tally.by_origin[f"{kind} <- {origin}"] += 1
                others = others or origin not in ("same thread, earlier call", "untagged")
        tally.calls_seeing_other_callers_state += others


def worker(
    process: int, shape: Shape, api: str, url: str, env: dict[str, str], start: Any, results: Any
) -> None:
    for name in list(os.environ):  # nothing from the caller's shell may redirect the shim
        if name == "DATABASE_URL" or name.startswith(("DB_", "POSTGRES_", "PG")):
            del os.environ[name]
    os.environ.update(env)
    tally = Tally()
    lock = threading.Lock()  # guards tally
    go = threading.Event()

    def caller(thread: int) -> None:
        go.wait()
        for call in range(shape.calls):
            n = shape.call_id(process, thread, call)
            kind = shape.kind(thread, call)
            with lock:
                tally.calls += 1
            try:
                left = borrow_and_call(
                    api, url, kind, n, lambda seen: record(tally, lock, shape, process, thread, seen)
                )
            except Exception as error:
                message = str(error).strip().splitlines()[0] if str(error).strip() else ""
                with lock:
                    tally.failures[f"{type(error).__name__}: {message}"] += 1
                continue
            with lock:
                tally.ok += 1
                if not left:
                    tally.refused[str(kind)] += 1

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(shape.threads)]
    for thread in threads:
        thread.start()
    start.wait()
    go.set()
    for thread in threads:
        thread.join()
    results.put((process, tally))


# -- the parent -------------------------------------------------------------------------------------


@dataclass
class ServerPoller:
    """Peak number of the app user's backends on PostgreSQL, polled on one direct connection."""

    dsn: str
    user: str
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self, ready: threading.Event) -> None:
        import psycopg2

        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        sql = (
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND backend_type = 'client backend' "
            "AND pid <> pg_backend_pid()"
        )
        try:
            with conn.cursor() as cur:
                ready.set()
                while not self._stop.is_set():
                    cur.execute(sql, (self.user,))
                    self.peak = max(self.peak, cur.fetchone()[0])
                    self._stop.wait(POLL_INTERVAL)
        finally:
            conn.close()

    @contextmanager
    def running(self) -> Iterator[ServerPoller]:
        ready = threading.Event()
        thread = threading.Thread(target=self.run, args=(ready,), daemon=True)
        thread.start()
        if not ready.wait(30):
            raise RuntimeError("the server poller could not connect")
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(30)


def probe(shape: Shape, api: str, url: str, env: dict[str, str], poller: ServerPoller) -> Tally:
    """Run ``shape`` through the shim against ``url`` (or ``env`` for the legacy API); merged tally."""
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no pool inherited from the parent
    start = context.Barrier(shape.processes + 1)
    results = context.Queue()
    processes = [
        context.Process(target=worker, args=(p, shape, api, url, env, start, results))
        for p in range(shape.processes)
    ]
    for process in processes:
        process.start()
    total = Tally()
    try:
        with poller.running():
            start.wait(timeout=RESULT_TIMEOUT)
            for _ in processes:
                total.merge(_next_result(results, processes, time.monotonic() + RESULT_TIMEOUT))
    finally:
        for process in processes:
            process.join(timeout=60)
    return total


def _next_result(results: Any, processes: list[Any], deadline: float) -> Tally:
    """The next worker's tally; fails at once if every worker exited without one (a crash)."""
    while True:
        try:
            _process, tally = results.get(timeout=1)
            return tally  # type: ignore[no-any-return]
        except queue.Empty:
            if not any(process.is_alive() for process in processes) and results.empty():
                codes = [process.exitcode for process in processes]
                raise RuntimeError(f"probe workers exited without a result (exit codes {codes})") from None
            if time.monotonic() > deadline:
                raise RuntimeError("probe workers did not finish in time") from None


def leftovers(postgres: Any, user: str) -> dict[str, int]:
    """State still held by the server sessions after the run: ``user``'s advisory locks, all temp tables."""
    rows = postgres.query(
        "SELECT (SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "        WHERE l.locktype = 'advisory' AND a.usename = %s), "
        "       (SELECT count(*) FROM pg_class WHERE relpersistence = 't' AND relkind = 'r')",
        (user,),
    )
    locks, temps = rows[0]
    return {"advisory locks": int(locks), "temp tables": int(temps)}


@dataclass(frozen=True)
class Target:
    """Where the shim connects (a PgBouncer, or PostgreSQL itself) and as whom; ``postgres`` is the server."""

    postgres: Any  # testservers.postgres.PostgresServer
    url: str = field(repr=False)
    user: str
    password: str = field(repr=False)
    env: dict[str, str] = field(repr=False)

    mode: str = "local"  # DB_POOL_MODE of the shim in the workers

    @classmethod
    def of(cls, server: Any, postgres: Any, mode: str = "local") -> Target:
        """``server`` is a PgBouncerServer or the PostgresServer itself."""
        env = {**server.env(), "DB_POOL_MODE": mode}
        return cls(postgres, server.url, server.user, server.password, env, mode)


def measure(shape: Shape, api: str, target: Target) -> dict[str, Any]:
    """Run the probe against ``target``; the summary (password-free) of what the calls saw."""
    target.postgres.query("CREATE TABLE probe_calls (n int)")
    try:
        target.postgres.query(f'GRANT INSERT ON probe_calls TO "{target.user}"')
        poller = ServerPoller(target.postgres.dsn, target.user)
        tally = probe(shape, api, target.url, target.env, poller)
        left = leftovers(target.postgres, target.user)
        written = target.postgres.query("SELECT count(*) FROM probe_calls")[0][0]
    finally:
        target.postgres.query("DROP TABLE probe_calls")
    summary = {
        "api": api,
        "mode": target.mode,
        "shape": f"{shape.processes} processes x {shape.threads} threads x {shape.calls} calls",
        "setters": f"every {shape.setter_every}th thread, leaving in turn: {', '.join(shape.kinds)}",
        "calls": tally.calls,
        "ok": tally.ok,
        "failures": dict(tally.failures.most_common()),
        "rows_written": written,
        "refused": dict(tally.refused.most_common()),
        "peak_server_connections": poller.peak,
        "calls_seeing_state_of_an_earlier_call": tally.calls_seeing_foreign_state,
        "calls_seeing_state_of_another_caller": tally.calls_seeing_other_callers_state,
        "calls_seeing_kind": dict(tally.by_kind.most_common()),
        "kind_and_origin": dict(tally.by_origin.most_common()),
        "left_on_server_sessions_after_the_run": left,
    }
    return dict(json.loads(json.dumps(summary).replace(target.password, "***")))


def run(shape: Shape, api: str, *, direct: bool, reset_always: bool, mode: str = "local") -> dict[str, Any]:
    """Start a PostgreSQL (``max_connections=50``) and a PgBouncer in front of it, probe, stop both."""
    from testservers.pgbouncer import launch_pgbouncer
    from testservers.postgres import launch_postgres

    max_connections = shape.processes * shape.threads + 10 if direct else 50
    postgres = launch_postgres(max_connections=max_connections)
    bouncer = None
    try:
        if direct:
            target = Target.of(postgres, postgres, mode)
        else:
            bouncer = launch_pgbouncer(
                postgres,
                pool_mode="transaction",
                default_pool_size=20,
                max_client_conn=shape.processes * shape.threads + 10,
                extra_settings={"server_reset_query_always": "1"} if reset_always else {},
            )
            target = Target.of(bouncer, postgres, mode)
        summary = measure(shape, api, target)
    finally:
        if bouncer is not None:
            bouncer.stop()
        postgres.stop()
    where = "PostgreSQL directly" if direct else "PgBouncer, transaction pooling, default_pool_size=20"
    return {
        "target": where,
        "server_reset_query_always": reset_always,
        "max_connections": max_connections,
        **summary,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", choices=("pooled", "legacy"), default="pooled")
    parser.add_argument("--mode", choices=("local", "pgbouncer"), default="local", help="DB_POOL_MODE")
    parser.add_argument("--direct", action="store_true", help="no PgBouncer: the control")
    parser.add_argument("--reset-always", action="store_true", help="server_reset_query_always = 1")
    parser.add_argument("--processes", type=int, default=Shape.processes)
    parser.add_argument("--threads", type=int, default=Shape.threads)
    parser.add_argument("--calls", type=int, default=Shape.calls)
    parser.add_argument("--setter-every", type=int, default=Shape.setter_every, metavar="N")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated, of: {', '.join(KINDS)}")
    args = parser.parse_args(argv)
    kinds = tuple(kind.strip() for kind in args.kinds.split(","))
    if set(kinds) - set(KINDS):
        parser.error(f"unknown kind(s): {', '.join(sorted(set(kinds) - set(KINDS)))}")
    shape = Shape(args.processes, args.threads, args.calls, args.setter_every, kinds)
    summary = run(shape, args.api, direct=args.direct, reset_always=args.reset_always, mode=args.mode)
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
