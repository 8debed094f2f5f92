"""legacy_app: the order service of a small shop, written the way it was in 2014.

Every request handler opens its own PostgreSQL connection through ``db.get_postgres_connection()``,
every cache access opens its own SQLite file and every upstream call opens its own HTTP connection.
That is the code poolshift is meant to migrate; keep it that way (see README.md).
"""

__version__ = "2.3.1"
