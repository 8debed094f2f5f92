"""A throwaway PgBouncer on 127.0.0.1 in front of a throwaway PostgreSQL (testservers.postgres).

The setup production uses when one process's pool is not the bound that matters: many clients talk to
PgBouncer, PgBouncer keeps at most ``default_pool_size`` server connections per database and user.

Each bouncer gets its own temp directory (config, auth file, log), a free port on 127.0.0.1 (another one if
something takes it before PgBouncer binds it: testservers.ports), no Unix socket, and its own login role
on the PostgreSQL server, so the server connections it opens can be counted by user name
(:meth:`PgBouncerServer.server_connections`) whatever else uses the server. Clients
authenticate with scram-sha-256 against an auth file holding the role's SCRAM secret, copied from
``pg_authid`` (the password itself is never written to disk); PgBouncer reuses that secret to log in to
PostgreSQL with scram-sha-256 too. It runs in the foreground as this process's child (never the Debian
package's service, nothing under /etc/pgbouncer is read), as the unprivileged ``postgres`` OS user when
we are root, since PgBouncer refuses to run as root.

Needs the ``pgbouncer`` binary (Debian package ``pgbouncer``); :class:`PgBouncerUnavailable` says so.
"""

from __future__ import annotations

import contextlib
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
from typing import Any

from testservers.binaries import find_binary, stop_process
from testservers.ports import PortTaken, port_taken, start_on_free_port
from testservers.postgres import Endpoint, PostgresServer, _run_as

HOST = "127.0.0.1"
ADMIN_DATABASE = "pgbouncer"  # PgBouncer's admin console (SHOW POOLS, SHOW STATS...)
START_TIMEOUT = 30.0  # seconds for PgBouncer to serve a query through to PostgreSQL after launch
STOP_TIMEOUT = 30.0  # seconds for PgBouncer to exit, then for PostgreSQL to see its connections close


class PgBouncerUnavailable(RuntimeError):
    """No pgbouncer binary on this machine."""


def find_pgbouncer() -> Path:
    """``$PGBOUNCER_BIN``, else ``pgbouncer`` on PATH, else Debian's ``/usr/sbin/pgbouncer``."""
    return find_binary("pgbouncer", "PGBOUNCER_BIN", "pgbouncer", PgBouncerUnavailable)


@dataclass
class PgBouncerServer(Endpoint):
    """One running PgBouncer. Use :func:`start_pgbouncer` (a context manager) or :func:`launch_pgbouncer`."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str
    tmpdir: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    postgres: PostgresServer = field(repr=False)
    pool_mode: str
    default_pool_size: int
    max_client_conn: int
    _role_dropped: bool = field(default=False, repr=False)

    @property
    def log(self) -> Path:
        return self.tmpdir / "pgbouncer.log"

    def connect(self, **kwargs: Any) -> Any:
        """A plain psycopg2 connection through PgBouncer, outside any pool."""
        import psycopg2

        return psycopg2.connect(self.dsn, **kwargs)

    def admin(self, command: str) -> list[dict[str, Any]]:
        """Run one admin-console command (``SHOW POOLS``...); rows as dicts keyed by column name."""
        import psycopg2

        conn = psycopg2.connect(self.dsn.replace(f"dbname={self.database}", f"dbname={ADMIN_DATABASE}"))
        try:
            conn.autocommit = True  # the console knows no transactions
            with conn.cursor() as cur:
                cur.execute(command)
                if cur.description is None:
                    return []
                names = [column.name for column in cur.description]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        finally:
            conn.close()

    def server_connections(self) -> int:
        """Connections PgBouncer holds open to PostgreSQL now, counted by PostgreSQL itself."""
        rows = self.postgres.query(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND backend_type = 'client backend'",
            (self.user,),
        )
        count: Any = rows[0][0]
        return int(count)

    def stop(self) -> None:
        """Stop PgBouncer, wait for PostgreSQL to see its connections go, drop its role, remove its files."""
        self._stop_process()
        if not self._role_dropped and self.postgres.process.poll() is None:
            _drop_role(self.postgres, self.user)
            self._role_dropped = True
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def _stop_process(self) -> None:
        """Stop PgBouncer and wait for PostgreSQL to see its connections go (the role and files stay)."""
        # SIGTERM is PgBouncer's immediate shutdown; SIGINT would wait for every client to leave.
        stop_process(self.process, signal.SIGTERM, STOP_TIMEOUT)
        if not self._role_dropped and self.postgres.process.poll() is None:
            _wait_server_connections_gone(self, time.monotonic() + STOP_TIMEOUT)


def _wait_server_connections_gone(server: PgBouncerServer, deadline: float) -> None:
    """A backend exits when it reads PgBouncer's closed socket: soon, but not synchronously with the exit."""
    while server.server_connections():
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"PostgreSQL still has {server.server_connections()} connection(s) of the stopped PgBouncer"
            )
        time.sleep(0.02)


def render_config(
    tmpdir: Path, port: int, role: str, postgres: PostgresServer, settings: dict[str, str]
) -> str:
    """The whole configuration (ini): the test database only, ``role`` only, the admin console for it."""
    base = {
        "listen_addr": HOST,
        "listen_port": str(port),
        "unix_socket_dir": "",  # no socket file in /tmp; clients connect over TCP
        "auth_type": "scram-sha-256",
        "auth_file": str(tmpdir / "userlist.txt"),
        "admin_users": role,
        "listen_backlog": "1024",  # the load tests connect hundreds of clients at once
        "log_connections": "0",  # a line per client would bury the lines that explain a failure
        "log_disconnections": "0",
    }
    lines = [
        "[databases]",
        f"{postgres.database} = host={postgres.host} port={postgres.port} dbname={postgres.database}",
        "",
        "[pgbouncer]",
        *(f"{key} = {value}" for key, value in (base | settings).items()),
    ]
    return "\n".join(lines) + "\n"


