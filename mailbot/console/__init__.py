"""The staff console: queues, search, an application's timeline, decisions and bulk work on the
web, behind a login by mailed link or code (docs/console.md).

:func:`routes` is mounted by mailbot.web under ``/staff``. Modules: ``auth`` (login links and
codes), ``sessions`` (sessions and CSRF), ``rate`` (rate limits), ``http`` (what pages share),
``login_pages``, ``pages`` (home, queues, search, health), ``application_pages`` (an
application, decisions, received messages), ``bulk`` and ``bulk_pages``; the data behind them
in ``queues``, ``search``, ``detail``, ``actions`` and ``health``.
"""

from __future__ import annotations

from starlette.routing import Route


def routes() -> list[Route]:
    from mailbot.console import application_pages, bulk_pages, login_pages, pages

    return [
        Route("/staff/login", login_pages.login_page, methods=["GET"]),
        Route("/staff/login", login_pages.ask, methods=["POST"]),
        Route("/staff/login/code", login_pages.code_login, methods=["POST"]),
        Route("/staff/login/{link}", login_pages.confirm_page, methods=["GET"]),
        Route("/staff/login/{link}", login_pages.confirm, methods=["POST"]),
        Route("/staff/logout", login_pages.logout, methods=["POST"]),
        Route("/staff/", pages.home, methods=["GET"]),
        Route("/staff", pages.home, methods=["GET"]),
        Route("/staff/queues/{name}", pages.queue, methods=["GET"]),
        Route("/staff/search", pages.search_page, methods=["GET"]),
        Route("/staff/search.csv", pages.search_csv, methods=["GET"]),
        Route("/staff/health", pages.health_page, methods=["GET"]),
        Route("/staff/a/{receipt_no}", application_pages.application_page, methods=["GET"]),
        Route("/staff/a/{receipt_no}/approve", application_pages.approve, methods=["POST"]),
        Route("/staff/a/{receipt_no}/reject", application_pages.reject, methods=["POST"]),
        Route("/staff/a/{receipt_no}/cancel", application_pages.cancel, methods=["POST"]),
        Route("/staff/messages/{inbound_id}", application_pages.message_page, methods=["GET"]),
        Route(
            "/staff/messages/{inbound_id}/source.eml",
            application_pages.message_source,
            methods=["GET"],
        ),
        Route(
            "/staff/messages/{inbound_id}/attachments/{n}",
            application_pages.attachment,
            methods=["GET"],
        ),
        Route(
            "/staff/messages/{inbound_id}/reprocess", application_pages.reprocess, methods=["POST"]
        ),
        Route("/staff/messages/{inbound_id}/discard", application_pages.discard, methods=["POST"]),
        Route("/staff/notices/{outbound_id}/retry", application_pages.retry, methods=["POST"]),
        Route("/staff/bulk/preview", bulk_pages.preview, methods=["POST"]),
        Route("/staff/bulk/run", bulk_pages.run, methods=["POST"]),
    ]
