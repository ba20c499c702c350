"""A report page parsed into elements (the standard library's HTMLParser), so tests read its structure:
which heading comes first, what a table's headings say. Enough for our pages, not a general DOM."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

BLOCK = {"div", "p", "ul", "ol", "li", "table", "tr", "td", "th", "h1", "h2", "h3", "section", "figure", "br"}
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def walk(self) -> Iterator[Element]:
        """This element and every element inside it, in document order."""
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.walk()

    def find_all(self, tag: str, css: str | None = None) -> list[Element]:
        return [e for e in self.walk() if e.tag == tag and (css is None or css in e.classes())]

    def text(self) -> str:
        """The text inside as a reader sees it: whitespace collapsed, blocks apart."""
        parts = [c if isinstance(c, str) else f" {c.text()} " if c.tag in BLOCK else c.text() for c in self.children]
        return " ".join("".join(parts).split())

    def top_level(self) -> list[Element]:
        """The element children, in order (the sections of a page's body)."""
        return [c for c in self.children if isinstance(c, Element)]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Element:
    """The page as a tree of elements."""
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root


def body(html: str) -> Element:
    return parse(html).find_all("body")[0]


def headings(html: str) -> list[tuple[str, str]]:
    """(tag, text) of every h1-h3, in document order."""
    return [(e.tag, e.text()) for e in parse(html).walk() if e.tag in {"h1", "h2", "h3"}]
