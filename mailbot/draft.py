"""Type a parser's raw fields into a :class:`RequestDraft`, or say everything that is wrong.

The same for every input format (body, CSV, XLSX, JSON): parsers only find labelled text, and
this module normalises it with :mod:`mailbot.normalize` and :mod:`mailbot.dates`. It collects
every problem before answering, so the applicant fixes the request in one round trip.
Registry checks (does the ID exist, may this sender apply) are :mod:`mailbot.rules`' job.

:func:`read_draft` keeps every value that could be read beside the problems
(:class:`PartialDraft`), so the rules can still check the good values of a request that has
bad ones: a missing reason must not hide an unknown user ID (issue 14, "every problem in one
reply"). :func:`build_draft` is the all-or-nothing form of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TypeVar

from mailbot.dates import InvalidDate, InvalidDateReason, parse_date
from mailbot.normalize import (
    InvalidEmail,
    InvalidPhone,
    InvalidUserCode,
    InvalidUserId,
    clean_name,
    normalise_email,
    normalise_office_code,
    normalise_phone,
    normalise_user_code,
    normalise_user_id,
    split_id_list,
)
from mailbot.parsers.form import RawField, RawForm
from mailbot.parsers.labels import CANONICAL_LABEL_JA
from mailbot.problems import Problem

# Required fields whose only check is "present and not blank".
_REQUIRED_TEXT = ("reason", "applicant_name", "manager_name")


@dataclass(frozen=True)
class RequestDraft:
    """A request with typed, normalised values; not yet checked against the registry."""

    office_code: str | None
    user_ids: tuple[str, ...]
    abolish_user_codes: tuple[str, ...]
    desired_start_date: date
    reason: str
    applicant_name: str
    applicant_phone: str
    applicant_email: str
    manager_name: str
    manager_email: str
    remarks: str
    source: str


@dataclass(frozen=True)
class PartialDraft:
    """Whatever could be typed of a request, and every problem met typing it.

    A value is None when its field is missing or could not be read (a problem says which);
    ``user_ids`` and ``abolish_user_codes`` hold the entries that were well formed. With no
    problems, :meth:`complete` gives the :class:`RequestDraft`.
    """

    office_code: str | None
    user_ids: tuple[str, ...]
    abolish_user_codes: tuple[str, ...]
    desired_start_date: date | None
    reason: str | None
    applicant_name: str | None
    applicant_phone: str | None
    applicant_email: str | None
    manager_name: str | None
    manager_email: str | None
    remarks: str
    source: str
    problems: tuple[Problem, ...] = ()

    def complete(self) -> RequestDraft | None:
        """The typed request when nothing was wrong with it, else None."""
        if self.problems:
            return None
        # Each None below comes with a problem, so these only narrow the types for mypy.
        assert self.desired_start_date is not None and self.applicant_phone is not None
        assert self.manager_email is not None and self.applicant_email is not None
        assert self.reason is not None and self.applicant_name is not None
        assert self.manager_name is not None
        return RequestDraft(
            office_code=self.office_code,
            user_ids=self.user_ids,
            abolish_user_codes=self.abolish_user_codes,
            desired_start_date=self.desired_start_date,
            reason=self.reason,
            applicant_name=self.applicant_name,
            applicant_phone=self.applicant_phone,
            applicant_email=self.applicant_email,
            manager_name=self.manager_name,
            manager_email=self.manager_email,
            remarks=self.remarks,
            source=self.source,
        )


T = TypeVar("T")


class _Collector:
    """Reads fields of one form and gathers every problem met on the way."""

    def __init__(self, form: RawForm) -> None:
        self.form = form
        self.problems: list[Problem] = list(form.problems)

    def text(self, name: str) -> str | None:
        """The field's trimmed text, or None when absent or blank."""
        raw = self.form.fields.get(name)
        if raw is None:
            return None
        return clean_name(raw.value) or None

    def identifier(self, name: str) -> str | None:
        """An identifier-like field (office code): NFKC, trimmed, upper-case; None when blank."""
        raw = self.form.fields.get(name)
        return (normalise_office_code(raw.value) or None) if raw is not None else None

    def required_text(self, name: str) -> str | None:
        value = self.text(name)
        if value is None:
            self.problems.append(_missing(name, self.location(name)))
        return value

    def typed(self, name: str, convert: Callable[[str], T], *, required: bool) -> T | None:
        """Convert the field with ``convert``; record a problem if it is missing or invalid."""
        raw = self.form.fields.get(name)
        if raw is None or not raw.value.strip():
            if required:
                self.problems.append(_missing(name, self.location(name)))
            return None
        try:
            return convert(raw.value)
        except (InvalidDate, InvalidEmail, InvalidPhone) as error:
            self.problems.append(_invalid(name, raw, error))
            return None

    def id_list(self, name: str, width: int) -> tuple[str, ...]:
        """Normalise every listed ID (or code), naming each invalid one; de-duplicate in order."""
        raw = self.form.fields.get(name)
        if raw is None:
            return ()
        normalise = normalise_user_id if width == 8 else normalise_user_code
        result: dict[str, None] = {}
        for index, line in enumerate(raw.value.split("\n")):
            for piece in split_id_list(line, width):
                try:
                    result[normalise(piece)] = None
                except (InvalidUserId, InvalidUserCode):
                    self.problems.append(_invalid_id(name, piece, raw.location_of_line(index)))
        return tuple(result)

    def location(self, name: str) -> str | None:
        raw = self.form.fields.get(name)
        return raw.location if raw is not None else None


