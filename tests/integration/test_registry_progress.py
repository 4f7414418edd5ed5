"""``mailbot registry import`` draws a progress bar for an operator at a terminal, and writes
nothing extra into a pipe or a log (issue 16: a million IDs take a while)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine, text

ROOT = Path(__file__).resolve().parents[2]


def write_registry(path: Path, offices: int) -> None:
    lines = ["office_code,company,office,department,contact_emails,user_id"]
    for office in range(offices):
        lines += [
            f"P{office:04d},株式会社{office},本社,総務部,a{office}@o{office}.example.jp,"
            f"{office:05d}A0{ident}"
            for ident in range(10)
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_import(
    home: Path, database_url: str, csv_path: Path, *, terminal: bool
) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of the import, stderr on a pseudo-terminal or a pipe."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILBOT_")}
    env |= {"MAILBOT_HOME": str(home), "MAILBOT_DATABASE_URL": database_url}
    env["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-m", "mailbot", "registry", "import", str(csv_path)]
    if not terminal:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        return done.returncode, done.stdout, done.stderr
    controller, terminal_end = pty.openpty()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=terminal_end)
    os.close(terminal_end)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the other end closed: the process is done with its terminal
            break
        if not chunk:
            break
        seen += chunk
    out, _ = process.communicate(timeout=120)
    os.close(controller)
    return process.returncode, out.decode(), seen.decode(errors="replace")


def test_a_terminal_sees_the_bar_and_a_pipe_does_not(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    csv_path = tmp_path / "registry.csv"
    write_registry(csv_path, 300)  # 3,000 IDs: the checking bar reports every 10,000 lines too

    code, out, err = run_import(tmp_path, database_url, csv_path, terminal=True)
    assert code == 0, err
    assert "imported 300 offices and 3000 user IDs (3000 new)" in out
    assert "checking" in err and "importing" in err and "100%" in err

    code, out, err = run_import(tmp_path, database_url, csv_path, terminal=False)
    assert code == 0, err
    assert "imported 300 offices and 3000 user IDs (0 new)" in out
    assert err == ""  # nothing for a log or a pipe

    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM user_id")).scalar_one() == 3000
        assert conn.execute(text("SELECT count(*) FROM office_contact")).scalar_one() == 300
