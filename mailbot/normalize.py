"""Value normalisers: user IDs, user codes, e-mail addresses, phone numbers, names.

Two families (docs/japanese-mail.md#width-separators-and-names):

* identifiers (IDs, codes, office codes, e-mail addresses, phone numbers) go through NFKC, so
  that ``１ＡＮＡＣ－Ａ０Ａ`` and ``1anac-a0a`` become ``1ANACA0A``;
* names and free text never do: NFKC would turn ㈱ into (株) and ① into 1, changing what the
  applicant wrote. They are only trimmed.

Every function here is pure; the ones that validate raise a ``ValueError`` subclass that carries
the value exactly as typed, so callers can name it in the reply.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

USER_ID_LENGTH = 8
USER_CODE_LENGTH = 5

# Characters people put inside IDs to make them readable. Besides ASCII space, hyphen, dot and
# underscore (what NFKC makes of U+3000, －, ．, ＿), the IME gives the katakana prolonged sound
# mark ー (NFKC keeps it), various dashes that NFKC does not fold (‐ − – — ―) and the
# middle dot ・.
_ID_SEPARATORS = re.compile(r"[\s\-_.・ー‐‑‒–—―−]+")
_USER_ID_RE = re.compile(r"[0-9A-Z]{8}")
_USER_CODE_RE = re.compile(r"[0-9A-Z]{5}")

# List separators for ID lists, in both widths (the pieces are returned as typed).
_LIST_SEPARATORS = re.compile(r"[,、，､;；\r\n\u2028\u2029]+")

_EMAIL_RE = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)
_ANGLE_ADDR = re.compile(r"<([^<>]*)>\s*$")

# Phone numbers: the IME often types ー or a dash for the hyphen.
_PHONE_HYPHENS = re.compile(r"[ー‐‑‒–—―−]")
_PHONE_DROPPED = re.compile(r"[^0-9+\-()]")
MIN_PHONE_DIGITS = 6

# Trimmed from names: ASCII whitespace and the ideographic space U+3000.
_NAME_SPACES = " \t\r\n\u3000"
_HONORIFICS = ("御中", "様", "殿")


class InvalidValue(ValueError):
    """A value that cannot be normalised; ``value`` is the text exactly as typed."""

    def __init__(self, value: str, what: str) -> None:
        self.value = value
        super().__init__(f"invalid {what}: {value!r}")


class InvalidUserId(InvalidValue):
    def __init__(self, value: str) -> None:
        super().__init__(value, "user ID (8 letters/digits expected)")


class InvalidUserCode(InvalidValue):
    def __init__(self, value: str) -> None:
        super().__init__(value, "user code (5 letters/digits expected)")


class InvalidEmail(InvalidValue):
    def __init__(self, value: str) -> None:
        super().__init__(value, "e-mail address")


class InvalidPhone(InvalidValue):
    def __init__(self, value: str) -> None:
        super().__init__(value, f"phone number (at least {MIN_PHONE_DIGITS} digits expected)")


def nfkc(text: str) -> str:
    """NFKC-normalise ``text`` (full-width → ASCII, U+3000 → space, ㍻ → 平成)."""
    return unicodedata.normalize("NFKC", text)


def _compact(text: str) -> str:
    """NFKC, upper-case, and drop every separator: the common core of ID and code forms."""
    compact = _ID_SEPARATORS.sub("", nfkc(text))
    # Upper-case ASCII only: "ı".upper() is "I", which would let a non-ASCII letter pass.
    return compact.upper() if compact.isascii() else compact


def normalise_user_id(text: str) -> str:
    """``１ａｎａｃ－ａ０ａ`` → ``1ANACA0A``; :class:`InvalidUserId` unless 8 letters/digits."""
    result = _compact(text)
    if not _USER_ID_RE.fullmatch(result):
        raise InvalidUserId(text)
    return result


def normalise_user_code(text: str) -> str:
    """Same as :func:`normalise_user_id` for a 5-character user code."""
    result = _compact(text)
    if not _USER_CODE_RE.fullmatch(result):
        raise InvalidUserCode(text)
    return result


def normalise_office_code(text: str) -> str:
    """Office codes as the registry and the forms must both spell them: NFKC, trimmed, upper.

    The registry loader must use this too, or a form's ``tyo01`` will not find ``TYO01``.
    """
    return nfkc(text).strip().upper()


def split_id_list(text: str, width: int = USER_ID_LENGTH) -> list[str]:
    """Split a typed list of IDs (or, with ``width=5``, codes) into pieces, *not* normalised.

    Decision: commas (``,`` ``、`` ``，``), semicolons and new lines always separate. Spaces are
    ambiguous: ``1ANAC A0A`` is one ID written in two groups, ``1ANACA0A 1ANACA0B`` is two IDs.
    So within a piece, if removing the separators leaves exactly ``width`` characters it is one
    value; otherwise it is split on whitespace. Pieces are returned as typed (trimmed) so that
    an invalid one can be named in the reply exactly as the sender wrote it.
    """
    pieces: list[str] = []
    for chunk in _LIST_SEPARATORS.split(text):
        chunk = chunk.strip()
        if not chunk:
            continue
        if len(_compact(chunk)) == width:
            pieces.append(chunk)
        else:
            pieces.extend(chunk.split())
    return pieces


def user_code_of(user_id: str) -> str:
    """The user code: the first 5 characters of the (normalised) ID."""
    return normalise_user_id(user_id)[:USER_CODE_LENGTH]


def ident_of(user_id: str) -> str:
    """The identification number: the last 3 characters of the (normalised) ID."""
    return normalise_user_id(user_id)[USER_CODE_LENGTH:]


def network_of(user_id: str) -> Literal["netnaccs", "general"]:
    """netNACCS if the identification number starts with a letter, else general NACCS.

    Decision (docs/domain.md#netnaccs-and-general-naccs): the deciding character is the
    first of the identification number (``A0A`` → netNACCS, ``001`` → general).
    """
    return "netnaccs" if ident_of(user_id)[0].isalpha() else "general"


def clean_name(text: str) -> str:
    """Trim a name or free text without NFKC (keeps ㈱ ① 髙); drop one trailing 様/殿/御中."""
    result = text.strip(_NAME_SPACES)
    for honorific in _HONORIFICS:
        if result.endswith(honorific):
            result = result.removesuffix(honorific).strip(_NAME_SPACES)
            break
    return result


def normalise_email(text: str) -> str:
    """NFKC, trim, unwrap ``<...>`` (also ``Name <addr>``), lower-case the domain only.

    The local part keeps its case: RFC 5321 leaves it to the receiving host. Raise
    :class:`InvalidEmail` for anything that is not a plain ASCII ``local@domain.tld``.
    """
    result = nfkc(text).strip()
    angle = _ANGLE_ADDR.search(result)
    if angle:
        result = angle.group(1).strip()
    result = result.removeprefix("mailto:")
    if not _EMAIL_RE.fullmatch(result):
        raise InvalidEmail(text)
    local, _, domain = result.rpartition("@")
    return f"{local}@{domain.lower()}"


def normalise_phone(text: str) -> str:
    """NFKC, keep only digits, ``+``, ``-`` and parentheses; require at least 6 digits.

    Spaces and other characters (``TEL``, ``内線``) are dropped, hyphen look-alikes become ``-``.
    """
    kept = _PHONE_DROPPED.sub("", _PHONE_HYPHENS.sub("-", nfkc(text)))
    if sum(ch.isdigit() for ch in kept) < MIN_PHONE_DIGITS:
        raise InvalidPhone(text)
    return kept
