"""End to end in a real browser: the link in a real confirmation-complete notice opens the
申込内容参照 page in headless Chromium (Debian ``chromium``).

mailbot runs in-process (tests/support/harness.py) with ``MAILBOT_BASE_URL`` pointing at a web
server started on a free loopback port over the same database, so the link in the notice is
the one an applicant would click. The page's visible text is read from Chromium's DOM, and a
phone-size screenshot is saved under tests/artifacts/ for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.acceptance.conftest import LiveSite
from tests.integration.test_web import (
    CONFIRMATION,
    MAY_DIFFER,
    NEWS,
    NOT_YET,
    REFUSAL,
    approve,
    link_in,
    submit,
    visible_text,
)
from tests.support.harness import body_text
from tests.support.requests import mail

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = "/usr/bin/chromium"
PHONE = (390, 844)  # CSS pixels of a common phone in portrait
BROWSER_TIMEOUT_SECONDS = 90


def chromium() -> str:
    """The browser; missing fails under CI=true (CI must not pass by skipping)."""
    path = CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")
    if path is None:
        message = "chromium is not installed (Debian package chromium; `make system-deps`)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def browse(url: str, profile: Path, *options: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",  # tests run as root in containers
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            *options,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT_SECONDS,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header.startswith(b"\x89PNG\r\n\x1a\n"), f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_the_link_in_a_real_confirmation_notice_opens_in_chromium(
    site: LiveSite, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    h = site.harness
    link = link_in(approve(h, submit(h)), CONFIRMATION)
    assert link.startswith(f"{site.base_url}/a/260001A?t=")

    dom = browse(link, tmp_path / "profile", "--dump-dom").stdout
    text = visible_text(dom)
    for expected in [
        "申込内容参照",
        NEWS,
        "申込受付番号\n260001A",
        "申込受付年月日\n2026年11月27日",
        "状況\n審査終了（承認）",
        "利用開始日（適用日）\n2026年12月15日（火）",
        "利用開始希望日\n2026年12月15日（火）",
        MAY_DIFFER,
        "1ANACA0A\n1ANAC\nA0A\nnetNACCS",
        "1ANACA0B\n1ANAC\nA0B\nnetNACCS",
        "申込担当者\n山田 太郎",
        "管理責任者\n佐藤 花子",
        "変更する理由\n事業所の統合により端末を削減するため",
        NOT_YET,
        "申込書を出力する（PDF）",
    ]:
        assert expected in text, f"{expected!r} not in the page Chromium shows:\n{text}"

    ARTIFACTS.mkdir(exist_ok=True)
    variant = request.node.callspec.id  # sqlite / postgres
    phone = ARTIFACTS / f"status-page-phone-{variant}.png"
    phone.unlink(missing_ok=True)
    width, height = PHONE
    browse(
        link,
        tmp_path / "profile",
        f"--screenshot={phone}",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
    )
    assert png_size(phone) == PHONE
    # The whole page at phone width, for reviewing what is below the fold.
    whole = ARTIFACTS / f"status-page-phone-full-{variant}.png"
    browse(link, tmp_path / "profile", f"--screenshot={whole}", f"--window-size={width},2600")
    assert png_size(whole)[0] == width

    # The signature's first character (its last one may carry only padding bits).
    dot = link.rindex(".") + 1
    tampered = link[:dot] + ("A" if link[dot] != "A" else "B") + link[dot + 1 :]
    refused = visible_text(browse(tampered, tmp_path / "profile", "--dump-dom").stdout)
    assert REFUSAL in refused and "260001A" not in refused


# --- the office page (issue 14) ------------------------------------------------------------------

DESKTOP = (1200, 900)


def test_the_office_page_from_a_real_contract_reply_in_chromium(
    site: LiveSite, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    h = site.harness
    approve(h, submit(h, "1ANACA0A"))  # 260001A approved: its news line shows
    submit(h, "1ANACA0B")  # 260002A under review
    (reply,) = h.round_trip(mail("", subject="契約内容確認"))
    found = re.search(r"https?://\S+/o/TYO01\?t=\S+", body_text(reply))
    assert found, body_text(reply)
    link = found.group(0)
    assert link.startswith(f"{site.base_url}/o/TYO01?t=")

    text = visible_text(browse(link, tmp_path / "profile", "--dump-dom").stdout)
    for expected in [
        "契約内容・申込状況",
        NEWS,
        "事業所コード\nTYO01",
        "利用者コード 1ANAC\n1ANACA0A\n廃止申込中\n申込受付番号 260001A",
        "利用者コード 1ANAC\n1ANAC001\n利用中",
        "2026年12月8日（火）\n← 本日お申込みの場合の最短の利用開始日",
        "申込状況（新しい順）",
    ]:
        assert expected in text, f"{expected!r} not in the page Chromium shows:\n{text}"
    assert text.index("260002A") < text.index("260001A\n審査終了（承認）")

    ARTIFACTS.mkdir(exist_ok=True)
    variant = request.node.callspec.id  # sqlite / postgres
    for name, (width, height) in (("desktop", DESKTOP), ("phone", PHONE)):
        shot = ARTIFACTS / f"office-page-{name}-{variant}.png"
        shot.unlink(missing_ok=True)
        browse(
            link,
            tmp_path / "profile",
            f"--screenshot={shot}",
            f"--window-size={width},{height}",
            "--hide-scrollbars",
        )
        assert png_size(shot) == (width, height)
        whole = ARTIFACTS / f"office-page-{name}-full-{variant}.png"
        browse(
            link,
            tmp_path / "profile",
            f"--screenshot={whole}",
            f"--window-size={width},3000",
            "--hide-scrollbars",
        )
        assert png_size(whole)[0] == width

    dot = link.rindex(".") + 1
    tampered = link[:dot] + ("A" if link[dot] != "A" else "B") + link[dot + 1 :]
    refused = visible_text(browse(tampered, tmp_path / "profile", "--dump-dom").stdout)
    assert REFUSAL in refused and "TYO01" not in refused
