"""The best text a person can read out of a message that intake could not register.

For the quarantine list's "make a case of this": a supervisor edits what this returns into
the case's text. The MIME tree is walked as `intake.email.parse_message` walks it (nested
multiparts, forwarded ``message/rfc822`` parts, the human part of a bounce, HTML to text),
so no boundary line or part header reaches the text; only when nothing in it parses is the
raw body offered, cleaned of boundaries, part headers and encoded blocks.
"""

from __future__ import annotations

import re
import unicodedata
from email import message_from_bytes
from email.message import Message
from email.policy import compat32

from intake.mail.charset import decode_text
from intake.mail.readable import unreadable_reason
from intake.normalise import clean_text

__all__ = ["readable_share", "salvage_text"]

MIN_READABLE = 0.8
"""Share of letters, digits, white space and punctuation below which text is not offered."""
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_BOUNDARY_LINE = re.compile(r"--[!-~][ -~]{0,69}")
_PART_HEADER = re.compile(r"(?:content-[\w-]+|mime-version)[ \t]*:", re.IGNORECASE)
_HEADER = re.compile(r"[\w-]{1,40}[ \t]*:")
_BASE64_LINE = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}")


def readable_share(text: str) -> float:
    """Share of ``text`` (its first 4,000 characters) that is letters (any script), digits,
    white space or punctuation, 0.0 … 1.0; a replacement character, a symbol, a private-use
    or a control character counts against. 0.0 for empty text."""
    sample = text[:4000]
    if not sample:
        return 0.0
    good = sum(
        1
        for char in sample
        if (char != "\ufffd" and unicodedata.category(char)[0] in "LNPZ") or char in "\n\t"
    )
    return good / len(sample)


def salvage_text(raw: bytes, limit: int = 5000) -> str:
    """Raw message bytes → at most ``limit`` characters of text a person can read, or "".

    The text parts the parser finds (its own text first; forwarded and attached text when it
    has none), each kept only when readable (`readable_share` ≥ `MIN_READABLE`, no U+FFFD),
    joined by blank lines and cleaned (`clean_text`); "" when the message has MIME parts and
    none of them reads (its parts are files). When it has no parts at all, or cannot be
    parsed, the body after the headers with MIME boundary lines, part headers and base64
    blocks removed, decoded as it most likely is, when it is readable by that test and by
    `intake.mail.readable.unreadable_reason`. Never raises.
    """
    try:
        text: str | None = _parsed_text(raw, limit)
    except Exception:  # the fallback below is the point: never fail the page
        text = None
    if text is None:
        text = _raw_text(raw, limit)
    return text[:limit].strip()


def _readable(text: str) -> bool:
    return bool(text) and "\ufffd" not in text and readable_share(text) >= MIN_READABLE


def _parsed_text(raw: bytes, limit: int) -> str | None:
    """The readable text parts, joined; "" when a MIME structure was found with none (its
    parts are files), None when there is no structure to go by."""
    # Imported here: intake.email imports this package's modules.
    from intake.email import AttachmentLimits, _Collected, _repair_header_block, _Walker

    source = raw.lstrip()
    if source.startswith(b"From ") and b"\n" in source[:1000]:
        source = source.split(b"\n", 1)[1]
    message = message_from_bytes(_repair_header_block(source, []), policy=compat32)
    out = _Collected()
    # Files are not wanted here: none is kept (text files still come back as text_files).
    _Walker(AttachmentLimits(max_count=0)).walk(message, out)
    groups = [out.texts, out.forwarded + out.text_files]
    if not any(groups):
        # A bounce keeps the returned mail to itself: its text is the best there is.
        for inner in _enclosed(message):
            found = _Collected()
            _Walker(AttachmentLimits(max_count=0)).walk(inner, found)
            groups.append(found.texts + found.forwarded)
    chosen: list[str] = []
    for group in groups:
        chosen = [_without_mime(clean_text(t)) for t in group]
        chosen = [t for t in dict.fromkeys(chosen) if _readable(t)]
        if chosen:
            break
    text = "\n\n".join(chosen)
    if not text and not message.is_multipart():
        return None
    return text[: limit * 2]


def _enclosed(message: Message) -> list[Message]:
    """The messages enclosed in ``message`` (``message/rfc822`` parts), outermost first."""
    found: list[Message] = []
    for sub in message.walk():
        payload = sub.get_payload()
        if sub.get_content_maintype() == "message" and isinstance(payload, list):
            found += [inner for inner in payload if isinstance(inner, Message)]
    return found[:20]


def _without_mime(text: str) -> str:
    """``text`` without MIME boundary lines, the part headers after them, and base64 lines:
    what is left when a multipart is read as one text."""
    kept: list[str] = []
    in_part_headers = False
    for line in text.split("\n"):
        stripped = line.strip()
        if _BOUNDARY_LINE.fullmatch(stripped) and not stripped.strip("-"):
            kept.append(line)  # a rule of dashes, not a boundary
            continue
        if _BOUNDARY_LINE.fullmatch(stripped):
            in_part_headers = True
            continue
        if in_part_headers:
            if not stripped:
                in_part_headers = False
                continue
            if _HEADER.match(line) or line[:1] in " \t":
                continue
            in_part_headers = False
        if _PART_HEADER.match(line) or _BASE64_LINE.fullmatch(stripped):
            continue
        kept.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def _raw_text(raw: bytes, limit: int) -> str:
    parts = _BLANK_LINE.split(raw, maxsplit=1)
    data = parts[1] if len(parts) == 2 else raw
    text = _without_mime(clean_text(decode_text(data[: limit * 8], context="body").text))
    return text if _readable(text[:limit]) and not unreadable_reason(text[:limit]) else ""
