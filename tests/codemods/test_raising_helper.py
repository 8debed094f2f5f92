"""Which helpers always hand back a connection (raising when they cannot connect), and which run nothing else.

PS101 rewrites a caller without a ``None`` guard only on these facts (see
``codemods/legacy_helpers/raising_helper.py``): every near miss below must keep them unproven.
"""

from __future__ import annotations

import textwrap

import pytest

from codemods.legacy_helpers.equivalence import helper_differences
from codemods.legacy_helpers.raising_helper import NEVER_RETURNS_NONE, RUNS_ONLY_THE_CONNECT


def facts(source: str, name: str = "get_conn") -> set[str]:
    differences = helper_differences(textwrap.dedent(source), name, contract_only=True)
    assert differences is not None
    return set(differences) & {NEVER_RETURNS_NONE, RUNS_ONLY_THE_CONNECT}


BOTH = {NEVER_RETURNS_NONE, RUNS_ONLY_THE_CONNECT}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # The helpdesk/catalog/tenants shapes: nothing but the connect, arguments from the environment.
        (
            """
            import os
            import psycopg2

            def get_conn():
                '''Docstring.'''
                return psycopg2.connect(host=os.environ.get("H", "x"), port=int(os.getenv("P", "5432")))
            """,
            BOTH,
        ),
        (
            """
            import os
            import psycopg2 as pg

            def get_conn(dbname=None):
                params = {"dbname": dbname} if dbname else {}
                return pg.connect(os.environ["DSN"], **params)
            """,
            BOTH,
        ),
        # Already pooled by PS100.
        (
            """
            import db_utils.postgres

            def get_conn():
                return db_utils.postgres.connect("")
            """,
            BOTH,
        ),
        # It runs something before connecting: still never None, but it may raise anything.
        (
            """
            import psycopg2
            from dotenv import load_dotenv

            def get_conn():
                load_dotenv()
                return psycopg2.connect("")
            """,
            {NEVER_RETURNS_NONE},
        ),
        # salesreports: the connection is set up, then returned.
        (
            """
            import logging
            import psycopg2

            def get_conn():
                conn = psycopg2.connect("")
                conn.initialize(logging.getLogger("sql"))
                return conn
            """,
            {NEVER_RETURNS_NONE},
        ),
    ],
)
def test_helpers_that_always_return_a_connection(source: str, expected: set[str]) -> None:
    assert facts(source) == expected


@pytest.mark.parametrize(
    "source",
    [
        # The legacy contract: None when connecting fails.
        """
        import psycopg2

        def get_conn():
            try:
                return psycopg2.connect("")
            except psycopg2.OperationalError:
                return None
        """,
        # None on another path, or falling off the end.
        """
        import psycopg2

        def get_conn():
            if DISABLED:
                return None
            return psycopg2.connect("")
        """,
        """
        import psycopg2

        def get_conn():
            if ENABLED:
                return psycopg2.connect("")
        """,
        # The returned name may be None: bound twice, or inside a try.
        """
        import psycopg2

        def get_conn():
            conn = None
            conn = psycopg2.connect("")
            return conn
        """,
        """
        import psycopg2

        def get_conn():
            conn = psycopg2.connect("")
            for conn in []:
                pass
            return conn
        """,
        """
        import psycopg2

        def get_conn():
            try:
                conn = psycopg2.connect("")
            except psycopg2.Error:
                conn = None
            return conn
        """,
        # Another helper's result (may be None), a wrapper, a generator, a decorated or replaced helper.
        """
        from app.other import open_connection

        def get_conn():
            return open_connection()
        """,
        """
        import psycopg2

        def get_conn():
            return wrap(psycopg2.connect(""))
        """,
        """
        import psycopg2

        def get_conn():
            yield psycopg2.connect("")
            return psycopg2.connect("")
        """,
        """
        import functools
        import psycopg2

        @functools.lru_cache
        def get_conn():
            return psycopg2.connect("")
        """,
        """
        import psycopg2

        def get_conn():
            return psycopg2.connect("")

        get_conn = instrumented(get_conn)
        """,
    ],
)
def test_near_misses_prove_nothing(source: str) -> None:
    assert facts(source) == set()


def test_a_call_beyond_the_pure_built_ins_may_raise_a_statement_error() -> None:
    source = """
    import psycopg2

    def get_conn():
        dsn = settings.lookup_dsn()
        return psycopg2.connect(dsn)
    """
    assert facts(source) == {NEVER_RETURNS_NONE}
    attribute = """
    import psycopg2

    def get_conn():
        return psycopg2.connect(CONFIG.dsn)
    """
    assert facts(attribute) == {NEVER_RETURNS_NONE}  # a property may run anything
