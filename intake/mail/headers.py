"""Header values as they arrive → text: RFC 2047 words, raw 8-bit bytes, addresses, ids, dates.

Header values come in as the stdlib parser keeps them: ``str`` with undecodable bytes as
surrogate escapes. They are turned back into the bytes that were sent and decoded here, so a
raw GBK subject reads as Chinese rather than as escapes or question marks.
"""

from __future__ import annotations

import binascii
import re
from datetime import UTC, datetime, timedelta, timezone
from email.utils import getaddresses, parsedate_to_datetime

from intake.mail.charset import codec_for_label, decode_text
from intake.normalise import clean_line

__all__ = [
    "decode_header",
    "header_bytes",
    "lenient_b64decode",
    "message_ids",
    "parse_address",
    "parse_date",
]

# Lenient: Q words with spaces inside (some clients), charsets with an RFC 2231 language.
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?(.*?)\?=", re.S)
_FOLD = re.compile(r"\r?\n[ \t]*")
_ID = re.compile(r"<([^<>\s]+)>")
_BARE_ID = re.compile(r"[^<>\s,;\"]+@[^<>\s,;\"]+")
_ADDRESS = re.compile(r"[A-Za-z0-9._%+\-=/!#$&'*^`{|}~]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_SIMPLE_MAILBOX = re.compile(
    r'\s*(?:"?([^"<>,;@]*?)"?\s*<([\w.+\-=]+@[\w\-]+(?:\.[\w\-]+)+)>|([\w.+\-=]+@[\w\-]+(?:\.[\w\-]+)+))\s*',
    re.ASCII,
)
CHINA = timezone(timedelta(hours=8))
MAX_HEADER_CHARS = 32 * 1024
"""Header values are read up to this many characters: no subject or name is longer."""


def header_bytes(value: str) -> bytes:
    """A header value from the stdlib parser back as the bytes that were sent."""
    return value.encode("utf-8", "surrogateescape")


def lenient_b64decode(data: bytes) -> bytes:
    """Base64 → bytes, whatever the padding: characters outside the alphabet are dropped, a
    lone trailing character (half a byte) is dropped, missing ``=`` are added."""
    letters = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
    if len(letters) % 4 == 1:
        letters = letters[:-1]
    return binascii.a2b_base64(letters + b"=" * (-len(letters) % 4))


def _word_bytes(encoding: str, payload: str) -> bytes:
    if encoding in "bB":
        return lenient_b64decode(header_bytes(payload))
    raw = header_bytes(payload.replace("_", " "))
    return binascii.a2b_qp(raw)


def decode_header(value: str | None, *, context: str = "header") -> tuple[str, tuple[str, ...]]:
    """A raw header value → (text, defects).

    Adjacent encoded words in one charset are joined as bytes before decoding, so a GBK
    character split across two words comes out whole; white space between encoded words is
    dropped (RFC 2047 §6.2). Text outside encoded words, including raw 8-bit bytes, is decoded
    with `decode_text` (no label: UTF-8, GB18030, Big5 by plausibility). Unfolds lines.
    Only the first `MAX_HEADER_CHARS` characters are read.
    """
    if not value:
        return "", ()
    value = _FOLD.sub(" ", value[:MAX_HEADER_CHARS])
    if "=?" not in value and value.isascii():
        return value, ()
    defects: list[str] = []
    # (charset label, or None for text outside encoded words; its byte strings)
    pieces: list[tuple[str | None, list[bytes]]] = []
    position = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[position : match.start()]
        after_word = bool(pieces) and pieces[-1][0] is not None
        if between and not (after_word and not between.strip()):
            pieces.append((None, [header_bytes(between)]))
        label = match.group(1).split("*", 1)[0]
        data = _word_bytes(match.group(2), match.group(3))
        previous = pieces[-1][0] if pieces else None
        if previous is not None and _same_charset(previous, label):
            pieces[-1][1].append(data)
        else:
            pieces.append((label, [data]))
        position = match.end()
    if value[position:]:
        pieces.append((None, [header_bytes(value[position:])]))
    text: list[str] = []
    for label, chunks in pieces:
        data = b"".join(chunks)
        decoded = decode_text(data, label, context=context)
        if label is None and not data.isascii():
            defects.append(f"{context}: raw 8-bit bytes, read as {decoded.charset}")
            defects.extend(d for d in decoded.defects if "charset, read as" not in d)
        else:
            defects.extend(decoded.defects)
        text.append(decoded.text)
    return "".join(text), tuple(defects)


