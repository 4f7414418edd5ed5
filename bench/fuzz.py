"""Long fuzzing run (not a test): the properties of tests/unit/test_fuzz.py, many more examples.

    .venv/bin/python bench/fuzz.py [--examples 2000] [--only mail,body,csv,xlsx,json] [--seed N]

Each target mutates the sample mail and forms (tests/support/fuzz.py: truncation, byte flips,
inserted and repeated bytes, wrong charset labels and transfer encodings, deep nesting, damage
inside an XLSX's zipped XML, JSON nested 100,000 deep) and checks that nothing escapes
``parse_mail`` but ``UnreadableMail``, that ``classify`` and ``read_request`` (every form
parser) never raise on what it returns, and that each form parser answers fields or a problem.
Prints, per target, how many examples ran and how long it took, what the mutations were, what
the readers answered, and any failure with its shrunk example (exit status 1).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailbot.parsers.form import RawForm
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

_STEP_KIND = re.compile(r"^(?:[^:@(=]*:)?([a-z-]+)")


@dataclass
class Tally:
    examples: int = 0
    steps: Counter[str] = field(default_factory=Counter)
    seeds: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    largest: int = 0


def _step_kinds(steps: tuple[str, ...] | list[str]) -> list[str]:
    kinds = []
    for step in steps:
        match = _STEP_KIND.match(step)
        kinds.append(match.group(1) if match else step[:20])
    return kinds


def _form_outcome(form: RawForm) -> str:
    if form.fields:
        return "fields read" + (" (with problems)" if form.problems else "")
    return "refused: " + ",".join(sorted({problem.code for problem in form.problems}) or ["-"])


@dataclass(frozen=True)
class Target:
    name: str
    strategy: Callable[[], st.SearchStrategy[Any]]
    check: Callable[[Any, Tally], None]


def _mutant_check(reader: Callable[[bytes], RawForm]) -> Callable[[Any, Tally], None]:
    def check(mutant: Mutant, tally: Tally) -> None:
        tally.steps.update(_step_kinds(mutant.steps))
        tally.seeds[mutant.seed] += 1
        tally.largest = max(tally.largest, len(mutant.data))
        tally.outcomes[_form_outcome(reader(mutant.data))] += 1

    return check


def _mail(mutant: Mutant, tally: Tally) -> None:
    tally.steps.update(_step_kinds(mutant.steps))
    tally.seeds[mutant.seed] += 1
    tally.largest = max(tally.largest, len(mutant.data))
    parsed = check_mail(mutant.data)
    tally.outcomes["UnreadableMail (quarantined)" if parsed is None else "parsed"] += 1


def _body(made: tuple[str, str], tally: Tally) -> None:
    recipe, text = made
    seed_name, *steps = recipe.split(" → ")
    tally.seeds[seed_name] += 1
    tally.steps.update(_step_kinds(steps))
    tally.largest = max(tally.largest, len(text))
    tally.outcomes[_form_outcome(check_body(text))] += 1


TARGETS = (
    Target("mail", mail_mutants, _mail),
    Target("body", body_texts, _body),
    Target("csv", csv_mutants, _mutant_check(check_csv)),
    Target("xlsx", xlsx_mutants, _mutant_check(check_xlsx)),
    Target("json", json_mutants, _mutant_check(check_json)),
)


def run(target: Target, examples: int, chosen_seed: int | None) -> tuple[Tally, float, str | None]:
    tally = Tally()

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(target.strategy())
    def prop(value: Any) -> None:
        tally.examples += 1
        target.check(value, tally)

    if chosen_seed is not None:
        prop = seed(chosen_seed)(prop)
    started = time.perf_counter()
    failure = None
    try:
        prop()
    except Exception:
        failure = traceback.format_exc()
    return tally, time.perf_counter() - started, failure


def _top(counter: Counter[str], count: int = 8) -> str:
    return ", ".join(f"{name} {n}" for name, n in counter.most_common(count)) or "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per target")
    parser.add_argument("--only", default="", help="comma-separated targets")
    parser.add_argument("--seed", type=int, default=None, help="a fixed Hypothesis seed")
    args = parser.parse_args()
    # openpyxl warns about what it repairs in a damaged workbook; the answers say enough.
    warnings.simplefilter("ignore")
    wanted = {name for name in args.only.split(",") if name}
    failures = 0
    for target in TARGETS:
        if wanted and target.name not in wanted:
            continue
        tally, seconds, failure = run(target, args.examples, args.seed)
        rate = tally.examples / seconds if seconds else 0.0
        print(f"== {target.name}: {tally.examples} examples in {seconds:.1f} s ({rate:.0f}/s)")
        print(f"   seeds:     {_top(tally.seeds)}")
        print(f"   mutations: {_top(tally.steps, 12)}")
        print(f"   answers:   {_top(tally.outcomes)}")
        print(f"   largest input: {tally.largest:,} bytes")
        if failure is not None:
            failures += 1
            print(f"   FAILURE:\n{failure}")
        else:
            print("   no failure")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
