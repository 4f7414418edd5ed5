"""Form parsing benchmark (not a test): time per attachment format, against the bare readers.

    .venv/bin/python bench/parse.py [--repeat 7]

For a typical form (2 user IDs) and a 500-ID form, in each format (vertical CSV, table CSV,
XLSX, JSON), it times mailbot's parser and, in the same run on the same bytes, the bare
reader alone: ``csv.reader`` over the decoded text, openpyxl ``load_workbook(read_only=True,
data_only=True)`` iterating every row, ``json.loads``. The ratio is mailbot / bare: what label
matching, layout detection, limits and locations cost on top of reading. Best of ``--repeat``
rounds of ≥ 0.2 s, mailbot and bare timed alternately so machine load hits both alike. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from openpyxl import Workbook, load_workbook

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailbot.parsers.csv_form import parse_csv
from mailbot.parsers.json_form import parse_json
from mailbot.parsers.labels import CANONICAL_LABEL_JA, FIELD_ORDER, LIST_FIELDS
from mailbot.parsers.xlsx_form import parse_xlsx

VALUES = {
    "office_code": "TYO01",
    "abolish_user_codes": "",
    "desired_start_date": "2026/12/22",
    "reason": "担当業務の移管のため",
    "applicant_name": "㈱髙橋商事 髙橋 ①郎",
    "applicant_phone": "03-1234-5678",
    "applicant_email": "takahashi@example.co.jp",
    "manager_name": "佐藤 花子",
    "manager_email": "sato@example.co.jp",
    "remarks": "年内にお願いします",
}


def user_ids(count: int) -> list[str]:
    return [f"1AN{n // 1000 % 100:02d}{n % 1000:03d}" for n in range(count)]


# --- the same request in each format ------------------------------------------------------------


def vertical_rows(ids: list[str]) -> list[list[str]]:
    rows: list[list[str]] = []
    for name in FIELD_ORDER:
        label = CANONICAL_LABEL_JA[name]
        if name == "user_ids":
            rows.append([label, ids[0]])
            rows.extend(["", item] for item in ids[1:])
        else:
            rows.append([label, VALUES[name]])
    return rows


def table_rows(ids: list[str]) -> list[list[str]]:
    header = [CANONICAL_LABEL_JA[name] for name in FIELD_ORDER]
    rows = [header]
    for index, item in enumerate(ids):
        rows.append(
            [
                item if name == "user_ids" else (VALUES[name] if index == 0 else "")
                for name in FIELD_ORDER
            ]
        )
    return rows


def as_csv(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue().encode("cp932")  # Japanese Excel's "CSV"


def as_xlsx(rows: list[list[str]]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "申込書"
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def as_json(ids: list[str]) -> bytes:
    document: dict[str, object] = {
        name: ids if name in LIST_FIELDS and name == "user_ids" else VALUES[name]
        for name in FIELD_ORDER
    }
    return json.dumps(document, ensure_ascii=False, indent=2).encode()


# --- the bare readers -------------------------------------------------------------------------------


def bare_csv(data: bytes) -> object:
    return list(csv.reader(io.StringIO(data.decode("cp932"), newline="")))


def bare_xlsx(data: bytes) -> object:
    workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        return [list(sheet.iter_rows(values_only=True)) for sheet in workbook.worksheets]
    finally:
        workbook.close()


def bare_json(data: bytes) -> object:
    return json.loads(data.decode("utf-8-sig"))


# --- timing ---------------------------------------------------------------------------------------


def best_pair(
    ours: Callable[[], object], bare: Callable[[], object], repeat: int
) -> tuple[float, float]:
    """Best per-call times of both calls over ``repeat`` rounds of ≥ 0.2 s each. The two are
    timed alternately, round by round, so a busy machine slows both alike."""
    numbers = [_calls_per_round(call) for call in (ours, bare)]
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for index, (call, number) in enumerate(zip((ours, bare), numbers, strict=True)):
            started = time.perf_counter()
            for _ in range(number):
                call()
            best[index] = min(best[index], (time.perf_counter() - started) / number)
    return best[0], best[1]


def _calls_per_round(call: Callable[[], object]) -> int:
    started = time.perf_counter()
    call()
    return max(1, int(0.2 / max(time.perf_counter() - started, 1e-6)))


@dataclass(frozen=True)
class Case:
    label: str
    data: bytes
    ours: Callable[[bytes], object]
    bare: Callable[[bytes], object]


def cases(ids: list[str]) -> list[Case]:
    return [
        Case("CSV vertical", as_csv(vertical_rows(ids)), lambda d: parse_csv(d, "x.csv"), bare_csv),
        Case("CSV table", as_csv(table_rows(ids)), lambda d: parse_csv(d, "x.csv"), bare_csv),
        Case("XLSX vertical", as_xlsx(vertical_rows(ids)), lambda d: parse_xlsx(d, "x.xlsx"), bare_xlsx),
        Case("XLSX table", as_xlsx(table_rows(ids)), lambda d: parse_xlsx(d, "x.xlsx"), bare_xlsx),
        Case("JSON", as_json(ids), lambda d: parse_json(d, "x.json"), bare_json),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"Python {platform.python_version()} on {platform.machine()}, best of {args.repeat}")
    print(
        f"{'form':<10} {'format':<14} {'bytes':>8} {'mailbot ms':>11} {'bare ms':>9} {'ratio':>7}"
    )
    for size_label, count in (("typical", 2), ("500 IDs", 500)):
        for case in cases(user_ids(count)):
            form = case.ours(case.data)
            problems = getattr(form, "problems", [])
            if problems:  # a benchmark of an error path would measure the wrong thing
                raise SystemExit(f"{case.label}: unexpected problems {problems}")
            ours, bare = best_pair(
                partial(case.ours, case.data), partial(case.bare, case.data), args.repeat
            )
            print(
                f"{size_label:<10} {case.label:<14} {len(case.data):>8,} "
                f"{ours * 1000:>11.3f} {bare * 1000:>9.3f} {ours / bare:>6.1f}x"
            )


if __name__ == "__main__":
    main()
