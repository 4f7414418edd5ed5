"""What a test needs of the machine (a Postfix, a Dovecot, root for deploy/install.sh …).

Where a part is missing the test is skipped, except under CI=true, where it fails: CI must not
pass by skipping what it is there to run.
"""

from __future__ import annotations

import os

import pytest


def require(reason: str | None) -> None:
    """Go on when ``reason`` is None (nothing is missing); else skip, or fail under CI=true."""
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: this test must run, not skip)")
    pytest.skip(reason)
