"""HTML bodies reduced to their visible text with the standard library's ``html.parser``:
nothing is rendered or fetched (docs/japanese-mail.md#html-and-flowed-text)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SKIPPED_TAGS = frozenset({"script", "style", "title", "template", "noscript"})
_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
        "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table",
        "tr", "ul",
    }
)  # fmt: skip
_HTML_SPACE = re.compile(r"[ \t\r\n\f]+")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0
        self.pre_depth = 0
        self.cells_in_row = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self.skip_depth += 1
        elif tag == "pre":
            self.pre_depth += 1
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")
            self.cells_in_row = 0
        elif tag in ("td", "th"):
            # A tab between cells: a form pasted as a table ("label" | "value") reads as the
            # body parser's "label<TAB>value", as from a spreadsheet.
            self.parts.append("\t" if self.cells_in_row else " ")
            self.cells_in_row += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        self.parts.append(data if self.pre_depth else _HTML_SPACE.sub(" ", data))


def html_to_text(html: str) -> str:
    """Visible text of an HTML body: scripts/styles dropped, blocks as lines, entities decoded."""
    extractor = _TextExtractor()
    try:
        extractor.feed(html)
        extractor.close()
        text = "".join(extractor.parts)
    except Exception:  # html.parser has asserted on odd markup in the past; fall back crudely
        text = re.sub(r"<[^>]*>", " ", html)
    lines = (line.replace("\xa0", " ").strip(" \t") for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


_META_CHARSET = re.compile(rb"<meta[^>]{0,200}?charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.I)


def meta_charset(html: bytes) -> str | None:
    """The charset a ``<meta>`` near the top of an HTML part names, for a part without one."""
    meta = _META_CHARSET.search(html[:4096])
    return meta.group(1).decode("ascii") if meta else None
