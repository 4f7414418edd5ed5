"""Property tests over mutated sample mail and forms: nothing escapes but the documented
problem types (tests/support/fuzz.py says what is mutated and what is checked).

A short run, part of ``make test``; ``bench/fuzz.py`` runs the same properties far longer.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from tests.support.fuzz import (
    Mutant,
    body_texts,
    check_body,
    check_csv,
    check_json,
    check_mail,
    check_xlsx,
    csv_mutants,
    json_mutants,
    mail_mutants,
    xlsx_mutants,
)

# A few seconds in all: enough to keep the properties honest on every run; the long search is
# bench/fuzz.py's. Mail takes longest (a message nested thousands deep is parsed to its limit).
SHORT = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mail_mutants())
def test_mutated_mail_is_parsed_classified_and_read_or_unreadable(mutant: Mutant) -> None:
    check_mail(mutant.data)


@SHORT
@given(body_texts())
def test_a_mutated_body_form_is_read_with_problems(made: tuple[str, str]) -> None:
    check_body(made[1])


@SHORT
@given(csv_mutants())
def test_a_mutated_csv_is_read_or_refused_with_a_problem(mutant: Mutant) -> None:
    check_csv(mutant.data)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(xlsx_mutants())
def test_a_mutated_xlsx_is_read_or_refused_with_a_problem(mutant: Mutant) -> None:
    check_xlsx(mutant.data)


@SHORT
@given(json_mutants())
def test_a_mutated_json_is_read_or_refused_with_a_problem(mutant: Mutant) -> None:
    check_json(mutant.data)
