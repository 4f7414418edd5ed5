"""Start-date scheduling (APScheduler): applies approved changes on their start date.

Empty until the scheduler issue lands; the package exists so the layout is stable.
"""
