"""The operator's command line. Thin: each command opens a session and calls one service.

One module per command group (``database``: ``mailbot db``, ``keys``, ``registry``,
``schedule``, ``staff``, ``ids``, ``inbound``, ``outbox``, ``imap``, ``demo``, ``config``), or per
subject (``applications``: status, list, approve, reject, cancel, apply-due; ``documents``:
form, document; ``serve``: serve, ingest); what they share is in ``common``. ``root`` puts
them under the ``mailbot`` group and holds :func:`main`, the console entry point
(``mailbot.cli:main``).
"""

from mailbot.cli.root import cli, main

__all__ = ["cli", "main"]
