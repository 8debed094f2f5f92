"""poolshift's migration engine: LibCST rules, the runner and the ``poolshift`` CLI.

Migrated code never imports this package; it imports only ``db_utils``.
"""

__version__ = "0.1.0"
