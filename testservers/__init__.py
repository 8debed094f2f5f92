"""Real servers (PostgreSQL, PgBouncer, HTTP) on 127.0.0.1 for tests, the example app and benchmarks."""
