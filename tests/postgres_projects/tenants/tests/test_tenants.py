import psycopg2
import pytest
from tenants import db, notes


def test_notes_stay_in_their_tenant(tenant):
    notes.add_note(tenant, "ana", "call the plumber")
    assert notes.list_notes(tenant) == [("ana", "call the plumber")]
    assert notes.current_database(tenant) == tenant


def test_two_tenants_do_not_see_each_other():
    first, second = "tenant_two_a", "tenant_two_b"
    db.provision(first)
    db.provision(second)
    try:
        notes.add_note(first, "bo", "only for a")
        assert notes.list_notes(second) == []
        assert notes.list_notes(first) == [("bo", "only for a")]
    finally:
        db.offboard(first)
        db.offboard(second)


def test_offboarding_drops_the_database(tenant):
    notes.add_note(tenant, "cy", "bye")
    notes.list_notes(tenant)
    db.offboard(tenant)
    assert tenant not in db.tenant_names()
    with pytest.raises(psycopg2.OperationalError, match="does not exist"):
        notes.list_notes(tenant)


def test_provisioning_twice_fails_cleanly(tenant):
    with pytest.raises(psycopg2.errors.DuplicateDatabase):
        db.provision(tenant)
    assert notes.list_notes(tenant) == []


def test_scratch_database_is_usable(scratch_database):
    conn = db.get_connection(scratch_database)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE t (x int)")
            cur.execute("INSERT INTO t VALUES (1), (2)")
            cur.execute("SELECT sum(x) FROM t")
            assert cur.fetchone() == (3,)
    finally:
        conn.close()


def test_autocommit_does_not_stick_to_the_control_connection():
    # provision() switches autocommit on for CREATE DATABASE; ordinary work must stay transactional
    db.provision("tenant_autocommit")
    try:
        conn = db.get_connection()
        try:
            assert conn.autocommit is False
            with conn.cursor() as cur:
                cur.execute("INSERT INTO tenants (name) VALUES ('ghost')")
            conn.rollback()
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM tenants WHERE name = 'ghost'")
                assert cur.fetchone() == (0,)
        finally:
            conn.close()
    finally:
        db.offboard("tenant_autocommit")
