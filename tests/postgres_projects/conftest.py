"""The fixture projects' own suites run only inside tests/postgres_projects/driver.py, against their copy."""

from pathlib import Path

collect_ignore = [str(path) for path in Path(__file__).parent.iterdir() if path.is_dir()]
