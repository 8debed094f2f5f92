"""What happens to session state behind PgBouncer's transaction pooling, and what undoes it.

The facts the shim's PgBouncer mode is built on, pinned against the real PgBouncer and PostgreSQL.
Most tests use ``default_pool_size=1``: every client then gets the same server connection, so what one
client left behind is exactly what the next one finds.

In short: state a client leaves in its session survives its COMMIT and reaches the next client; an undo
run inside the client's own transaction, before COMMIT, removes it (``RESET ALL`` does not reset
``SET ROLE``); ``DISCARD ALL`` cannot run there, and sent after the COMMIT it may reach another server
connection; a ROLLBACK keeps advisory locks and prepared statements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errors
import pytest

from testservers.pgbouncer import PgBouncerServer


@dataclass(frozen=True)
class State:
    leave: str  # the statement leaving the state in the session
    undo: str  # what removes it when run inside the same transaction, before COMMIT
    present: str  # SQL true when a fresh client's session holds it


OTHER_ROLE = "{user}_other"  # a role the bouncer's user may SET ROLE to (see the ``bouncer`` fixture)
STATES = {
    "SET": State(
        "SET search_path TO left_behind, public",
        "RESET ALL",
        "current_setting('search_path') <> '\"$user\", public'",
    ),
    "SET ROLE": State(f'SET ROLE "{OTHER_ROLE}"', "RESET ROLE", "current_user <> session_user"),
    # What psycopg2's set_session(readonly=True) sends in autocommit mode (see the set_session test).
    "set_session default": State(
        "SET default_transaction_read_only TO on",
        "RESET ALL",
        "current_setting('default_transaction_read_only') = 'on'",
    ),
    "temp table": State(
        "CREATE TEMP TABLE left_behind (id int)",
        "DISCARD TEMP",
        "EXISTS (SELECT FROM pg_class WHERE relnamespace = pg_my_temp_schema() AND relkind = 'r')",
    ),
    "advisory lock": State(
        "SELECT pg_advisory_lock(4242)",
        "SELECT pg_advisory_unlock_all()",
        "EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())",
    ),
    "LISTEN": State("LISTEN left_behind", "UNLISTEN *", "EXISTS (SELECT FROM pg_listening_channels())"),
    "PREPARE": State(
        "PREPARE left_behind AS SELECT 1", "DEALLOCATE ALL", "EXISTS (SELECT FROM pg_prepared_statements)"
    ),
    "WITH HOLD cursor": State(
        "DECLARE left_behind CURSOR WITH HOLD FOR SELECT 1", "CLOSE ALL", "EXISTS (SELECT FROM pg_cursors)"
    ),
}
# DISCARD ALL's documented equivalent, minus SET SESSION AUTHORIZATION (superusers only), plus RESET ROLE:
# every part may run inside a transaction block.
UNDO_ALL = (
    "CLOSE ALL; RESET ROLE; RESET ALL; DEALLOCATE ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); "
    "DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES"
)


@dataclass
class Bouncer:
    server: PgBouncerServer

    def sql(self, text: str) -> str:
        return text.replace("{user}", self.server.user)

    def leave(self, conn: Any, kind: str) -> None:
        with conn.cursor() as cur:
            cur.execute(self.sql(STATES[kind].leave))

    def left_behind(self) -> set[str]:
        """The kinds of state a fresh client finds in its (server) session."""
        conn = self.server.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT " + ", ".join(self.sql(s.present) for s in STATES.values()))
                row = cur.fetchone()
        finally:
            conn.close()
        return {kind for kind, present in zip(STATES, row, strict=True) if present}


def _bouncer(factory: Callable[..., PgBouncerServer], **options: Any) -> Iterator[Bouncer]:
    server = factory(**options)
    other = OTHER_ROLE.format(user=server.user)
    server.postgres.query(f'CREATE ROLE "{other}"')
    server.postgres.query(f'GRANT "{other}" TO "{server.user}"')
    yield Bouncer(server)
    server.stop()  # first: no session may still be using the role
    server.postgres.query(f'DROP ROLE "{other}"')


@pytest.fixture
def bouncer(pgbouncer_factory: Callable[..., PgBouncerServer]) -> Iterator[Bouncer]:
    """Transaction pooling with one server connection: every client meets the previous one's session."""
    yield from _bouncer(pgbouncer_factory, default_pool_size=1)


@pytest.mark.parametrize("kind", STATES)
def test_state_left_by_a_committed_transaction_reaches_the_next_client(bouncer: Bouncer, kind: str) -> None:
    conn = bouncer.server.connect()
    bouncer.leave(conn, kind)
    conn.commit()
    conn.close()
    assert bouncer.left_behind() == {kind}


@pytest.mark.parametrize("kind", STATES)
def test_an_undo_before_commit_in_the_same_transaction_leaves_nothing(bouncer: Bouncer, kind: str) -> None:
    conn = bouncer.server.connect()
    bouncer.leave(conn, kind)
    with conn.cursor() as cur:
        cur.execute(STATES[kind].undo)
    conn.commit()
    conn.close()
    assert bouncer.left_behind() == set()


def test_one_undo_sequence_before_commit_clears_every_kind_at_once(bouncer: Bouncer) -> None:
    conn = bouncer.server.connect()
    for kind in STATES:
        bouncer.leave(conn, kind)
    with conn.cursor() as cur:
        cur.execute(UNDO_ALL)
    conn.commit()
    conn.close()
    assert bouncer.left_behind() == set()


