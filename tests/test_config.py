"""Settings and URL resolution: explicit > environment > defaults; bad values name the variable."""

from __future__ import annotations

import pytest

import db_utils
from db_utils.config import ConfigError
from db_utils.postgres.settings import default_database_url, resolve_settings
from tests.pg_helpers import fair_pool


@pytest.fixture(autouse=True)
def _isolated_pools(clean_env):
    db_utils.dispose_pools()
    yield
    db_utils.dispose_pools()


def test_database_url_wins_over_postgres_variables():
    env = {"DATABASE_URL": "postgresql://u:secret@db.example:6543/app", "POSTGRES_HOST": "other"}
    url = default_database_url(env)
    assert (url.drivername, url.host, url.port, url.database, url.username) == (
        "postgresql+psycopg2",
        "db.example",
        6543,
        "app",
        "u",
    )


def test_heroku_scheme_is_accepted():
    assert default_database_url({"DATABASE_URL": "postgres://u@h/d"}).drivername == "postgresql+psycopg2"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, ("localhost", 5432, "postgres", "postgres", None)),
        (
            {"PGHOST": "pg", "PGPORT": "6000", "PGDATABASE": "pgdb", "PGUSER": "pgu", "PGPASSWORD": "pgpw"},
            ("pg", 6000, "pgdb", "pgu", "pgpw"),
        ),
        (
            {
                "POSTGRES_HOST": "ph",
                "PGHOST": "pg",
                "POSTGRES_DB": "pdb",
                "PGDATABASE": "pgdb",
                "PGUSER": "pgu",
            },
            ("ph", 5432, "pdb", "pgu", None),
        ),
        ({"POSTGRES_HOST": "  ", "PGHOST": "pg"}, ("pg", 5432, "postgres", "postgres", None)),
        (
            {"POSTGRES_PASSWORD": "pw", "PGPASSWORD": "other", "POSTGRES_PORT": "7000", "PGPORT": "1"},
            ("localhost", 7000, "postgres", "postgres", "pw"),
        ),
    ],
)
def test_each_parameter_resolves_postgres_then_libpq_then_default(env, expected):
    url = default_database_url(env)
    assert (url.host, url.port, url.database, url.username, url.password) == expected


def test_bad_port_names_the_variable():
    with pytest.raises(ConfigError, match=r"POSTGRES_PORT='abc'"):
        default_database_url({"POSTGRES_PORT": "abc"})
    with pytest.raises(ConfigError, match=r"PGPORT='70000'"):
        default_database_url({"PGPORT": "70000"})


def test_bad_database_url_names_database_url_without_the_password(clean_env):
    clean_env.setenv("DATABASE_URL", "mysql://user:hunter2@h/d")
    with pytest.raises(ConfigError) as info:
        db_utils.get_connection_pool()
    assert "DATABASE_URL" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_sqlite_url_is_refused_with_a_pointer_to_the_sqlite_shim():
    with pytest.raises(ConfigError, match=r"db_utils\.sqlite"):
        db_utils.get_connection_pool("sqlite:///x.db")


def test_explicit_settings_beat_environment(clean_env):
    clean_env.setenv("DB_POOL_SIZE", "3")
    clean_env.setenv("DB_POOL_PING_AFTER", "2.5")
    settings = resolve_settings()
    ping_after = settings.ping_after
    assert (settings.pool_size, ping_after) == (3, 2.5)
    settings = resolve_settings(pool_size=7, ping_after=0, pool_timeout=4)
    ping_after = settings.ping_after
    assert (settings.pool_size, settings.timeout, ping_after) == (7, 4, 0.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DB_POOL_SIZE", "0"),
        ("DB_POOL_SIZE", "ten"),
        ("DB_MAX_OVERFLOW", "-1"),
        ("DB_POOL_TIMEOUT", "soon"),
        ("DB_POOL_RECYCLE", "-5"),
        ("DB_POOL_PRE_PING", "maybe"),
        ("DB_POOL_PING_AFTER", "-1"),
        ("DB_POOL_MODE", "transactional"),
    ],
)
def test_bad_environment_value_names_variable_and_value(clean_env, name, value):
    clean_env.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        db_utils.get_connection_pool("postgresql://u@127.0.0.1:1/d")
    assert name in str(info.value)
    assert value in str(info.value)


