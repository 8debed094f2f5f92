"""The return path's shortcut (``reset.is_pristine``): taken only when the reset would have nothing to do.

Each test leaves exactly one thing behind that the shortcut's single comparison could overlook, and proves
from the server or the next borrower that the full reset still ran.
"""

from __future__ import annotations

import threading
from typing import Any

import psycopg2.extensions
import psycopg2.extras
import pytest

import db_utils
from tests.pg_helpers import present

pytestmark = pytest.mark.postgres


@pytest.fixture(autouse=True)
def pg(pg_pools):
    # One connection only, so the next borrower is guaranteed to get the same one (unless discarded).
    db_utils.get_connection_pool(pool_size=1, max_overflow=0)
    return pg_pools


def figures() -> dict[str, Any]:
    (only,) = db_utils.pool_status()["postgres"].values()
    return dict(only)


def test_transaction_begun_in_sql_is_rolled_back_after_autocommit_is_switched_back(pg, scratch_table):
    # psycopg2's own status says READY and autocommit is back to its default: only libpq knows the server
    # is inside a transaction.
    pg.query(f"INSERT INTO {scratch_table} VALUES (1)")
    conn = present(db_utils.get_postgres_connection())
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("BEGIN")
    cur.execute(f"SELECT * FROM {scratch_table} WHERE id = 1 FOR UPDATE")
    conn.autocommit = False
    assert conn.status == psycopg2.extensions.STATUS_READY
    conn.close()
    other = pg.connect()
    try:
        other.cursor().execute(f"SELECT * FROM {scratch_table} WHERE id = 1 FOR UPDATE NOWAIT")
    finally:
        other.close()


def test_attribute_added_to_the_connection_is_removed_for_the_next_borrower():
    conn = present(db_utils.get_postgres_connection())
    conn.dbapi_connection.left_behind = 1
    conn.close()
    again = present(db_utils.get_postgres_connection())
    try:
        assert not hasattr(again.dbapi_connection, "left_behind")
    finally:
        again.close()
    assert figures()["discarded_dirty"] == 0


def test_notices_container_replaced_by_a_borrower_is_restored():
    class Notices(list[str]):
        pass

    conn = present(db_utils.get_postgres_connection())
    conn.notices = Notices()  # empty, so equal to a fresh list: only its type tells
    conn.close()
    again = present(db_utils.get_postgres_connection())
    try:
        assert type(again.notices) is list
    finally:
        again.close()


def test_typecaster_replaced_for_the_same_oids_is_undone():
    # A replaced caster compares equal to the pool's (same OIDs): only identity tells them apart.
    conn = present(db_utils.get_postgres_connection())
    psycopg2.extras.register_uuid(None, conn.dbapi_connection)
    conn.close()
    again = present(db_utils.get_postgres_connection())
    try:
        with again.cursor() as cur:
            cur.execute("SELECT '00000000-0000-0000-0000-000000000001'::uuid")
            assert cur.fetchone()[0] == "00000000-0000-0000-0000-000000000001"
    finally:
        again.close()


def test_counts_taken_without_a_lock_stay_exact_across_threads():
    db_utils.dispose_pools()
    db_utils.get_connection_pool(pool_size=4, max_overflow=0)
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for _ in range(100):
            db_utils.execute_with_pool(lambda conn: None)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = figures()
    assert stats["checkouts"] == stats["checkins"] == 800
    assert stats["checked_out"] == 0
    assert stats["reuses"] == 800 - stats["connections_created"]


# -- the typecaster dicts: empty at connect, so the single comparison covers them ---------------------


def _next_borrower_reads_uuid_as_text() -> int:
    """Borrow again: a uuid comes back as text (psycopg2's default); returns that connection's backend pid."""
    again = present(db_utils.get_postgres_connection())
    try:
        with again.cursor() as cur:
            cur.execute("SELECT '00000000-0000-0000-0000-000000000001'::uuid, 7")
            assert cur.fetchone() == ("00000000-0000-0000-0000-000000000001", 7)
        return int(again.get_backend_pid())
    finally:
        again.close()