def test_reset_all_does_not_reset_set_role(bouncer: Bouncer) -> None:
    conn = bouncer.server.connect()
    bouncer.leave(conn, "SET ROLE")
    with conn.cursor() as cur:
        cur.execute("RESET ALL")
    conn.commit()
    conn.close()
    assert bouncer.left_behind() == {"SET ROLE"}


def test_discard_all_inside_the_callers_transaction_fails_and_loses_its_work(
    bouncer: Bouncer, scratch_table: str
) -> None:
    bouncer.server.postgres.query(f'GRANT INSERT, SELECT ON {scratch_table} TO "{bouncer.server.user}"')
    conn = bouncer.server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {scratch_table} VALUES (1)")
            with pytest.raises(psycopg2.errors.ActiveSqlTransaction, match="transaction block"):
                cur.execute("DISCARD ALL")
        conn.commit()  # of an aborted transaction: a rollback
    finally:
        conn.close()
    assert bouncer.server.postgres.query(f"SELECT count(*) FROM {scratch_table}") == [(0,)]


def test_discard_all_after_commit_in_the_same_query_string_is_refused_too(bouncer: Bouncer) -> None:
    conn = bouncer.server.connect()
    try:
        bouncer.leave(conn, "SET")
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.ActiveSqlTransaction):
            cur.execute("COMMIT; DISCARD ALL")  # the COMMIT went through, the DISCARD did not
    finally:
        conn.close()
    assert bouncer.left_behind() == {"SET"}


def test_a_rollback_keeps_advisory_locks_and_prepared_statements(bouncer: Bouncer) -> None:
    conn = bouncer.server.connect()
    for kind in STATES:
        bouncer.leave(conn, kind)
    conn.rollback()
    conn.close()
    assert bouncer.left_behind() == {"advisory lock", "PREPARE"}


def test_after_an_error_rollback_and_undo_in_one_query_string_leave_nothing(bouncer: Bouncer) -> None:
    """One simple-query message runs on one server connection: the undo cannot land elsewhere."""
    conn = bouncer.server.connect()
    try:
        for kind in STATES:
            bouncer.leave(conn, kind)
        with conn.cursor() as cur:
            with pytest.raises(psycopg2.errors.DivisionByZero):
                cur.execute("SELECT 1 / 0")
            cur.execute("ROLLBACK; SELECT pg_advisory_unlock_all(); DEALLOCATE ALL")
    finally:
        conn.close()
    assert bouncer.left_behind() == set()


def test_set_session_leaves_session_defaults_only_in_autocommit_mode(bouncer: Bouncer) -> None:
    """psycopg2 sends BEGIN READ ONLY per transaction, but SET default_transaction_* in autocommit mode."""
    conn = bouncer.server.connect()
    conn.set_session(readonly=True)
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
    conn.commit()
    assert bouncer.left_behind() == set()
    conn.autocommit = True
    conn.set_session(readonly=True)
    assert bouncer.left_behind() == {"set_session default"}
    conn.close()


@pytest.fixture
def bouncer_of_two(pgbouncer_factory: Callable[..., PgBouncerServer]) -> Iterator[Bouncer]:
    yield from _bouncer(pgbouncer_factory, default_pool_size=2)


def _backend_pid(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return int(cur.fetchone()[0])


def test_a_discard_all_sent_after_commit_can_reach_another_server_connection(
    bouncer_of_two: Bouncer,
) -> None:
    """What the shim's reset does today: COMMIT, then DISCARD ALL as a transaction of its own."""
    server = bouncer_of_two.server
    caller, other = server.connect(), server.connect()
    try:
        for conn in (caller, other):
            _backend_pid(conn)  # both in a transaction at once: two server connections now exist
        for conn in (caller, other):
            conn.commit()
        bouncer_of_two.leave(caller, "SET")
        dirty = _backend_pid(caller)
        caller.commit()
        # Another client starts a transaction between the caller's COMMIT and its reset; PgBouncer hands
        # out the most recently released server connection first (LIFO), the one the caller dirtied.
        assert _backend_pid(other) == dirty
        caller.autocommit = True
        with caller.cursor() as cur:
            cur.execute("DISCARD ALL")  # reaches the only idle server connection: the clean one
        with other.cursor() as cur:
            cur.execute("SHOW search_path")
            assert cur.fetchone() == ("left_behind, public",)
    finally:
        caller.close()
        other.close()


@pytest.fixture
def bouncer_resetting_always(pgbouncer_factory: Callable[..., PgBouncerServer]) -> Iterator[Bouncer]:
    yield from _bouncer(
        pgbouncer_factory, default_pool_size=1, extra_settings={"server_reset_query_always": "1"}
    )


def test_server_reset_query_always_discards_after_every_transaction(
    bouncer_resetting_always: Bouncer,
) -> None:
    """No state reaches the next client, and none survives the client's own transaction either."""
    bouncer = bouncer_resetting_always
    conn = bouncer.server.connect()
    try:
        for kind in STATES:
            bouncer.leave(conn, kind)
        conn.commit()
        assert bouncer.left_behind() == set()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SET search_path TO mine, public")
            cur.execute("SHOW search_path")
            assert cur.fetchone() == ('"$user", public',)  # gone before the caller's next statement
    finally:
        conn.close()
