"""Citations of the docs are true: the specification the code cites lives in the repository.

Code, templates, tests and docs cite ``docs/domain.md`` (its sections, its rules by number) and
``docs/japanese-mail.md``; nothing cites the background notes the project started from, which
are not part of the repository. A cited page, section (``#anchor``, as GitHub makes it from the
heading) or rule must exist, and every test ``docs/japanese-mail.md`` names must exist.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
_THIS_FILE = Path(__file__).resolve()

# Not the repository's own text: tools' and the runtime's directories.
_SKIPPED_DIRS = frozenset({".git", ".venv", "venv", "build", "dist", "var", "node_modules"})
_MAX_BYTES = 2 * 1024 * 1024

# The background notes and the folder they sit in, outside the repository. Spelled in pieces so
# that this file does not cite them itself.
_OUTSIDE = re.compile(
    "|".join(
        (
            r"\b" + "DOMAIN" + r"\.md",
            "JAPANESE" + "_MAIL",
            r"\b" + "ARCHITECTURE" + r"\.md",
            "POSTFIX" + "_NOTES",
            "/work/" + "shared",
            r"\.\./" + "shared" + r"\b",
            r"\b" + "shared" + r"/(?:samples|seed|hooks)\b",
        )
    )
)
_DOC_CITATION = re.compile(r"\bdocs/([\w.-]+?\.md)(?:#([\w-]+))?")
_DOC_LINK = re.compile(r"\]\(([\w.-]+?\.md)(?:#([\w-]+))?\)")
_RULE_CITATION = re.compile(
    r"docs/domain\.md,? rules? (\d+(?:\s*(?:,|and|–|-)\s*\d+)*)", re.IGNORECASE
)
_RULE_HEADING = re.compile(r"^### Rule (\d+)\b", re.MULTILINE)
_TEST_NAME = re.compile(r"(tests/[\w/]+\.py)(?:::(test_\w+))?|\b(test_\w+)\b")
_DEFAULT_TEST_FILE = "tests/unit/test_mime.py"


def repository_texts() -> Iterator[tuple[Path, str]]:
    """Every text file of the repository, with its text; not this file, whose examples of
    broken citations are broken on purpose."""
    stack = [ROOT]
    while stack:
        directory = stack.pop()
        for path in sorted(directory.iterdir()):
            if path.is_dir():
                skipped = path.name in _SKIPPED_DIRS or path.name.startswith(".")
                if not skipped and path.name != "__pycache__":
                    stack.append(path)
            elif path == _THIS_FILE:
                continue
            elif path.is_file() and path.stat().st_size <= _MAX_BYTES:
                try:
                    yield path, path.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    continue  # a binary file (an XLSX sample, a font) cites nothing


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every heading's anchor, duplicates numbered as GitHub numbers them."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = None if in_code else re.match(r"^#{1,6}\s+(.+?)\s*#*$", line)
        if match is None:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


@dataclass(frozen=True)
class Broken:
    where: str
    cited: str

    def __str__(self) -> str:
        return f"{self.where}: {self.cited}"


def outside_citations(name: str, text: str) -> list[Broken]:
    return [
        Broken(f"{name}:{text.count(chr(10), 0, m.start()) + 1}", m.group(0))
        for m in _OUTSIDE.finditer(text)
    ]


def broken_doc_citations(name: str, text: str, docs: dict[str, str], *, here: str) -> list[Broken]:
    """``docs/page.md#anchor`` anywhere, and ``](page.md#anchor)`` links inside ``docs/``."""
    cited = [(m, m.group(1), m.group(2)) for m in _DOC_CITATION.finditer(text)]
    if here == "docs":
        cited += [(m, m.group(1), m.group(2)) for m in _DOC_LINK.finditer(text)]
    broken: list[Broken] = []
    for match, page, anchor in cited:
        target = docs.get(page)
        if target is None or (anchor is not None and anchor not in anchors(target)):
            line = text.count("\n", 0, match.start()) + 1
            broken.append(Broken(f"{name}:{line}", match.group(0)))
    return broken


def cited_rules(text: str) -> Iterator[tuple[int, int]]:
    """(rule number, offset) for each rule of docs/domain.md cited by number."""
    for match in _RULE_CITATION.finditer(text):
        for part in re.split(r"\s*(?:,|and)\s*", match.group(1)):
            ends = [int(n) for n in re.split(r"\s*[–-]\s*", part) if n]
            for number in range(ends[0], ends[-1] + 1):
                yield number, match.start()