def launch_pgbouncer(
    postgres: PostgresServer,
    *,
    pool_mode: str = "transaction",
    default_pool_size: int = 20,
    max_client_conn: int = 100,
    extra_settings: dict[str, str] | None = None,
) -> PgBouncerServer:
    """Start a PgBouncer in front of ``postgres``'s test database; the caller must call ``stop()``.

    ``extra_settings`` are further ``[pgbouncer]`` settings (e.g. ``server_reset_query_always``).
    """
    binary = find_pgbouncer()
    user = _run_as()
    settings = {
        "pool_mode": pool_mode,
        "default_pool_size": str(default_pool_size),
        "max_client_conn": str(max_client_conn),
    } | (extra_settings or {})
    tmpdir = Path(tempfile.mkdtemp(prefix="poolshift-pgbouncer-"))
    role = "poolshift_app_" + secrets.token_hex(4)
    password = "pw-" + secrets.token_hex(12)

    def attempt(port: int) -> PgBouncerServer:
        """PgBouncer on ``port``, serving queries; on failure its process has exited."""
        config = render_config(tmpdir, port, role, postgres, settings)
        server = PgBouncerServer(
            host=HOST,
            port=port,
            user=role,
            password=password,
            database=postgres.database,
            tmpdir=tmpdir,
            process=_spawn(binary, tmpdir, user, config),
            postgres=postgres,
            pool_mode=pool_mode,
            default_pool_size=default_pool_size,
            max_client_conn=max_client_conn,
        )
        try:
            _wait_ready(server, time.monotonic() + START_TIMEOUT)
        except BaseException:
            server._stop_process()  # no-op when it exited (PortTaken)
            raise
        return server

    try:
        if user is not None:
            os.chown(tmpdir, pwd.getpwnam(user).pw_uid, -1)
        secret = _create_role(postgres, role, password)
        try:
            _write_private(tmpdir / "userlist.txt", f'"{role}" "{secret}"\n', user)
            return start_on_free_port(attempt)
        except BaseException:
            if postgres.process.poll() is None:
                _drop_role(postgres, role)
            raise
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise


def _spawn(binary: Path, tmpdir: Path, user: str | None, config: str) -> subprocess.Popen[bytes]:
    """Write the config, start PgBouncer in the foreground with its output in the log (a new log per start:
    _wait_ready reads this start's)."""
    (tmpdir / "pgbouncer.ini").write_text(config)
    with open(tmpdir / "pgbouncer.log", "wb") as log:
        return subprocess.Popen(
            [str(binary), str(tmpdir / "pgbouncer.ini")],
            user=user,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def _create_role(postgres: PostgresServer, role: str, password: str) -> str:
    """A login role allowed to work in the test database; returns its SCRAM secret."""
    postgres.query(f'CREATE ROLE "{role}" LOGIN PASSWORD %s', (password,))
    postgres.query(f'GRANT CONNECT, CREATE, TEMPORARY ON DATABASE "{postgres.database}" TO "{role}"')
    postgres.query(f'GRANT USAGE, CREATE ON SCHEMA public TO "{role}"')
    (secret,) = postgres.query("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))[0]
    if not str(secret).startswith("SCRAM-SHA-256$"):
        raise RuntimeError("PostgreSQL did not store a SCRAM secret (password_encryption is not scram)")
    return str(secret)


def _drop_role(postgres: PostgresServer, role: str) -> None:
    """The role and everything it owns or was granted (objects its clients created included)."""
    postgres.query(f'DROP OWNED BY "{role}"')
    postgres.query(f'DROP ROLE "{role}"')


def _write_private(path: Path, text: str, owner: str | None) -> None:
    """Create ``path`` readable by ``owner`` only, before any secret is in it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        if owner is not None:
            os.fchown(file.fileno(), pwd.getpwnam(owner).pw_uid, -1)
        file.write(text)


def _wait_ready(server: PgBouncerServer, deadline: float) -> None:
    """Until a query goes through PgBouncer to PostgreSQL; fail fast, with PgBouncer's log, if it exits
    (:class:`PortTaken` if it could not bind its port)."""
    import psycopg2

    while True:
        if server.process.poll() is not None:
            output = _read_log(server)
            error = PortTaken if port_taken(output) else RuntimeError
            raise error(f"pgbouncer exited with {server.process.returncode}:\n{output}")
        try:
            conn = server.connect(connect_timeout=2)
            try:
                # Autocommit: a client leaving mid-transaction would make PgBouncer drop the server link.
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
                return
            finally:
                conn.close()
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer did not serve a query in time:\n{_read_log(server)}") from None
            time.sleep(0.05)


def _read_log(server: PgBouncerServer) -> str:
    return server.log.read_text(errors="replace") if server.log.exists() else "(no log)"


@contextlib.contextmanager
def start_pgbouncer(
    postgres: PostgresServer,
    *,
    pool_mode: str = "transaction",
    default_pool_size: int = 20,
    max_client_conn: int = 100,
    extra_settings: dict[str, str] | None = None,
) -> Iterator[PgBouncerServer]:
    server = launch_pgbouncer(
        postgres,
        pool_mode=pool_mode,
        default_pool_size=default_pool_size,
        max_client_conn=max_client_conn,
        extra_settings=extra_settings,
    )
    try:
        yield server
    finally:
        server.stop()
