"""Start-date scheduling (APScheduler 3): approved changes applied on their start date.

``service.run_scheduler`` is what ``serve`` runs: the leader election (``leader``), the
catch-up at start, and APScheduler built by ``setup`` with the persisted date jobs
(``apply:RECEIPT_NO``), the sweep that applies what is due and reconciles those jobs with the
database (``sync``) and the review reminder cron job (``jobs``). The jobs only trigger: what is
applied is decided by ``mailbot.applying.apply_due`` from the database. ``listing`` serves
``mailbot schedule jobs``; ``mailbot serve --only scheduler`` runs the scheduler as a process of
its own.
"""
