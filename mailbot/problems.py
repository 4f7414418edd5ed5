"""A problem found in a request: what is wrong, where, and how to fix it.

Problems are plain data so that every layer (parsers, rules, intake) can return them and the
reply template can list them all at once, Japanese first.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request.

    ``code`` is stable and machine-readable (``user_id.unknown``); tests and templates key on it.
    ``field`` is the form field's code name (``user_ids``, docs/domain.md#fields-and-labels) or None
    for the whole request. ``value`` is the offending value as the sender typed it. ``location``
    says where the value stood (``本文 5行目`` / ``申込書.csv B4``) when the parser knows.
    The messages say what is wrong *and* how to fix it.
    """

    code: str
    field: str | None
    value: str | None
    message_ja: str
    message_en: str
    location: str | None = None
