"""A throwaway PostgreSQL server for tests and benchmarks.

Each server gets its own data directory in a temp folder, a free port on 127.0.0.1 (another one if
something takes it before the server binds it: testservers.ports), its own Unix socket directory and
scram-sha-256 password auth, like production. ``initdb`` refuses to run as root, so when the tests run as
root the server runs as the unprivileged ``postgres`` OS user; otherwise as the current user.

Durability is switched off (``fsync=off`` and friends): the data is thrown away anyway and this makes
server start and commits cheap enough to start a dedicated server for a single test.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from testservers.binaries import stop_process
from testservers.ports import PortTaken, port_taken, start_on_free_port

SUPERUSER = "poolshift"
DATABASE = "poolshift_test"
START_TIMEOUT = 60.0  # seconds for the server to accept connections after launch
STOP_TIMEOUT = 30.0  # seconds for a fast shutdown before SIGKILL


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine (or no OS user to run them as)."""


def find_bindir() -> Path:
    """Locate the server binaries: ``$PG_BINDIR``, else the newest ``/usr/lib/postgresql/*/bin``."""
    explicit = os.environ.get("PG_BINDIR")
    candidates = [explicit] if explicit else []
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(versions, key=lambda p: int(Path(p).parent.name), reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found (looked at $PG_BINDIR and /usr/lib/postgresql/*/bin); "
        "install the Debian package 'postgresql'"
    )


def _run_as() -> str | None:
    """The OS user to run the server as: ``postgres`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresUnavailable(
            "running as root but there is no 'postgres' OS user to run the server as "
            "(create it: useradd --system --home /var/lib/postgresql postgres)"
        ) from exc
    return "postgres"


class Endpoint:
    """Where a client connects, in the forms clients need (the server itself, or PgBouncer in front)."""

    host: str
    port: int
    user: str
    password: str
    database: str

    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg2 driver) with the password in it: never print it."""
        return (
            f"postgresql+psycopg2://{quote(self.user)}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{self.database}"
        )

    def env(self) -> dict[str, str]:
        """The POSTGRES_* variables a legacy app reads, pointing here."""
        return {
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_DB": self.database,
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
        }

    @property
    def libpq_url(self) -> str:
        """``postgresql://`` URL as psycopg2 / libpq / ``DATABASE_URL`` users write it."""
        return self.url.replace("postgresql+psycopg2://", "postgresql://", 1)

    @property
    def dsn(self) -> str:
        return (
            f"host={self.host} port={self.port} dbname={self.database} "
            f"user={self.user} password={self.password}"
        )


@dataclass
class PostgresServer(Endpoint):
    """One running server. Use :func:`start_postgres` (a context manager) to get one."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    tmpdir: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    #: Sessions this object opened itself (query(), connect()): subtracted when counting the app's sessions.
    own_sessions: int = field(default=0, repr=False)

    def connect(self, **kwargs: object) -> object:
        """A plain psycopg2 connection, outside any pool: the 'second connection' tests look through."""
        import psycopg2

        self.own_sessions += 1
        return psycopg2.connect(self.dsn, **kwargs)

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        """Run one statement on a fresh autocommit connection and return its rows (if any)."""
        conn = self.connect()
        try:
            conn.autocommit = True  # type: ignore[attr-defined]
            with conn.cursor() as cur:  # type: ignore[attr-defined]
                cur.execute(sql, params or None)  # None: a literal % needs no escaping
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()  # type: ignore[attr-defined]

    def backend_count(self, application_name: str | None = None) -> int:
        """Client backends connected to the test database now, excluding the one asking."""
        sql = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend' "
            "AND pid <> pg_backend_pid()"
        )
        params: tuple[object, ...] = (self.database,)
        if application_name is not None:
            sql += " AND application_name = %s"
            params += (application_name,)
        return _count(self.query(sql, params))

    def terminate_backends(self) -> int:
        """``pg_terminate_backend`` every other client backend: simulates a failover or a killed server."""
        rows = self.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            (self.database,),
        )
        return len(rows)

    def connections_opened(self) -> int:
        """Total sessions ever opened against the test database (from pg_stat_database)."""
        sql = "SELECT sessions FROM pg_stat_database WHERE datname = %s"
        return _count(self.query(sql, (self.database,)))

    def client_sessions_logged(self) -> int:
        """Client sessions opened since start, minus this object's own, read from the server log.

        Counted from ``log_connections`` lines rather than pg_stat_database, whose counters are flushed
        lazily by each backend (up to seconds later): the log line is written before authentication
        completes, so the count is exact the moment the connection exists.
        """
        log = (self.tmpdir / "postgres.log").read_text(errors="replace")
        return log.count("connection authorized:") - self.own_sessions

    def restart(self) -> None:
        """Fast shutdown (``pg_ctl restart -m fast``'s first half), then start again on the same port."""
        self._stop_process()
        log = self.tmpdir / "postgres.log"
        with open(log, "ab") as log_file:
            self.process = subprocess.Popen(
                self.process.args, user=_run_as(), stdout=log_file, stderr=subprocess.STDOUT
            )
        _wait_ready(self, log, time.monotonic() + START_TIMEOUT)
        self.own_sessions += 1  # _wait_ready's successful probe

    def stop(self) -> None:
        self._stop_process()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def _stop_process(self) -> None:
        # SIGINT is PostgreSQL's "fast shutdown": roll back and disconnect clients, then exit.
        stop_process(self.process, signal.SIGINT, STOP_TIMEOUT)


def _count(rows: list[tuple[object, ...]]) -> int:
    """The one value of a one-row count query (PostgreSQL's bigint arrives as a Python int)."""
    (count,) = rows[0]
    assert isinstance(count, int), f"not a count: {count!r}"
    return count


def _run(cmd: list[str], user: str | None) -> None:
    result = subprocess.run(cmd, user=user, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def _wait_ready(server: PostgresServer, log: Path, deadline: float) -> None:
    """Until the server accepts a login; fail fast, with its log, if it exits (:class:`PortTaken` if it
    could not bind its port)."""
    import psycopg2

    while True:
        if server.process.poll() is not None:
            output = log.read_text(errors="replace")
            error = PortTaken if port_taken(output) else RuntimeError
            raise error(f"postgres exited with {server.process.returncode}:\n{output}")
        try:
            psycopg2.connect(server.dsn, connect_timeout=2).close()
            return
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"postgres did not accept connections in time:\n{log.read_text()}"
                ) from None
            time.sleep(0.05)


def launch_postgres(
    max_connections: int = 100, extra_settings: dict[str, str] | None = None
) -> PostgresServer:
    """Create, start and return a new server; the caller must call ``stop()``."""
    bindir = find_bindir()
    user = _run_as()
    tmpdir = Path(tempfile.mkdtemp(prefix="poolshift-pg-"))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(tmpdir, entry.pw_uid, entry.pw_gid)
    password = "pw-" + secrets.token_hex(12)
    pwfile = tmpdir / "pwfile"
    pwfile.write_text(password + "\n")
    if user is not None:
        os.chown(pwfile, pwd.getpwnam(user).pw_uid, -1)
    pwfile.chmod(0o600)
    data = tmpdir / "data"
    _run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--pwfile",
            str(pwfile),
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
        user,
    )
    pwfile.unlink()
    settings = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(tmpdir),
        "max_connections": str(max_connections),
        "superuser_reserved_connections": "1",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "shared_buffers": "32MB",
        "log_min_messages": "warning",
        "log_connections": "on",  # client_sessions_logged() counts these lines
    }
    settings.update(extra_settings or {})
    args = [str(bindir / "postgres"), "-D", str(data)]
    for key, value in settings.items():
        args += ["-c", f"{key}={value}"]
    try:
        server = start_on_free_port(lambda port: _start(args, port, user, password, tmpdir))
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    try:
        server.query(f"CREATE DATABASE {DATABASE}")
    except BaseException:
        server.stop()
        raise
    server.database = DATABASE
    return server


def _start(args: list[str], port: int, user: str | None, password: str, tmpdir: Path) -> PostgresServer:
    """One attempt: the server on ``port``, accepting logins; on failure its process has exited."""
    log = tmpdir / "postgres.log"
    with open(log, "wb") as log_file:  # a new log per attempt: _wait_ready reads this attempt's
        process = subprocess.Popen(
            [*args, "-c", f"port={port}"], user=user, stdout=log_file, stderr=subprocess.STDOUT
        )
    server = PostgresServer("127.0.0.1", port, SUPERUSER, password, "postgres", tmpdir, process)
    try:
        _wait_ready(server, log, time.monotonic() + START_TIMEOUT)
    except BaseException:
        server._stop_process()  # no-op when it exited (PortTaken)
        raise
    server.own_sessions += 1  # _wait_ready's successful probe
    return server


@contextlib.contextmanager
def start_postgres(
    max_connections: int = 100, extra_settings: dict[str, str] | None = None
) -> Iterator[PostgresServer]:
    server = launch_postgres(max_connections, extra_settings)
    try:
        yield server
    finally:
        server.stop()