def build_draft(form: RawForm, sender: str) -> RequestDraft | list[Problem]:
    """Type ``form``; return the draft, or every problem found (including the parser's own).

    Problems the parser already recorded (unknown labels, unreadable attachment) are returned
    first and make the request invalid too: docs/domain.md wants unknown labels reported, never
    silently dropped, and a reply is how they are reported. ``applicant_email`` defaults to
    ``sender``.
    """
    partial = read_draft(form, sender)
    draft = partial.complete()
    return draft if draft is not None else list(partial.problems)


def read_draft(form: RawForm, sender: str) -> PartialDraft:
    """Type every field of ``form`` that can be typed, and gather every problem (the parser's
    first). ``applicant_email`` defaults to ``sender``."""
    fields = _Collector(form)
    office_code = fields.identifier("office_code")
    user_ids = fields.id_list("user_ids", 8)
    if not user_ids and not _has_value(form, "user_ids") and not _said(form, "user_ids"):
        fields.problems.append(_no_user_ids(fields.location("user_ids")))
    abolish_user_codes = fields.id_list("abolish_user_codes", 5)
    desired = fields.typed("desired_start_date", parse_date, required=True)
    texts = {name: fields.required_text(name) for name in _REQUIRED_TEXT}
    phone = fields.typed("applicant_phone", normalise_phone, required=True)
    manager_email = fields.typed("manager_email", normalise_email, required=True)
    applicant_email = _applicant_email(fields, form, sender)
    return PartialDraft(
        office_code=office_code,
        user_ids=user_ids,
        abolish_user_codes=abolish_user_codes,
        desired_start_date=desired,
        reason=texts["reason"],
        applicant_name=texts["applicant_name"],
        applicant_phone=phone,
        applicant_email=applicant_email,
        manager_name=texts["manager_name"],
        manager_email=manager_email,
        remarks=fields.text("remarks") or "",
        source=form.source,
        problems=tuple(fields.problems),
    )


def _said(form: RawForm, name: str) -> bool:
    """Whether the parser already reported a problem with this field (nothing marked in the
    pre-filled form's 「廃止」 column, say): it is not missing on top of that."""
    return any(problem.field == name for problem in form.problems)


def _has_value(form: RawForm, name: str) -> bool:
    raw = form.fields.get(name)
    return raw is not None and bool(split_id_list(raw.value))


def _applicant_email(fields: _Collector, form: RawForm, sender: str) -> str | None:
    """The form's applicant address if given, else the sender's (the default of
    docs/domain.md#fields-and-labels)."""
    if fields.text("applicant_email") is not None:
        return fields.typed("applicant_email", normalise_email, required=False)
    try:
        return normalise_email(sender)
    except InvalidEmail:
        fields.problems.append(
            _invalid(
                "applicant_email", RawField("applicant_email", sender, None), InvalidEmail(sender)
            )
        )
        return None


