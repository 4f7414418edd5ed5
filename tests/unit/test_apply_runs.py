"""A start date's many date jobs make a few apply runs, and none is lost (scheduler.jobs)."""

from __future__ import annotations

import threading

from scheduler.jobs import _Coalescing


def test_jobs_firing_during_a_run_make_one_more_run_not_one_each() -> None:
    runs = _Coalescing()
    assert runs.request()  # the first job runs
    assert runs.next_run()
    # 9,999 more fire while it applies: none runs itself.
    assert not any(runs.request() for _ in range(9_999))
    assert runs.next_run()  # …but the runner looks once more
    assert not runs.next_run()  # and then is done
    assert runs.request()  # the next day's job runs again


def test_a_request_arriving_while_the_runner_finishes_is_not_lost() -> None:
    runs = _Coalescing()
    performed = 0
    requested = threading.Barrier(9)

    def job() -> None:
        nonlocal performed
        requested.wait()
        if runs.request():
            while runs.next_run():
                performed += 1

    threads = [threading.Thread(target=job) for _ in range(8)]
    for thread in threads:
        thread.start()
    requested.wait()
    for thread in threads:
        thread.join()
    # Every request was followed by a run that began after it: at least one, at most eight.
    assert 1 <= performed <= 8
    assert runs.request()  # nobody is left holding the runner's place


def test_a_run_that_fails_lets_the_next_job_run() -> None:
    runs = _Coalescing()
    assert runs.request()
    assert runs.next_run()
    runs.done()  # the run raised
    assert runs.request()