def _same_charset(a: str, b: str) -> bool:
    return a.lower() == b.lower() or (codec_for_label(a) or a) == (codec_for_label(b) or b)


def parse_address(value: str | None) -> tuple[str, str, tuple[str, ...]]:
    """A From/Reply-To value → (display name, address, defects) of its first mailbox.

    The address is split from the name before the name is decoded, so a decoded name holding
    a comma or angle brackets cannot break it. An unparseable value yields whatever looks like
    an address in it, and the rest as the name.
    """
    if not value:
        return "", "", ()
    value = _FOLD.sub(" ", value)
    simple = _SIMPLE_MAILBOX.fullmatch(value)
    if simple:  # the usual `Name <a@b>` or `a@b`: no need for the full address parser
        name, address = simple.group(1) or "", simple.group(2) or simple.group(3)
        decoded, name_defects = decode_header(name.strip(), context="From")
        decoded = decoded.strip()
        return ("" if decoded == address else decoded), address.lower(), name_defects
    try:
        pairs = getaddresses([value])
    except (ValueError, IndexError, TypeError):
        pairs = []
    name, address = next(((n, a) for n, a in pairs if "@" in a), ("", ""))
    defects: tuple[str, ...] = ()
    if not _ADDRESS.fullmatch(address or ""):
        found = _ADDRESS.search(header_bytes(value).decode("ascii", "replace"))
        address = found.group(0) if found else ""
        name = value.replace(address, "").strip(" <>\"'") if found else value
        defects = ("From: address repaired",) if found else ("From: no address",)
    decoded, name_defects = decode_header(name, context="From")
    decoded = decoded.strip().strip("\"'").strip()
    if decoded == address:
        decoded = ""
    return decoded, address.lower() if "@" in address else address, defects + name_defects


def message_ids(value: str | None) -> list[str]:
    """Message ids in a Message-ID/In-Reply-To/References value, in order, without ``<>``.

    ``"<a@x> <b@y>"`` → ``["a@x", "b@y"]``; an id written without brackets is accepted.
    Duplicates are dropped; each id is at most 250 characters.
    """
    if not value:
        return []
    value = _FOLD.sub(" ", value)
    found = _ID.findall(value) or _BARE_ID.findall(value)
    # Cleaned as Submission cleans its external id, so that a reply's ids match stored ones.
    ids = [clean_line(i) for i in found]
    ids = [i for i in ids if 0 < len(i) <= 250]
    return list(dict.fromkeys(ids))


def parse_date(value: str | None, now: datetime, *, max_age_days: int = 90) -> datetime | None:
    """The Date header as an aware datetime, or None when missing, garbled or not sane.

    Sane: not more than a day after ``now`` and not more than ``max_age_days`` before it
    (a forged or badly set clock). A date without a zone is taken as China time (UTC+8);
    ``-0000`` as UTC.
    """
    if not value:
        return None
    try:
        sent = parsedate_to_datetime(_FOLD.sub(" ", value).strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if sent is None:
        return None
    if sent.tzinfo is None:
        # "-0000" is UTC from a sender that will not say where it is; no zone at all is
        # most likely a Chinese client writing local time.
        sent = sent.replace(tzinfo=UTC if "-0000" in value else CHINA)
    try:
        sent.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
    if not (now - timedelta(days=max_age_days) <= sent <= now + timedelta(days=1)):
        return None
    return sent