def test_a_pooled_connection_starts_with_no_typecasters_of_its_own():
    # The precondition of the one-comparison pristine check: the dialect's UUID casters are removed, so
    # psycopg2's global table decides (uuid as str, as from psycopg2.connect).
    conn = present(db_utils.get_postgres_connection())
    try:
        assert conn.string_types == {}
        assert conn.binary_types == {}
    finally:
        conn.close()
    _next_borrower_reads_uuid_as_text()


def test_typecaster_written_into_the_forwarded_dict_is_undone_and_the_connection_reused():
    conn = present(db_utils.get_postgres_connection())
    pid = conn.get_backend_pid()
    # No register_type: the handle forwards string_types, and the dict is mutable.
    conn.string_types[2950] = psycopg2.extensions.new_type((2950,), "UUID_AS_BYTES", lambda v, c: b"x")
    conn.close()
    assert _next_borrower_reads_uuid_as_text() == pid  # the same connection, reset, not replaced
    assert figures()["discarded_dirty"] == 0


def test_binary_typecaster_written_by_a_borrower_is_undone():
    conn = present(db_utils.get_postgres_connection())
    conn.binary_types[23] = psycopg2.extensions.new_type((23,), "NEVER", lambda v, c: "never")
    conn.close()
    again = present(db_utils.get_postgres_connection())
    try:
        assert again.binary_types == {}
    finally:
        again.close()


def test_typecaster_replaced_on_a_cursor_leaves_the_connection_pristine():
    # register_type on a cursor lands in the cursor's own dict, which dies with it: nothing to undo.
    conn = present(db_utils.get_postgres_connection())
    pid = conn.get_backend_pid()
    with conn.cursor() as cur:
        psycopg2.extras.register_uuid(None, cur)
        cur.execute("SELECT '00000000-0000-0000-0000-000000000001'::uuid")
        assert str(cur.fetchone()[0]) == "00000000-0000-0000-0000-000000000001"
    conn.close()
    assert _next_borrower_reads_uuid_as_text() == pid  # the same connection, reset, not replaced


INT_AS_TEXT = psycopg2.extensions.new_type((23,), "INT_AS_TEXT", lambda value, cursor: f"int:{value}")


class _CastingConnection(psycopg2.extensions.connection):  # type: ignore[misc]  # psycopg2 has no stubs
    """A user's connection class that registers a typecaster on every connection it opens."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        psycopg2.extensions.register_type(INT_AS_TEXT, self)


def test_connect_time_typecasters_replaced_for_the_same_oids_are_put_back(pg):
    # Connect-time typecasters (not empty): the return compares them by identity, since a caster for
    # the same OIDs compares equal to the original.
    from db_utils.postgres import connect

    def select_int(conn: Any) -> Any:
        with conn.cursor() as cur:
            cur.execute("SELECT 7")
            return cur.fetchone()[0]

    conn = connect(pg.dsn, connection_factory=_CastingConnection)
    assert select_int(conn) == "int:7"
    same_oids = psycopg2.extensions.new_type((23,), "INT_AS_TEXT", lambda value, cursor: "replaced")
    psycopg2.extensions.register_type(same_oids, conn.dbapi_connection)
    assert select_int(conn) == "replaced"
    conn.close()
    again = connect(pg.dsn, connection_factory=_CastingConnection)
    try:
        assert select_int(again) == "int:7"
    finally:
        again.close()


# -- an unexposed connection: its return reads back only what its cursors and the server can change ---


def _exposed(handle: Any) -> bool:
    """Whether the pool counts ``handle``'s connection as exposed (read without exposing it)."""
    return bool(handle._lease.facts.exposed)


def test_a_lease_that_only_used_cursors_leaves_its_connection_unexposed_and_reused():
    conn = present(db_utils.get_postgres_connection())
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
    with conn:  # psycopg2's transaction block, through the handle's own methods
        with conn.cursor() as cur:
            cur.execute("SELECT 2")
    conn.commit()
    assert not _exposed(conn)
    conn.close()
    execute_pid = db_utils.execute_with_pool(_select_pid)
    assert _next_borrower_reads_uuid_as_text() == execute_pid  # the same connection, kept
    assert figures()["discarded_dirty"] == 0


