"""``python -m codemods``: the same CLI as the ``poolshift`` console script."""

from codemods.cli import main

raise SystemExit(main())
