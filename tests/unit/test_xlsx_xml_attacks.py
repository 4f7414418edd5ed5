"""XML attacks inside an XLSX: entity expansion and external entities are refused explicitly.

The check is mailbot's own (defusedxml over every XML part, before openpyxl opens anything),
so it holds even where openpyxl would not use defusedxml (``OPENPYXL_DEFUSEDXML=False``).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from openpyxl import Workbook

from mailbot.parsers.xlsx_form import parse_xlsx

NAME = "申込書.xlsx"
ROOT = Path(__file__).resolve().parents[2]

# Ten levels of ten: 10^9 "lol"s (3 GB) if anything expanded it.
BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{n} "{f"&lol{n - 1};" * 10 if n > 1 else "&lol;" * 10}">\n'
        for n in range(1, 10)
    )
    + "]>\n"
)
EXTERNAL = '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'


def _workbook() -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["事業所コード", "TYO01"])
    sheet.append(["廃止する利用者ID", "1ANACA0A"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _with_dtd(member: str, prolog: str, entity: str) -> bytes:
    """The workbook with ``prolog`` (a DTD) at the head of ``member``, and the entity in place
    of the office code where the member holds it."""
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(_workbook())) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        assert member in source.namelist()
        for info in source.infolist():
            content = source.read(info.filename).decode()
            if info.filename == member:
                body = content.split("?>", 1)[1] if content.startswith("<?xml") else content
                body = body.replace("TYO01", f"&{entity};", 1)
                content = prolog + body
            target.writestr(info, content)
    return out.getvalue()


ATTACKS = {
    "billion-laughs-in-the-sheet": ("xl/worksheets/sheet1.xml", BILLION_LAUGHS, "lol9"),
    "external-entity-in-the-sheet": ("xl/worksheets/sheet1.xml", EXTERNAL, "xxe"),
    "billion-laughs-in-the-workbook": ("xl/workbook.xml", BILLION_LAUGHS, "lol9"),
    "external-entity-in-content-types": ("[Content_Types].xml", EXTERNAL, "xxe"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_an_xml_attack_is_refused_with_its_problem_before_anything_expands(attack: str) -> None:
    member, prolog, entity = ATTACKS[attack]
    data = _with_dtd(member, prolog, entity)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        form = parse_xlsx(data, NAME)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    assert [(p.code, p.location) for p in form.problems] == [("file.unsafe_xml", NAME)]
    assert member in form.problems[0].message_ja and "保存し直し" in form.problems[0].message_ja
    assert not form.fields
    assert peak < 2 * 1024 * 1024  # nothing expanded (a billion laughs is 3 GB)
    assert elapsed < 2  # milliseconds on the test machine


def test_the_unmodified_workbook_still_reads() -> None:
    form = parse_xlsx(_workbook(), NAME)
    assert form.fields["office_code"].value == "TYO01"


def test_the_protection_does_not_depend_on_openpyxl_using_defusedxml(tmp_path: Path) -> None:
    member, prolog, entity = ATTACKS["billion-laughs-in-the-sheet"]
    attack = tmp_path / "attack.xlsx"
    attack.write_bytes(_with_dtd(member, prolog, entity))
    script = (
        "import sys, openpyxl\n"
        "from mailbot.parsers.xlsx_form import parse_xlsx\n"
        "assert openpyxl.DEFUSEDXML is False\n"
        "form = parse_xlsx(open(sys.argv[1], 'rb').read(), 'a.xlsx')\n"
        "print(','.join(p.code for p in form.problems))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(attack)],
        env={**os.environ, "OPENPYXL_DEFUSEDXML": "False"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "file.unsafe_xml"