def missing_tests(text: str, root: Path) -> list[str]:
    """Tests a doc names that do not exist. A bare ``test_x`` is in the file named before it in
    the same table row or paragraph, else in the default file."""
    missing: list[str] = []
    for block in re.split(r"\n\s*\n|\n(?=\|)", text):
        current = _DEFAULT_TEST_FILE
        for match in _TEST_NAME.finditer(block):
            path, name, bare = match.groups()
            if path is not None:
                current = path
            name = name or bare
            source = root / current
            if not source.is_file():
                missing.append(current)
            elif name is not None and not re.search(rf"def {name}\b", source.read_text()):
                missing.append(f"{current}::{name}")
    return missing


def _docs() -> dict[str, str]:
    return {path.name: path.read_text(encoding="utf-8") for path in DOCS.glob("*.md")}


def test_no_file_cites_the_background_outside_the_repository() -> None:
    broken = [
        str(b)
        for path, text in repository_texts()
        for b in outside_citations(str(path.relative_to(ROOT)), text)
    ]
    assert broken == []


def test_every_cited_doc_and_section_exists() -> None:
    docs = _docs()
    broken = [
        str(b)
        for path, text in repository_texts()
        for b in broken_doc_citations(
            str(path.relative_to(ROOT)), text, docs, here=path.parent.name
        )
    ]
    assert broken == []


def test_every_rule_cited_is_a_rule_of_the_domain_page() -> None:
    rules = {int(n) for n in _RULE_HEADING.findall((DOCS / "domain.md").read_text())}
    assert rules == set(range(1, 10))
    cited = {
        (str(path.relative_to(ROOT)), number)
        for path, text in repository_texts()
        for number, _ in cited_rules(text)
    }
    assert cited, "the code cites rules of docs/domain.md by number"
    assert {(where, n) for where, n in cited if n not in rules} == set()


def test_every_test_the_docs_name_exists() -> None:
    for page in ("japanese-mail.md", "domain.md"):
        assert missing_tests((DOCS / page).read_text(), ROOT) == [], page


# --- the checks find what they look for ------------------------------------------------------


def test_slugs_are_githubs() -> None:
    assert slug("Rule 3: a user code goes with all of its IDs") == (
        "rule-3-a-user-code-goes-with-all-of-its-ids"
    )
    assert slug("Attached forms: CSV, XLSX, JSON") == "attached-forms-csv-xlsx-json"
    assert slug("契約内容確認: the contract reply") == "契約内容確認-the-contract-reply"
    assert anchors("# A\n## Notes\n```\n# not a heading\n```\n### Notes\n") == {
        "a",
        "notes",
        "notes-1",
    }


def test_a_broken_citation_is_found() -> None:
    docs = {"domain.md": "# The domain\n## Receipt numbers\n"}
    text = (
        "see docs/domain.md#receipt-numbers and docs/domain.md#no-such-section,\n"
        "docs/nowhere.md, and the old " + "DOMAIN" + ".md\n"
    )
    broken = broken_doc_citations("x.py", text, docs, here="mailbot")
    assert [str(b) for b in broken] == [
        "x.py:1: docs/domain.md#no-such-section",
        "x.py:2: docs/nowhere.md",
    ]
    assert [str(b) for b in outside_citations("x.py", text)] == ["x.py:2: " + "DOMAIN" + ".md"]
    link = "[rules](domain.md#rules) and [ok](domain.md)"
    assert [b.cited for b in broken_doc_citations("d.md", link, docs, here="docs")] == [
        "](domain.md#rules)"
    ]


def test_rule_numbers_are_read_from_lists_and_ranges() -> None:
    text = "docs/domain.md rules 3, 4 and 8; docs/domain.md rule 6; docs/domain.md rules 1–2"
    assert sorted(n for n, _ in cited_rules(text)) == [1, 2, 3, 4, 6, 8]


def test_a_missing_test_is_found(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text("def test_here() -> None: ...\n")
    text = "| row | `tests/test_a.py::test_here`, `test_gone` |\n| next | `test_here` |\n"
    assert missing_tests(text, tmp_path) == ["tests/test_a.py::test_gone", _DEFAULT_TEST_FILE]
