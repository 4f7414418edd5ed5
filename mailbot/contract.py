"""契約内容確認: an office's current contract, as the contract reply and the office page show it.

The guide's flow starts here (step ①「契約内容確認」, screens ②⑥⑦): before applying, the
applicant sees the office's user codes and IDs, netNACCS and general NACCS apart, and picks
the IDs to abolish. By mail, a registered contact who writes ``契約内容確認`` gets, for each
office they are a contact of, the contract with each ID's state, the shared codes and who of
their sharers has applied, the next registration dates, a link to the office's page, and the
request form pre-filled (:class:`mailbot.blank_form.Prefill`) to mark and send back.

Everything here is read in the caller's transaction and is plain data: the mail template and
the page template show the same :class:`OfficeContract`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from sqlmodel import Session

from db.models import ABOLISHED, APPROVED
from mailbot import notices
from mailbot.applications import STATUS_JA
from mailbot.blank_form import Prefill, prefilled_attachments
from mailbot.calendar import BusinessCalendar
from mailbot.compose import Attachment
from mailbot.config import Settings
from mailbot.normalize import ident_of
from mailbot.notify import Reply, send_reply
from mailbot.office_link import office_link_expiry, office_url
from mailbot.registry_queries import (
    ContractIdRow,
    contact_office_codes,
    contract_id_rows,
    office_infos,
)
from mailbot.rules import OfficeInfo
from mailbot.upcoming import Upcoming, load_upcoming

IdStateName = Literal["active", "applied", "abolished"]
STATE_JA: Mapping[IdStateName, str] = {
    "active": "利用中",
    "applied": "廃止申込中",
    "abolished": "廃止済",
}
SharerState = Literal["applied", "not_applied", "abolished"]
SHARER_STATE_JA: Mapping[SharerState, str] = {
    "applied": "申込済",
    "not_applied": "未申込",
    "abolished": "廃止済",
}
# The guide's two tabs, in its order.
NETWORKS = (("netnaccs", "netNACCS"), ("general", "一般NACCS"))


@dataclass(frozen=True)
class IdState:
    """One user ID as the contract shows it."""

    user_id: str
    user_code: str
    ident: str
    state: IdStateName
    receipt_no: str | None = None  # the open application holding it (state "applied")
    status_ja: str | None = None  # that application's status
    start_date: date | None = None  # its start date: confirmed, or proposed until approval
    start_confirmed: bool = False
    abolished_on: date | None = None

    @property
    def state_ja(self) -> str:
        return STATE_JA[self.state]


@dataclass(frozen=True)
class CodeGroup:
    code: str
    ids: tuple[IdState, ...]


@dataclass(frozen=True)
class NetworkSection:
    label: str  # netNACCS / 一般NACCS
    codes: tuple[CodeGroup, ...]


@dataclass(frozen=True)
class Sharer:
    office_code: str
    state: SharerState

    @property
    def state_ja(self) -> str:
        return SHARER_STATE_JA[self.state]


@dataclass(frozen=True)
class SharedCode:
    """A user code this office holds together with other offices (docs/domain.md rule 4)."""

    code: str
    own: SharerState  # whether this office has applied for all of its IDs of the code
    others: tuple[Sharer, ...]

    @property
    def own_ja(self) -> str:
        return SHARER_STATE_JA[self.own]


@dataclass(frozen=True)
class OfficeContract:
    office: OfficeInfo
    sections: tuple[NetworkSection, ...]  # only the networks the office has IDs of
    shared: tuple[SharedCode, ...]
    abolishable: tuple[str, ...]  # IDs in use and in no open application: the form's rows

    @property
    def contacts(self) -> tuple[str, ...]:
        return tuple(sorted(self.office.contact_emails))

    @property
    def office_line(self) -> str:
        parts = (self.office.company, self.office.office, self.office.department)
        return " ".join(part for part in parts if part)

    def count(self, state: IdStateName) -> int:
        return sum(
            item.state == state
            for section in self.sections
            for group in section.codes
            for item in group.ids
        )


def id_state(row: ContractIdRow) -> IdState:
    user_id, code, ident = row.user_id, row.user_code, ident_of(row.user_id)
    if row.status == ABOLISHED:
        return IdState(user_id, code, ident, "abolished", abolished_on=row.abolished_on)
    if row.receipt_no is not None:
        confirmed = row.application_status == APPROVED and row.start_date is not None
        status = row.application_status or ""
        return IdState(
            user_id,
            code,
            ident,
            "applied",
            receipt_no=row.receipt_no,
            status_ja=STATUS_JA.get(status, status),
            start_date=row.start_date if confirmed else row.proposed_start_date,
            start_confirmed=confirmed,
        )
    return IdState(user_id, code, ident, "active")


def build_contracts(
    offices: Mapping[str, OfficeInfo], rows: Iterable[ContractIdRow]
) -> list[OfficeContract]:
    """The contract of each office in ``offices`` (in code order) from the rows of
    :func:`mailbot.registry_queries.contract_id_rows`, which also hold the sharing offices' IDs."""
    rows = list(rows)
    by_code: dict[str, list[ContractIdRow]] = {}
    for row in rows:
        by_code.setdefault(row.user_code, []).append(row)
    contracts = []
    for code in sorted(offices):
        own = [row for row in rows if row.office_code == code]
        sections = []
        for network, label in NETWORKS:
            groups: dict[str, list[IdState]] = {}
            for row in own:
                if row.network == network:
                    groups.setdefault(row.user_code, []).append(id_state(row))
            if groups:
                sections.append(
                    NetworkSection(
                        label, tuple(CodeGroup(c, tuple(ids)) for c, ids in sorted(groups.items()))
                    )
                )
        contracts.append(
            OfficeContract(
                office=offices[code],
                sections=tuple(sections),
                shared=_shared_codes(code, own, by_code),
                abolishable=tuple(r.user_id for r in own if id_state(r).state == "active"),
            )
        )
    return contracts