def test_unknown_setting_is_a_type_error():
    with pytest.raises(TypeError, match="pool_sise"):
        db_utils.get_connection_pool("postgresql://u@127.0.0.1:1/d", pool_sise=3)


def test_one_engine_per_url_and_conflicting_settings_are_refused():
    url = "postgresql://u:pw@127.0.0.1:1/d"
    first = db_utils.get_connection_pool(url, pool_size=2)
    assert db_utils.get_connection_pool(url) is first
    assert db_utils.get_connection_pool(url, pool_size=2) is first
    assert fair_pool(first).size() == 2
    with pytest.raises(ConfigError, match="different settings"):
        db_utils.get_connection_pool(url, pool_size=3)
    assert db_utils.dispose_pools() == 1
    assert fair_pool(db_utils.get_connection_pool(url, pool_size=3)).size() == 3


def test_engines_are_created_lazily_and_never_connect_eagerly():
    engine = db_utils.get_connection_pool("postgresql://u:pw@127.0.0.1:1/d")
    assert fair_pool(engine).checkedin() == 0
    assert engine.dialect.name == "postgresql"


def test_environment_is_obeyed_on_every_call_like_the_legacy_helper(clean_env):
    # Legacy helpers read POSTGRES_* on every call: a changed variable must take effect at once, and
    # switching back must find the first pool again rather than build a third.
    clean_env.setenv("DATABASE_URL", "postgresql://u@127.0.0.1:1/first")
    first = db_utils.get_connection_pool()
    clean_env.setenv("DATABASE_URL", "postgresql://u@127.0.0.1:1/second")
    second = db_utils.get_connection_pool()
    assert second.url.database == "second"
    clean_env.setenv("DATABASE_URL", "postgresql://u@127.0.0.1:1/first")
    assert db_utils.get_connection_pool() is first
    clean_env.delenv("DATABASE_URL")
    clean_env.setenv("POSTGRES_DB", "third")
    assert db_utils.get_connection_pool().url.database == "third"


def test_default_and_explicit_url_share_one_pool(clean_env):
    clean_env.setenv("DATABASE_URL", "postgresql://u:pw@127.0.0.1:1/d")
    assert db_utils.get_connection_pool() is db_utils.get_connection_pool(
        "postgresql+psycopg2://u:pw@127.0.0.1:1/d"
    )


def test_a_port_that_is_not_a_number_names_the_variable(clean_env):
    clean_env.setenv("DATABASE_URL", "postgresql://u:s3cret@host:notaport/db")
    with pytest.raises(ConfigError, match="DATABASE_URL has a port that is not a number") as error:
        default_database_url()
    assert "s3cret" not in str(error.value)


def test_an_unencoded_at_sign_in_the_password_is_rejected_without_showing_it(clean_env):
    clean_env.setenv("DATABASE_URL", "postgresql://u:p@ss-tail@host/db")
    with pytest.raises(ConfigError, match=r"unencoded '@'.*%40") as error:
        default_database_url()
    assert "ss-tail" not in str(error.value)
    clean_env.setenv("DATABASE_URL", "postgresql://u:p%40ss-tail@host/db")
    assert default_database_url().password == "p@ss-tail"


@pytest.mark.parametrize(
    ("variable", "field", "value"),
    [
        ("DB_POOL_PING_TIMEOUT", "ping_timeout", 2.5),
        ("DB_POOL_LEAK_THRESHOLD", "leak_threshold", 30.0),
        ("DB_RETRY_DEADLINE", "retry_deadline", 4.0),
    ],
)
def test_fault_knobs_are_read_and_checked(clean_env, variable, field, value):
    clean_env.setenv(variable, str(value))
    assert getattr(resolve_settings(), field) == value
    clean_env.setenv(variable, "-1")
    with pytest.raises(ConfigError, match=variable):
        resolve_settings()
