"""What an apply run tells its caller: each application applied (or, in a dry run, that would
be), those that failed, the text ``mailbot apply-due`` prints, and the refusal of a run that
cannot be carried out as asked."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from mailbot.errors import MailbotError


class ApplyError(MailbotError):
    """An apply request that cannot be carried out as asked (e.g. applying ahead of time)."""


@dataclass(frozen=True)
class AppliedApplication:
    """What applying one application changed (or, in a dry run, would change)."""

    receipt_no: str
    office_code: str
    start_date: date
    user_ids: tuple[str, ...]  # the IDs that became abolished
    already_abolished: tuple[str, ...]  # items whose ID was abolished before (nothing to do)
    user_codes: tuple[str, ...]  # the codes that became abolished (rule 3, and rule 4)
    codes_still_active: tuple[str, ...]  # codes of its IDs that other IDs still keep alive

    def as_dict(self) -> dict[str, Any]:
        return {
            "receipt_no": self.receipt_no,
            "office_code": self.office_code,
            "start_date": self.start_date.isoformat(),
            "user_ids": list(self.user_ids),
            "already_abolished": list(self.already_abolished),
            "user_codes": list(self.user_codes),
            "codes_still_active": list(self.codes_still_active),
        }


@dataclass
class ApplyReport:
    now: datetime
    through: date  # start dates up to and including this one were due
    dry_run: bool
    applied: list[AppliedApplication] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # receipt number -> error

    @property
    def user_id_count(self) -> int:
        return sum(len(a.user_ids) for a in self.applied)

    def as_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "through": self.through.isoformat(),
            "dry_run": self.dry_run,
            "applied": [a.as_dict() for a in self.applied],
            "failed": dict(self.failed),
        }


def format_report(report: ApplyReport) -> str:
    """The text ``mailbot apply-due`` prints."""
    verb = "would apply" if report.dry_run else "applied"
    lines = [
        f"{verb} {len(report.applied)} application(s), {report.user_id_count} user ID(s), "
        f"start dates through {report.through.isoformat()}"
    ]
    for item in report.applied:
        codes = f"; codes {', '.join(item.user_codes)}" if item.user_codes else ""
        still = (
            f"; shared codes kept: {', '.join(item.codes_still_active)}"
            if item.codes_still_active
            else ""
        )
        lines.append(
            f"  {item.receipt_no}  {item.start_date.isoformat()}  {item.office_code}  "
            f"{len(item.user_ids)} ID(s): {', '.join(item.user_ids[:10])}"
            f"{' …' if len(item.user_ids) > 10 else ''}{codes}{still}"
        )
    lines += [f"  FAILED {receipt_no}: {error}" for receipt_no, error in report.failed.items()]
    return "\n".join(lines)