def _shared_codes(
    office_code: str, own: Sequence[ContractIdRow], by_code: Mapping[str, list[ContractIdRow]]
) -> tuple[SharedCode, ...]:
    shared = []
    for code in sorted({row.user_code for row in own}):
        holders: dict[str, list[ContractIdRow]] = {}
        for row in by_code.get(code, ()):
            holders.setdefault(row.office_code, []).append(row)
        others = sorted(other for other in holders if other != office_code)
        if others:
            shared.append(
                SharedCode(
                    code=code,
                    own=_sharer_state(holders[office_code]),
                    others=tuple(Sharer(o, _sharer_state(holders[o])) for o in others),
                )
            )
    return tuple(shared)


def _sharer_state(rows: Sequence[ContractIdRow]) -> SharerState:
    """Rule 4's view of one sharing office: every ID gone, every ID still in use applied for
    (held by an open application), or not yet."""
    states = [id_state(row).state for row in rows]
    if all(state == "abolished" for state in states):
        return "abolished"
    return "not_applied" if "active" in states else "applied"


def load_contracts(session: Session, office_codes: Sequence[str]) -> list[OfficeContract]:
    """The contracts of these offices, read in three queries whatever their size."""
    if not office_codes:
        return []
    return build_contracts(
        office_infos(session, office_codes), contract_id_rows(session, office_codes)
    )


# --- what the contract reply attaches -------------------------------------------------------


@dataclass(frozen=True)
class ContractForms:
    """The pre-filled forms of one office: their file names, and the attachments."""

    names: tuple[str, ...]
    attachments: tuple[tuple[str, str, bytes], ...]


def prefilled_forms(
    contract: OfficeContract, *, sender: str, sender_name: str, schedule: Upcoming
) -> ContractForms:
    """The XLSX and CSV form of an office with IDs left to abolish; none when it has none."""
    if not contract.abolishable:
        return ContractForms((), ())
    prefill = Prefill(
        office_code=contract.office.code,
        office_line=contract.office_line,
        applicant_name=sender_name,
        applicant_email=sender,
        desired_start_date=schedule.earliest_registration,
        user_ids=contract.abolishable,
        contacts=contract.contacts,
    )
    attachments = tuple(prefilled_attachments(prefill))
    return ContractForms(tuple(name for name, _, _ in attachments), attachments)


# --- the contract reply ----------------------------------------------------------------------


def send_contract(
    session: Session,
    settings: Settings,
    reply: Reply,
    *,
    sender_name: str,
    calendar: BusinessCalendar,
    now: datetime,
) -> bool:
    """「【NSS】契約内容のお知らせ」 to a registered contact: every office they are a contact
    of, with its page link and pre-filled forms. The caller has checked that the sender is a
    contact (an outsider gets the neutral refusal instead, before anything is read)."""
    today = now.astimezone(settings.zone).date()
    schedule = load_upcoming(session, calendar, today, settings.lead_business_days)
    contracts = load_contracts(session, contact_office_codes(session, reply.to))
    offices: list[dict[str, Any]] = []
    attachments: list[Attachment] = []
    for contract in contracts:
        forms = prefilled_forms(
            contract, sender=reply.to, sender_name=sender_name, schedule=schedule
        )
        url = office_url(session, settings, contract.office.code, now)
        offices.append({"contract": contract, "url": url, "forms": forms.names})
        attachments += forms.attachments
    values = {
        "name": sender_name or None,
        "organisation": settings.organisation,
        "today": today,
        "offices": offices,
        "schedule": schedule,
        "link_until": office_link_expiry(settings, now).astimezone(settings.zone).date(),
    }
    return send_reply(
        session, settings, reply, notices.CONTRACT, values, now=now, attachments=attachments
    )
