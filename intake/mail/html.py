"""HTML mail → plain text a person can read, with links kept as ``text (url)``.

Uses the standard library's `html.parser`, which never raises on broken markup. Scripts,
styles, the head and comments are dropped; block elements and ``<br>`` become line breaks;
table cells are separated by a space; ``<blockquote>`` lines get a ``> `` prefix, so quoted
earlier mail is trimmed like in plain text. Also finds the charset an HTML part declares in a
``<meta>`` tag, for parts whose Content-Type has none.
"""

from __future__ import annotations

import re
import time
from html import unescape
from html.parser import HTMLParser

__all__ = ["html_charset", "html_to_text", "looks_like_html", "strip_tags"]

_BLOCK = frozenset(
    [
        "address",
        "article",
        "aside",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "thead",
        "tfoot",
        "tr",
        "ul",
        "center",
    ]
)
_DROP = frozenset({"script", "style", "head", "title", "noscript", "template", "xml", "o:p"})
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:+\-]+)", re.IGNORECASE)
_HTML_START = re.compile(r"\A\s*(<!doctype\s+html|<html|<head|<body|<div|<p[\s>]|<table)", re.I)


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.drop_depth = 0
        self.pre_depth = 0
        self.quote_depth = 0
        self.link: tuple[str, int] | None = None  # (href, index in current where text starts)

    def _break(self) -> None:
        line = "".join(self.current)
        if not self.pre_depth:
            line = " ".join(line.split())
        self.lines.append("> " * self.quote_depth + line if line else line)
        self.current = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            # Whatever was left open before the body (an unclosed <head> or <style>) ends here.
            self.drop_depth = 0
            return
        if tag in _DROP:
            self.drop_depth += 1
            return
        if tag == "br":
            self._break()
        elif tag in _BLOCK or tag == "blockquote":
            if self.current:
                self._break()
            if tag == "pre":
                self.pre_depth += 1
            if tag == "blockquote":
                self.quote_depth += 1
        elif tag in ("td", "th"):
            self.current.append(" ")
        elif tag == "a":
            href = dict(attrs).get("href") or ""
            self.link = (href.strip(), len(self.current))
        elif tag == "img":
            alt = (dict(attrs).get("alt") or "").strip()
            if alt:
                self.current.append(f"[{alt}]")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP:
            return
        self.handle_starttag(tag, attrs)
        if tag == "a":
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP:
            self.drop_depth = max(0, self.drop_depth - 1)
            return
        if tag == "a" and self.link is not None:
            href, start = self.link
            self.link = None
            label = " ".join("".join(self.current[start:]).split())
            if href.lower().startswith("mailto:"):
                href = href[7:].split("?", 1)[0]
            if href and not href.startswith("#") and not href.lower().startswith("javascript:"):
                if not label:
                    self.current.append(href)
                elif href.rstrip("/") not in label and label.rstrip("/") not in href:
                    self.current.append(f" ({href})")
            return
        if tag in _BLOCK or tag == "blockquote":
            if self.current:
                self._break()
            if tag == "pre":
                self.pre_depth = max(0, self.pre_depth - 1)
            if tag == "blockquote":
                self.quote_depth = max(0, self.quote_depth - 1)
            # Paragraphs get a blank line after them; <div>s are lines (QQ Mail, Foxmail).
            if tag in ("p", "table", "blockquote", "h1", "h2", "h3") and self.lines:
                self.lines.append("")

    def handle_data(self, data: str) -> None:
        if self.drop_depth:
            return
        # Mail HTML is indented source: its newlines are spaces, except inside <pre>.
        self.current.append(data if self.pre_depth else data.replace("\n", " "))

    def handle_comment(self, data: str) -> None:
        return

    def text(self) -> str:
        if self.current:
            self._break()
        out = "\n".join(line.replace("\xa0", " ").rstrip() for line in self.lines)
        return re.sub(r"\n{3,}", "\n\n", out).strip()


CHUNK = 16 * 1024
MAX_PENDING = 32 * 1024
BUDGET_SECONDS = 0.5


def html_to_text(html: str) -> str:
    """An HTML document or fragment → plain text; never raises on broken markup.

    `html.parser` rescans an unclosed comment or tag for every ``<`` after it, which makes
    crafted mail (``"<!--" * 60000``) take minutes. So the document is fed in chunks, and
    when more than `MAX_PENDING` characters wait for a construct to close, or the parse
    takes longer than `BUDGET_SECONDS`, the rest is read by `strip_tags` instead.
    """
    parser = _TextExtractor()
    deadline = time.perf_counter() + BUDGET_SECONDS
    rest = ""
    try:
        for start in range(0, len(html), CHUNK):
            parser.feed(html[start : start + CHUNK])
            if len(parser.rawdata) > MAX_PENDING or time.perf_counter() > deadline:
                rest = parser.rawdata + html[start + CHUNK :]
                break
        else:
            if len(parser.rawdata) > CHUNK:
                rest = parser.rawdata
        if rest:
            parser.rawdata = ""
        parser.close()
    except (AssertionError, ValueError, IndexError):  # pragma: no cover - html.parser's bugs
        pass
    text = parser.text()
    return f"{text}\n{strip_tags(rest)}".strip() if rest else text


_SKIP_BLOCK = re.compile(r"<(script|style|head|title)\b[^>]*>", re.IGNORECASE)
_LINE_TAG = re.compile(r"<(?:br|/?p|/?div|/?tr|/?li|/?h[1-6]|/?table)\b[^<>]{0,1000}>", re.I)
_ANY_TAG = re.compile(r"<[!?/]?[A-Za-z][^<>]{0,1000}>")


def strip_tags(html: str) -> str:
    """HTML → text by removing tags, in linear time: the fallback for markup `html.parser`
    would take too long over. Comments, scripts and styles go (an unclosed one takes the rest
    of the document with it, as in a browser); entities are decoded."""
    lowered = html.lower()
    pieces: list[str] = []
    position = 0
    comment = lowered.find("<!--")
    block = _SKIP_BLOCK.search(html)
    while comment >= 0 or block is not None:
        if block is None or (0 <= comment < block.start()):
            pieces.append(html[position:comment])
            end = lowered.find("-->", comment + 4)
            position = end + 3 if end >= 0 else len(html)
        else:
            pieces.append(html[position : block.start()])
            end = lowered.find(f"</{block.group(1).lower()}", block.end())
            close = lowered.find(">", end) if end >= 0 else -1
            position = close + 1 if close >= 0 else len(html)
        if comment >= 0 and comment < position:
            comment = lowered.find("<!--", position)
        if block is not None and block.start() < position:
            block = _SKIP_BLOCK.search(html, position)
    pieces.append(html[position:])
    text = _LINE_TAG.sub("\n", "".join(pieces))
    text = unescape(_ANY_TAG.sub("", text)).replace("\xa0", " ")
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def html_charset(data: bytes) -> str | None:
    """The charset an HTML document declares in a ``<meta>`` tag in its first 4 KiB, or None."""
    found = _META_CHARSET.search(data[:4096])
    return found.group(1).decode("ascii") if found else None


_HTML_TAGS = re.compile(r"<br\s*/?>|</(?:p|div|font|span|td|tr|table|body|html)>", re.I)


def looks_like_html(text: str) -> bool:
    """Whether a part labelled as plain text (or not labelled) is really HTML: it starts as
    a document does, or (a fragment whose start was lost) has three or more line-break or
    closing tags in its first 4,000 characters."""
    return bool(_HTML_START.match(text[:200])) or len(_HTML_TAGS.findall(text[:4000])) >= 3