def _select_pid(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return int(cur.fetchone()[0])


def test_notices_raised_on_an_unexposed_connection_are_cleared_for_the_next_borrower():
    conn = present(db_utils.get_postgres_connection())
    with conn.cursor() as cur:
        cur.execute("DO $$ BEGIN RAISE NOTICE 'left behind'; END $$")
    conn.commit()
    assert not _exposed(conn)
    conn.close()
    again = present(db_utils.get_postgres_connection())
    try:
        assert again.notices == []
    finally:
        again.close()


def _next_borrower_has_autocommit_off() -> None:
    again = present(db_utils.get_postgres_connection())
    try:
        assert again.autocommit is False
    finally:
        again.close()


def test_a_setting_changed_through_a_cursors_connection_is_reset():
    conn = present(db_utils.get_postgres_connection())
    with conn.cursor() as cur:
        cur.connection.autocommit = True  # psycopg2's cursor.connection is the real connection
    assert _exposed(conn)
    conn.close()
    _next_borrower_has_autocommit_off()


def _a_kept_reference_changed_under_the_next_borrower_is_reset(kept: Any) -> None:
    """``kept``, the real connection a borrower held on to past close(), is changed while the pool's next
    borrower (who only uses cursors) holds it: that borrower's return must still read everything back."""
    borrowed = present(db_utils.get_postgres_connection())
    with borrowed.cursor() as cur:
        cur.execute("SELECT 1")
    borrowed.commit()
    kept.set_session(readonly=True)
    borrowed.close()
    again = present(db_utils.get_postgres_connection())
    try:
        assert again.readonly is None
        with again.cursor() as cur:
            cur.execute("SHOW transaction_read_only")
            assert cur.fetchone()[0] == "off"
    finally:
        again.close()


def test_an_exposed_connection_stays_exposed_so_a_reference_kept_past_close_is_caught_later():
    # Misuse, but legacy code does keep references.
    first = present(db_utils.get_postgres_connection())
    kept = first.dbapi_connection
    first.close()
    _a_kept_reference_changed_under_the_next_borrower_is_reset(kept)


def test_a_connection_checked_out_through_sqlalchemy_counts_as_exposed():
    # engine.raw_connection() (SQLAlchemy's own path) hands the real connection to the application.
    fairy = db_utils.get_connection_pool().raw_connection()
    kept = fairy.dbapi_connection
    fairy.close()
    _a_kept_reference_changed_under_the_next_borrower_is_reset(kept)


class _SettingCursor(psycopg2.extensions.cursor):  # type: ignore[misc]  # psycopg2 has no stubs
    """An application's cursor class whose constructor changes the connection it is given."""

    def __init__(self, connection: Any, *args: Any, **kwargs: Any) -> None:
        connection.autocommit = True
        super().__init__(connection, *args, **kwargs)


def test_a_cursor_class_of_the_application_exposes_the_connection_it_is_given():
    conn = present(db_utils.get_postgres_connection())
    conn.cursor(cursor_factory=_SettingCursor).close()
    assert _exposed(conn)
    conn.close()
    _next_borrower_has_autocommit_off()


def test_psycopg2s_own_cursor_classes_leave_the_connection_unexposed():
    conn = present(db_utils.get_postgres_connection())
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute("SELECT 1 AS one")
        assert cur.fetchone() == {"one": 1}
    assert not _exposed(conn)
    conn.close()


class _SelfSettingConnection(psycopg2.extensions.connection):  # type: ignore[misc]  # psycopg2 has no stubs
    """An application's connection class whose own cursor() changes the connection (``self``)."""

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        self.autocommit = True
        return super().cursor(*args, **kwargs)


def test_a_connection_class_of_the_application_counts_as_exposed_from_the_start(pg):
    from db_utils.postgres import connect

    conn = connect(pg.dsn, connection_factory=_SelfSettingConnection)
    assert _exposed(conn)
    conn.cursor().close()
    conn.close()
    again = connect(pg.dsn, connection_factory=_SelfSettingConnection)
    try:
        assert again.autocommit is False
    finally:
        again.close()
