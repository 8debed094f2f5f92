"""The parity session must fail when a rule changes behavior: proven once with a rule that drops commits."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest

from tests.parity.driver import DEFAULT_APP, ParityFailure, run_parity


@pytest.mark.slow
def test_parity_catches_a_rule_that_drops_commit(tmp_path: Path, postgres: object) -> None:
    # `postgres` is requested only so that a machine without PostgreSQL skips (or, in CI, fails) here
    # with the fixture's clear message rather than deep inside the example app's own suite.
    script = Path(__file__).with_name("broken_poolshift.py")
    broken = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    with pytest.raises(ParityFailure) as failure:
        run_parity(DEFAULT_APP, shlex.split(broken), tmp_path)
    message = str(failure.value)
    assert "behavior changed in phase 1 (api-handlers)" in message
    assert "passed -> failed" in message
    assert "-        conn.commit()" in message  # the phase's diff shows the dropped commit
