"""Who may apply (docs/domain.md#who-may-apply): a registered contact of an office, for that
office, naming contacts of it as the manager and the applicant.

Everything an outsider can be told is one neutral refusal (:data:`NOT_AUTHORIZED`); a known
contact is told what is wrong with the office code or the addresses, never more about the
registry than their own offices.
"""

from __future__ import annotations

from mailbot.draft import PartialDraft
from mailbot.normalize import InvalidEmail, nfkc, normalise_email
from mailbot.problems import Problem
from mailbot.registry_view import OfficeInfo, RegistryView

# One text for every refusal, whatever office or IDs were named: it must reveal nothing.
NOT_AUTHORIZED = Problem(
    code="sender.not_authorized",
    field=None,
    value=None,
    message_ja=(
        "このメールアドレスからのお申込みはお受けできません。"
        "お申込みは事業所の登録連絡先のメールアドレスから送信し、"
        "管理責任者メールアドレスにも登録連絡先のアドレスを記入してください。"
    ),
    message_en=(
        "We cannot accept an application from this address. Please send it from an address "
        "registered as a contact of your office, and give a registered contact's address as "
        "the manager's e-mail address."
    ),
)


def address_key(address: str) -> str:
    """How addresses are compared: normalised and case-insensitive as a whole.

    Assumption: mail hosts treat local parts case-insensitively in practice, and a contact who
    types ``Yamada@`` must not be refused as an outsider.
    """
    try:
        return normalise_email(address).lower()
    except InvalidEmail:
        return nfkc(address).strip().lower()


def is_contact(office: OfficeInfo, address: str) -> bool:
    key = address_key(address)
    return any(address_key(contact) == key for contact in office.contact_emails)


def which_office(office_code: str | None, sender: str, view: RegistryView) -> OfficeInfo | Problem:
    """The office applied for: the form's ``office_code``, else the single office the sender is
    a contact of; or the problem with the office code.

    The sender is a known contact (checked before), so naming their own offices reveals
    nothing. A code that is not one of theirs reads the same whether another office has it or
    no office does.
    """
    own = sorted(code for code, info in view.offices.items() if is_contact(info, sender))
    if office_code is None:
        if len(own) > 1:
            return _office_code_required(own)
        return view.offices[own[0]] if own else NOT_AUTHORIZED
    office = view.offices.get(office_code)
    if office is None or not is_contact(office, sender):
        return _office_code_not_yours(office_code, own)
    return office


def contact_address_problems(request: PartialDraft, office: OfficeInfo) -> list[Problem]:
    """Every notice must reach people the contract names: the manager's and the applicant's
    addresses (the latter defaults to the sender) must be contacts of the office too."""
    problems: list[Problem] = []
    for field, address in (
        ("manager_email", request.manager_email),
        ("applicant_email", request.applicant_email),
    ):
        if address is not None and not is_contact(office, address):
            problems.append(_not_a_contact(field, address, office))
    return problems


# Left out when the office is unknown: said in the reply, so a clean second try is expected.
OFFICE_CHECKS_SKIPPED = Problem(
    code="note.office_checks_skipped",
    field=None,
    value=None,
    message_ja=(
        "事業所が確定できないため、利用者ID・利用者コードが貴事業所に登録されているか、"
        "管理責任者・申込担当者のメールアドレスが登録連絡先かの確認は行っていません。"
        "事業所コードを直して送り直すと、あわせて確認します。"
    ),
    message_en=(
        "As the office could not be determined, whether the user IDs and codes are your "
        "office's, and whether the manager's and applicant's addresses are its registered "
        "contacts, was not checked. They are checked when you send the request again with the "
        "office code corrected."
    ),
)


def _office_code_not_yours(office_code: str, own: list[str]) -> Problem:
    choice_ja = own[0] if len(own) == 1 else "、".join(own) + " のいずれか"
    choice_en = own[0] if len(own) == 1 else "one of " + ", ".join(own)
    return Problem(
        code="office_code.not_yours",
        field="office_code",
        value=office_code,
        message_ja=(
            f"事業所コード『{office_code}』は、このメールアドレスが連絡先として登録されている"
            f"事業所のコードではありません。「事業所コード」を {choice_ja} にするか、"
            "申込む事業所の登録連絡先のアドレスから送信してください。"
        ),
        message_en=(
            f"Office code '{office_code}' is not the code of an office this address is a "
            f"registered contact of. Please write {choice_en}, or send the request from a "
            "registered contact address of the office you apply for."
        ),
    )


def _not_a_contact(field: str, address: str, office: OfficeInfo) -> Problem:
    label_ja = (
        "管理責任者メールアドレス" if field == "manager_email" else "申込担当者メールアドレス"
    )
    return Problem(
        code=f"{field}.not_a_contact",
        field=field,
        value=address,
        message_ja=(
            f"{label_ja}『{address}』は、事業所 {office.code} の登録連絡先ではありません。"
            "お知らせは申込担当者と管理責任者にお送りするため、登録連絡先のアドレスを記入して"
            "ください（連絡先の登録・変更はご契約の担当窓口へ）。"
        ),
        message_en=(
            f"{field} '{address}' is not a registered contact of office {office.code}. Notices go "
            "to the applicant and the manager, so please give a registered contact's address "
            "(contacts are registered or changed through the service desk of your contract)."
        ),
    )


def _office_code_required(office_codes: list[str]) -> Problem:
    listed = "、".join(office_codes)
    return Problem(
        code="office_code.required",
        field="office_code",
        value=None,
        message_ja=(
            "このメールアドレスは複数の事業所の連絡先に登録されています。"
            f"「事業所コード」に申込む事業所のコード（{listed} のいずれか）を記入してください。"
        ),
        message_en=(
            "This address is a contact of several offices. Please give the office code of the "
            f"office you apply for ({', '.join(office_codes)})."
        ),
    )