# --- messages: what is wrong, and how to fix it, Japanese first -------------------------------


def _label(name: str) -> str:
    return CANONICAL_LABEL_JA.get(name, name)


def _missing(name: str, location: str | None) -> Problem:
    label = _label(name)
    return Problem(
        code="field.missing",
        field=name,
        value=None,
        message_ja=f"「{label}」が記入されていません。「{label}」を記入してください。",
        message_en=f"'{name}' ({label}) is missing. Please fill it in.",
        location=location,
    )


def _no_user_ids(location: str | None) -> Problem:
    return Problem(
        code="user_ids.missing",
        field="user_ids",
        value=None,
        message_ja=(
            "廃止する利用者IDが記入されていません。「廃止する利用者ID：」に8桁の利用者ID"
            "（例: 1ANACA0A）を記入してください。"
            "複数の場合は読点・カンマまたは改行で区切ってください。"
        ),
        message_en=(
            "No user ID to abolish was given. Please list the 8-character user IDs "
            "(e.g. 1ANACA0A) under 'user_ids', separated by commas or new lines."
        ),
        location=location,
    )


def _invalid_id(name: str, piece: str, location: str | None) -> Problem:
    if name == "user_ids":
        return Problem(
            code="user_id.invalid",
            field=name,
            value=piece,
            message_ja=(
                f"利用者ID『{piece}』は8桁の英数字ではありません。"
                "8桁（例: 1ANACA0A）で記入してください。"
            ),
            message_en=(
                f"User ID '{piece}' is not 8 letters and digits. "
                "Please write it with 8 characters (e.g. 1ANACA0A)."
            ),
            location=location,
        )
    return Problem(
        code="user_code.invalid",
        field=name,
        value=piece,
        message_ja=(
            f"利用者コード『{piece}』は5桁の英数字ではありません。"
            "利用者IDの先頭5桁（例: 1ANAC）で記入してください。"
        ),
        message_en=(
            f"User code '{piece}' is not 5 letters and digits. "
            "Please write the first 5 characters of the user ID (e.g. 1ANAC)."
        ),
        location=location,
    )


_DATE_REASONS: dict[InvalidDateReason, tuple[str, str]] = {
    "format": ("日付として読み取れません", "cannot be read as a date"),
    "impossible": ("存在しない日付です", "is not a real date"),
    "outside_era": ("元号と年の組み合わせが正しくありません", "does not fall within that era"),
    "two_digit_year": (
        "年が2桁のため西暦か和暦か判断できません",
        "has a 2-digit year, which is ambiguous",
    ),
    "weekday_mismatch": ("日付と曜日が一致しません", "does not match the weekday given"),
}


def _invalid(name: str, raw: RawField, error: ValueError) -> Problem:
    label = _label(name)
    value = raw.value.strip()
    if isinstance(error, InvalidDate):
        why_ja, why_en = _DATE_REASONS[error.reason]
        return Problem(
            code="date.invalid",
            field=name,
            value=value,
            message_ja=(
                f"{label}『{value}』は{why_ja}。"
                "2026/12/01 や 令和8年12月1日 のように年月日で記入してください。"
            ),
            message_en=(
                f"{name} '{value}' {why_en}. "
                "Please write a full date such as 2026-12-01 or 令和8年12月1日."
            ),
            location=raw.location,
        )
    if isinstance(error, InvalidPhone):
        return Problem(
            code="phone.invalid",
            field=name,
            value=value,
            message_ja=(
                f"{label}『{value}』は電話番号として読み取れません。"
                "市外局番から数字で記入してください（例: 03-1234-5678）。"
            ),
            message_en=(
                f"{name} '{value}' is not a phone number. "
                "Please write it with the area code (e.g. 03-1234-5678)."
            ),
            location=raw.location,
        )
    return Problem(
        code="email.invalid",
        field=name,
        value=value,
        message_ja=(
            f"{label}『{value}』はメールアドレスとして読み取れません。"
            "name@example.co.jp の形で記入してください。"
        ),
        message_en=(
            f"{name} '{value}' is not an e-mail address. Please write it as name@example.co.jp."
        ),
        location=raw.location,
    )
