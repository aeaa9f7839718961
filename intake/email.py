"""Raw message bytes → a `Submission` and what intake needs to know about the mail.

The one entry point is `parse_message`; it never touches the network or a database::

    from intake.email import UnparseableMail, parse_message

    try:
        mail = parse_message(raw, received_at=fetched_at, own_addresses={"xfb@example.gov.cn"})
    except UnparseableMail as exc:
        quarantine(raw, exc.reason)            # kept, never lost
    else:
        if mail.bounce:                         # attach to the case whose mail bounced
            ...
        elif mail.likely_spam:                  # to the "suspected spam" list
            ...
        else:
            register(mail.submission, thread_ids=mail.thread_ids)
            if not mail.auto_reply:
                acknowledge(mail.submission.contact.email)

Mail is read as it really arrives: mislabelled and unlabelled charsets (`intake.mail.charset`),
raw 8-bit and split RFC 2047 headers (`intake.mail.headers`), multiparts whose boundary never
appears, base64 declared over raw bytes, HTML-only mail (`intake.mail.html`). The case text is
the new text only: quoted earlier mail and signatures are cut (`intake.mail.trim`); the caller
keeps the raw message for the audit trail. Every repair is listed in `ParsedMail.defects`.
"""

from __future__ import annotations

import binascii
import codecs
import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from email.policy import compat32
from urllib.parse import unquote_to_bytes

from intake.files import name_for_type, sniff_type
from intake.mail.charset import decode_text
from intake.mail.headers import (
    decode_header,
    lenient_b64decode,
    message_ids,
    parse_address,
    parse_date,
)
from intake.mail.html import html_charset, html_to_text, looks_like_html
from intake.mail.signals import SPAM_THRESHOLD, loop_reasons, spam_signals
from intake.mail.trim import trim_reply
from intake.normalise import clean_filename, clean_line, clean_text
from intake.submission import Attachment, Channel, Contact, Submission

__all__ = [
    "DEFAULT_ATTACHMENT_TYPES",
    "MAX_MESSAGE_BYTES",
    "SPAM_THRESHOLD",
    "AttachmentLimits",
    "Bounce",
    "ParsedMail",
    "SkippedAttachment",
    "UnparseableMail",
    "parse_message",
]

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Larger raw messages are not parsed (`UnparseableMail`); the caller quarantines them."""
MAX_DEPTH = 40
"""MIME nesting deeper than this is not followed (a defect says so): no recursion bombs."""
MAX_PARTS = 500
"""Parts beyond this many are ignored (a defect says so)."""
MAX_TEXT_BYTES = 1024 * 1024
"""A text part is read up to this many bytes (a defect says when it was cut): no complaint is
longer."""
MAX_HTML_BYTES = 256 * 1024
"""An HTML part is converted up to this many bytes: mail HTML past that is layout and
advertising, and converting it would take the parser seconds."""
NO_TEXT = "（邮件无正文，见附件）"
"""The case text of a mail that has attachments but no text and no subject."""

DEFAULT_ATTACHMENT_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "image/heic",
        "application/pdf",
        "text/plain",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    }
)
_OOXML = {
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}
_OLE = {
    ".doc": "application/msword",
    ".xls": "application/vnd.ms-excel",
    ".ppt": "application/vnd.ms-powerpoint",
    ".wps": "application/msword",
    ".et": "application/vnd.ms-excel",
}
TNEF_TYPE = "application/ms-tnef"
_TNEF_MAGIC = b"\x78\x9f\x3e\x22"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


class UnparseableMail(ValueError):
    """The bytes give nothing a person could read as a mail; ``reason`` says why (English).

    Raised for: input that is not bytes, empty input, input over `MAX_MESSAGE_BYTES`, bytes
    with neither headers nor readable text, and a message with no text, no subject and no
    attachment. The caller quarantines the raw bytes; nothing is lost.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AttachmentLimits:
    """What attachments are kept: at most ``max_count`` files, each at most ``max_bytes``,
    together at most ``max_total_bytes``, of a type in ``allowed_types`` as the content shows
    it (`intake.files.sniff_type`, plus Office and plain-text files). TNEF (winmail.dat) is
    kept whatever the types, within the sizes."""

    max_count: int = 10
    max_bytes: int = 10 * 1024 * 1024
    max_total_bytes: int = 25 * 1024 * 1024
    allowed_types: frozenset[str] = DEFAULT_ATTACHMENT_TYPES


@dataclass(frozen=True)
class SkippedAttachment:
    """An attachment that was not kept, and why (English, for the audit trail)."""

    filename: str
    content_type: str
    size: int
    reason: str


@dataclass(frozen=True)
class Bounce:
    """A delivery-status report: which of our mails bounced, to whom, and how.

    ``original_message_id`` is the Message-ID (without ``<>``) of the mail that bounced, as
    the report quotes it ("" if it does not); ``recipient`` the address that failed;
    ``status`` the RFC 3463 code (``5.1.1``); ``action`` ``failed``/``delayed``/…
    """

    original_message_id: str = ""
    recipient: str = ""
    status: str = ""
    action: str = ""
    diagnostic: str = ""


@dataclass(frozen=True)
class ParsedMail:
    """One parsed mail.

    - ``submission``: channel email; ``external_id`` = `message_id` or, when the mail has
      none, ``sha256:<raw_sha256>``; ``received_at`` = the Date when within 3 days before the
      fetch (`DATE_TRUST_WINDOW`), else the fetch time; body =
      the new text (quotes and signature trimmed), else the subject, else `NO_TEXT` when only
      files came; contact = From name and address; attachments within the limits.
    - ``raw_sha256``: hex SHA-256 of the raw bytes (with the Message-ID, the duplicate key).
    - ``message_id``, ``in_reply_to``, ``references`` (tuples, oldest reference first): ids
      without ``<>``, cleaned like external ids; ``thread_ids`` combines them for threading.
    - ``sender``/``reply_to``: lower-case addresses ("" when missing); ``date_header``: the
      Date when sane, else None.
    - ``full_text``: the body before trimming; ``quotes_trimmed``: whether anything was cut.
    - ``loop_reasons`` (``auto_reply``, ``loop_reason``): never acknowledge when non-empty.
    - ``bounce``: the delivery-status report this mail is, or None.
    - ``spam_score``/``spam_reasons`` (``likely_spam``): see `intake.mail.signals`.
    - ``defects``: what was repaired, one English line each, for the audit trail.
    - ``tnef``: a winmail.dat was found (kept as is among the attachments).
    - ``skipped_attachments``: files not kept, each with its reason.
    """

    submission: Submission
    raw_sha256: str
    message_id: str = ""
    in_reply_to: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    sender: str = ""
    reply_to: str = ""
    date_header: datetime | None = None
    full_text: str = ""
    quotes_trimmed: bool = False
    loop_reasons: tuple[str, ...] = ()
    bounce: Bounce | None = None
    spam_score: float = 0.0
    spam_reasons: tuple[str, ...] = ()
    defects: tuple[str, ...] = ()
    tnef: bool = False
    skipped_attachments: tuple[SkippedAttachment, ...] = ()

    @property
    def auto_reply(self) -> bool:
        """Whether answering could start a mail loop (auto-reply, list, bounce, own address)."""
        return bool(self.loop_reasons)

    @property
    def loop_reason(self) -> str:
        """The first loop reason, or "" when it is safe to answer."""
        return self.loop_reasons[0] if self.loop_reasons else ""

    @property
    def likely_spam(self) -> bool:
        return self.spam_score >= SPAM_THRESHOLD

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """In-Reply-To then References, newest first, no repeats: ids to thread this reply by."""
        return tuple(dict.fromkeys((*self.in_reply_to, *reversed(self.references))))


# ---------------------------------------------------------------------------------------------
# Headers and parameters, from the raw values the stdlib parser keeps


def _raw_header(part: Message, name: str) -> str:
    name = name.lower()
    for key, value in part.raw_items():
        if key.lower() == name:
            return value if isinstance(value, str) else str(value)
    return ""


_PARAM = re.compile(r'(?:[^;"]|"(?:\\.|[^"\\])*(?:"|$))+|(?<=;)(?=;|$)')


def _split_params(value: str) -> list[str]:
    """``a; b="x;y"; c`` → ``["a", " b=\"x;y\"", " c"]``: split on semicolons outside quotes."""
    if '"' not in value:
        return value.split(";")
    return _PARAM.findall(value) or [value]


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value.strip()


def _params(value: str) -> tuple[str, dict[str, str]]:
    """A Content-Type/Content-Disposition value → (lower-case main value, {name: text}).

    Parameter values are decoded: RFC 2231 (``name*=gbk''%D6%D0``, continuations
    ``name*0*``), RFC 2047 words inside quotes, raw 8-bit bytes. The first of a repeated
    parameter wins.
    """
    value = re.sub(r"\r?\n[ \t]*", " ", value)
    pieces = _split_params(value)
    main = pieces[0].strip().strip('"').lower()
    plain: dict[str, str] = {}
    extended: dict[str, dict[int, tuple[bool, str]]] = {}
    for piece in pieces[1:]:
        name, sep, raw = piece.partition("=")
        if not sep:
            continue
        name = name.strip().lower()
        found = re.fullmatch(r"([^*\s]+)\*(?:(\d+)(\*)?|)", name)
        if found and (found.group(2) is not None or name.endswith("*")):
            index = int(found.group(2) or 0)
            encoded = found.group(2) is None or bool(found.group(3))
            extended.setdefault(found.group(1), {}).setdefault(index, (encoded, _unquote(raw)))
        elif name not in plain:
            plain[name] = _unquote(raw)
    params = {name: decode_header(text, context=name)[0] for name, text in plain.items()}
    for name, sections in extended.items():
        charset, data = None, b""
        for index in sorted(sections):
            encoded, text = sections[index]
            if encoded and index == 0 and text.count("'") >= 2:
                charset, _, text = text.split("'", 2)
            raw_text = text.encode("utf-8", "surrogateescape")
            data += unquote_to_bytes(raw_text) if encoded else raw_text
        params[name] = decode_text(data, charset or None, context=name).text
    return main, params


_CTYPE = re.compile(r"[a-z0-9!#$&^_.+\-]+/[a-z0-9!#$&^_.+\-]+")


def _content_type(part: Message, default: str = "text/plain") -> tuple[str, dict[str, str]]:
    raw = _raw_header(part, "content-type")
    if not raw:
        return default, {}
    main, params = _params(raw)
    main = main.replace(" ", "")
    if not _CTYPE.fullmatch(main):
        main = "text/plain" if main in ("text", "") else default
    return main, params


def _charset_label(params: dict[str, str]) -> str | None:
    label = params.get("charset", "")
    # charset="charset="GB2312"", and charset=3Dgb2312 from a quoted-printable header.
    label = re.sub(r"^(?:\s*charset\s*=\s*)+", "", label, flags=re.IGNORECASE)
    label = label.strip("\"' ")
    if re.match(r"3d[a-z]", label, re.IGNORECASE):
        label = label[2:]
    return label or None


# ---------------------------------------------------------------------------------------------
# Part bodies


def _raw_payload(part: Message) -> object:
    # get_payload() decodes 8-bit text with the declared charset, U+FFFD for the rest; the
    # repairs here need the bytes as sent, which compat32 keeps surrogate-escaped here.
    return part._payload  # type: ignore[attr-defined]


def _payload_bytes(part: Message, defects: list[str]) -> bytes:
    payload = _raw_payload(part)
    if isinstance(payload, list):
        return b""
    raw = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
    cte = _raw_header(part, "content-transfer-encoding").strip().strip("\"'").lower()
    cte = re.split(r"[;\s]", cte, maxsplit=1)[0] if cte else ""
    if cte == "base64":
        return _base64(raw, defects)
    if cte in ("quoted-printable", "quoted_printable", "qp"):
        return binascii.a2b_qp(raw)
    if cte in ("x-uuencode", "uuencode", "x-uue", "uue"):
        decoded = part.get_payload(decode=True)
        return decoded if isinstance(decoded, bytes) else raw
    if cte not in ("", "7bit", "8bit", "binary", "7-bit", "8-bit", "8bits", "7bits", "none"):
        defects.append(f"unknown Content-Transfer-Encoding {cte[:40]!r}, read as is")
    return raw


_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n\t "
_SPACE_INSIDE_LINE = re.compile(rb"\S[ \t]+\S")


def _base64(raw: bytes, defects: list[str]) -> bytes:
    stripped = raw.strip()
    if not stripped:
        return b""
    invalid = len(stripped.translate(None, _BASE64_ALPHABET))
    # Base64 has no spaces inside a line; text does, and raw 8-bit bytes are not base64.
    if invalid > len(stripped) // 50 or len(_SPACE_INSIDE_LINE.findall(stripped[:4096])) > 1:
        defects.append("base64 declared over raw bytes: read as is")
        return raw
    try:
        return binascii.a2b_base64(stripped)
    except binascii.Error:
        defects.append("broken base64 repaired")
        return lenient_b64decode(stripped)


def _text_bytes(data: bytes) -> bool:
    """Whether bytes without any header are text in a charset a citizen writes in (UTF-8,
    GB18030, Big5) with hardly any control characters. A lenient decoder reads random bytes
    as printable mojibake, so `_readable_share` alone lets binary garbage through."""
    sample = data[:65536]
    for codec in ("utf-8", "gb18030", "big5"):
        try:
            # final=False: a character cut at the end of the sample is not an error
            text = codecs.getincrementaldecoder(codec)().decode(sample, final=False)
        except UnicodeDecodeError:
            continue
        control = sum(
            1
            for char in text[:8000]
            if unicodedata.category(char) == "Cc" and char not in "\n\r\t\f"
        )
        return control <= max(2, len(text[:8000]) // 100)
    return False


def _readable_share(text: str) -> float:
    if not text:
        return 0.0
    sample = text[:4000]
    bad = sum(
        1
        for char in sample
        if char == "\ufffd"
        or (unicodedata.category(char)[0] == "C" and char not in "\n\r\t")
        or "\ue000" <= char <= "\uf8ff"
    )
    return 1.0 - bad / len(sample)


# ---------------------------------------------------------------------------------------------
# Walking the MIME tree


@dataclass
class _Collected:
    texts: list[str] = field(default_factory=list)
    html_only: bool = False
    forwarded: list[str] = field(default_factory=list)
    text_files: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    skipped: list[SkippedAttachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    status: dict[str, str] = field(default_factory=dict)
    bounced_id: str = ""
    tnef: bool = False
    parts: int = 0

    def absorb(self, other: _Collected) -> None:
        self.texts += other.texts
        self.forwarded += other.forwarded
        self.text_files += other.text_files
        self.attachments += other.attachments
        self.skipped += other.skipped
        self.defects += other.defects
        self.status = self.status or other.status
        self.bounced_id = self.bounced_id or other.bounced_id
        self.tnef = self.tnef or other.tnef
        self.html_only = self.html_only or other.html_only


class _Walker:
    def __init__(self, limits: AttachmentLimits) -> None:
        self.limits = limits
        self.parts = 0
        self.total_bytes = 0
        self.kept = 0

    def walk(self, part: Message, out: _Collected, depth: int = 0, parent: str = "") -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            if self.parts == MAX_PARTS + 1:
                out.defects.append(f"more than {MAX_PARTS} MIME parts: the rest ignored")
            return
        if depth > MAX_DEPTH:
            out.defects.append(f"MIME nesting deeper than {MAX_DEPTH}: inner parts ignored")
            return
        default = "message/rfc822" if parent == "multipart/digest" else "text/plain"
        ctype, params = _content_type(part, default)
        maintype, _, subtype = ctype.partition("/")
        disposition, dparams = _params(_raw_header(part, "content-disposition") or "")
        payload = _raw_payload(part)
        if ctype in ("message/rfc822", "message/global") and isinstance(payload, str):
            # A forwarded message sent base64 or quoted-printable: parse what it decodes to.
            payload = [message_from_bytes(_payload_bytes(part, out.defects), policy=compat32)]

        if maintype == "multipart" or (isinstance(payload, list) and maintype != "message"):
            if not isinstance(payload, list):
                self._recover_multipart(part, subtype, out, depth)
                return
            children = [child for child in payload if isinstance(child, Message)]
            if subtype == "alternative":
                self._alternative(children, out, depth, ctype)
            elif subtype == "signed":
                for child in children[:1]:
                    self.walk(child, out, depth + 1, ctype)
            elif subtype == "report":
                for child in children:
                    self._report_part(child, out, depth)
            else:
                for child in children:
                    self.walk(child, out, depth + 1, ctype)
            return
        if ctype in ("message/rfc822", "message/global") and isinstance(payload, list):
            inner = _Collected()
            for child in payload:
                if isinstance(child, Message):
                    self.walk(child, inner, depth + 1, ctype)
            out.forwarded += inner.texts or inner.forwarded
            out.attachments += inner.attachments
            out.skipped += inner.skipped
            out.tnef = out.tnef or inner.tnef
            out.defects += inner.defects
            return
        if ctype == "message/partial":
            out.defects.append("message/partial: one fragment of a larger message, not joined")
            return
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            out.status.update(_delivery_status(part))
            return
        if ctype == "text/rfc822-headers":
            out.bounced_id = out.bounced_id or _quoted_message_id(_payload_bytes(part, []))
            return

        data = _payload_bytes(part, out.defects)
        filename = dparams.get("filename") or params.get("name") or ""
        is_file = disposition == "attachment" or (
            bool(filename) and subtype not in ("plain", "html")
        )
        binary = maintype == "text" and sniff_type(data) != "application/octet-stream"
        if binary:
            out.defects.append(f"{ctype} part holds a {sniff_type(data)} file: kept as a file")
            is_file = True
        if maintype == "text" and not is_file and subtype not in ("calendar", "x-vcard", "vcard"):
            text, was_html = self._text(data, subtype, _charset_label(params), out.defects)
            if params.get("format", "").lower() == "flowed" and not was_html:
                text = _unflow(text, delsp=params.get("delsp", "").lower() == "yes")
            if text.strip():
                out.texts.append(text)
                out.html_only = was_html and not any(out.texts[:-1])
            return
        if maintype == "text" and subtype in ("plain", "html") and data and not binary:
            text, _ = self._text(data, subtype, _charset_label(params), [])
            out.text_files.append(text)
        self._attachment(data, ctype, filename, out)

    def _text(
        self, data: bytes, subtype: str, label: str | None, defects: list[str]
    ) -> tuple[str, bool]:
        sniffed_html = subtype == "plain" and looks_like_html(data[:4000].decode("latin-1"))
        limit = MAX_HTML_BYTES if subtype == "html" or sniffed_html else MAX_TEXT_BYTES
        if len(data) > limit:
            data = _cut(data, limit)
            defects.append(f"text part longer than {limit} bytes: the rest not read")
        if subtype == "html" or sniffed_html:
            if subtype != "html":
                defects.append("HTML labelled as plain text")
            decoded = decode_text(data, label or html_charset(data), context="body")
            defects.extend(decoded.defects)
            return html_to_text(decoded.text), True
        decoded = decode_text(data, label, context="body")
        defects.extend(decoded.defects)
        text = decoded.text
        if subtype in ("enriched", "richtext"):
            text = re.sub(r"<[^>]{1,40}>", "", text).replace("<<", "<")
        return text, False

    def _alternative(
        self, children: list[Message], out: _Collected, depth: int, ctype: str
    ) -> None:
        # Plain text first (what the sender wrote, no markup to undo), then the rest in order.
        def rank(child: Message) -> int:
            kind = _content_type(child)[0]
            return 0 if kind == "text/plain" else 1 if kind.startswith("multipart/") else 2

        tried = _Collected()
        for child in sorted(children, key=rank):
            candidate = _Collected()
            self.walk(child, candidate, depth + 1, ctype)
            if candidate.texts and all(_PLACEHOLDER.match(t) for t in candidate.texts):
                candidate.texts = []  # "this is an HTML message": the HTML version has the text
            if candidate.texts:
                # Files of the versions passed over are not kept: give back their share.
                self.kept -= len(tried.attachments)
                self.total_bytes -= sum(a.size for a in tried.attachments)
                out.absorb(candidate)
                return
            tried.absorb(candidate)
        out.absorb(tried)

    def _report_part(self, child: Message, out: _Collected, depth: int) -> None:
        kind = _content_type(child)[0]
        if kind in ("message/rfc822", "message/global", "text/rfc822-headers"):
            payload = _raw_payload(child)
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                out.bounced_id = out.bounced_id or next(
                    iter(message_ids(_raw_header(payload[0], "message-id"))), ""
                )
            else:
                out.bounced_id = out.bounced_id or _quoted_message_id(_payload_bytes(child, []))
            return
        self.walk(child, out, depth + 1, "multipart/report")

    def _recover_multipart(self, part: Message, subtype: str, out: _Collected, depth: int) -> None:
        payload = _raw_payload(part)
        raw = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else b""
        counts: dict[bytes, int] = {}
        for found in re.finditer(rb"^--([!-~][ -~]{0,69}?)(--)?[ \t]*\r?$", raw, re.M):
            if b'"' not in found.group(1):
                counts[found.group(1)] = counts.get(found.group(1), 0) + 1
        boundary = max(counts, key=lambda b: counts[b], default=None)
        if boundary is not None and counts[boundary] >= 2:
            kind = subtype.encode() if re.fullmatch(r"[a-z0-9.+\-]+", subtype) else b"mixed"
            rebuilt = message_from_bytes(
                b"Content-Type: multipart/"
                + kind
                + b'; boundary="'
                + boundary
                + b'"\r\n\r\n'
                + raw,
                policy=compat32,
            )
            if rebuilt.is_multipart():
                out.defects.append(
                    "multipart boundary missing or never used: parts found by their "
                    f"boundary --{boundary.decode('ascii', 'replace')}"
                )
                self.walk(rebuilt, out, depth + 1)
                return
        out.defects.append("multipart without usable boundary: body read as text")
        text, _ = self._text(raw, "plain", None, out.defects)
        if text.strip():
            out.texts.append(text)

    def _attachment(self, data: bytes, declared: str, filename: str, out: _Collected) -> None:
        limits = self.limits
        name = clean_filename(filename, fallback="")
        if not data:
            out.skipped.append(SkippedAttachment(name, declared, 0, "empty"))
            return
        kind = _content_kind(data, declared, name)
        is_tnef = kind == TNEF_TYPE
        if is_tnef:
            out.tnef = True
        reason = ""
        if self.kept >= limits.max_count:
            reason = f"more than {limits.max_count} attachments"
        elif len(data) > limits.max_bytes:
            reason = f"larger than {limits.max_bytes} bytes"
        elif self.total_bytes + len(data) > limits.max_total_bytes:
            reason = f"attachments together larger than {limits.max_total_bytes} bytes"
        elif not is_tnef and kind not in limits.allowed_types:
            reason = f"type not accepted ({kind}, declared {declared})"
        if reason:
            out.skipped.append(SkippedAttachment(name, kind, len(data), reason))
            return
        self.kept += 1
        self.total_bytes += len(data)
        if not name:
            name = "winmail.dat" if is_tnef else f"attachment-{self.kept}"
        out.attachments.append(
            Attachment(filename=name_for_type(name, kind), content_type=kind, data=data)
        )


def _unflow(text: str, *, delsp: bool) -> str:
    """format=flowed text (RFC 3676, iOS and Thunderbird) → its paragraphs, one per line.

    A line ending in a space continues on the next (with ``delsp=yes`` that space was added
    by the sender and goes); a leading space was stuffed and goes; ``-- `` stays a line.
    """
    out: list[str] = []
    joining = False
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith(" "):
            line = line[1:]
        soft = line.endswith(" ") and line != "-- "
        piece = line[:-1] if soft and delsp else line
        if joining and out:
            out[-1] += piece
        else:
            out.append(piece)
        joining = soft
    return "\n".join(out)


_PLACEHOLDER = re.compile(
    r"\s*(?:此邮件为HTML格式|这是一封HTML格式的邮件|您的邮件客户端不支持HTML|"
    r"This is an HTML (?:message|email)|This is a multi-part message in MIME format|"
    r"To view this (?:message|email),? (?:please )?use an HTML|"
    r"Your (?:email|mail) (?:client|program) (?:does not|doesn't) support HTML)[^\n]{0,120}\s*$",
    re.IGNORECASE,
)


def _cut(data: bytes, limit: int) -> bytes:
    """``data`` cut to at most ``limit`` bytes at a line end or an ASCII byte, never inside a
    multi-byte character."""
    line_end = data.rfind(b"\n", 0, limit)
    if line_end > limit // 2:
        return data[: line_end + 1]
    for end in range(limit, max(limit - 64, 0), -1):
        if data[end - 1] < 0x80:
            return data[:end]
    return data[:limit]


def _content_kind(data: bytes, declared: str, name: str) -> str:
    """What an attachment is, by its bytes first: the sender's type and name only refine it."""
    lower = name.lower()
    if data[:4] == _TNEF_MAGIC or declared in (TNEF_TYPE, "application/vnd.ms-tnef"):
        return TNEF_TYPE
    kind = sniff_type(data)
    extension = "." + lower.rsplit(".", 1)[-1] if "." in lower else ""
    if kind == "application/zip" and extension in _OOXML:
        return _OOXML[extension]
    if kind != "application/octet-stream":
        return kind
    if data.startswith(_OLE_MAGIC):
        return _OLE.get(extension, "application/x-ole-storage")
    textual = declared.startswith("text/") or extension in (".txt", ".csv")
    if textual and b"\x00" not in data[:4096]:
        return "text/plain"
    return kind


def _delivery_status(part: Message) -> dict[str, str]:
    fields: dict[str, str] = {}
    payload = _raw_payload(part)
    blocks = payload if isinstance(payload, list) else []
    lines: list[tuple[str, str]] = []
    for block in blocks:
        if isinstance(block, Message):
            lines += [(k, str(v)) for k, v in block.raw_items()]
    if not blocks and isinstance(payload, str):
        lines = [
            (m.group(1), m.group(2)) for m in re.finditer(r"^([\w-]+):\s*(.*)$", payload, re.M)
        ]
    for key, value in lines:
        key = key.lower()
        if key not in fields and value.strip():
            fields[key] = re.sub(r"\s+", " ", value).strip()
    return fields


_QUOTED_ID = re.compile(rb"^Message-ID:\s*(.+)$", re.IGNORECASE | re.MULTILINE)


def _quoted_message_id(data: bytes) -> str:
    found = _QUOTED_ID.search(data)
    if not found:
        return ""
    return next(iter(message_ids(found.group(1).decode("ascii", "replace"))), "")


_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (?:status )?notification|delivery failure|failure notice|"
    r"returned mail|mail delivery failed|退信|投递失败|未能送达|无法投递|发送失败",
    re.IGNORECASE,
)


def _bounce(ctype: str, out: _Collected, sender: str, subject: str, text: str) -> Bounce | None:
    report = ctype == "multipart/report" and bool(out.status or out.bounced_id)
    robot = re.match(r"^(?:mailer-daemon|postmaster)@", sender, re.I)
    if not report and not (robot and _BOUNCE_SUBJECT.search(subject)):
        return None
    status = out.status
    recipient = status.get("final-recipient") or status.get("original-recipient") or ""
    recipient = recipient.split(";", 1)[-1].strip().strip("<>")
    original = out.bounced_id or _quoted_message_id(text.encode("utf-8", "replace"))
    if not recipient:
        found = re.search(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+", text)
        recipient = found.group(0) if found else ""
    return Bounce(
        original_message_id=original,
        recipient=recipient.lower(),
        status=status.get("status", "")[:20],
        action=status.get("action", "").lower()[:20],
        diagnostic=status.get("diagnostic-code", "")[:500],
    )


# ---------------------------------------------------------------------------------------------
# The entry point

_HEADER_LINE = re.compile(rb"^[\x21-\x39\x3b-\x7e]+[ \t]*:")
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_NOT_A_HEADER = re.compile(rb"\n(?![ \t]|[\x21-\x39\x3b-\x7e]+[ \t]*:|\r?$)")


def _repair_header_block(raw: bytes, defects: list[str]) -> bytes:
    """Fold a header line that lost its leading white space back into the header above.

    The stdlib parser ends the headers at such a line and reads every header after it as
    body text. Only lines followed by more real headers are folded, so a message with no
    blank line between headers and body keeps its body.
    """
    end = _BLANK_LINE.search(raw)
    block = raw[: end.start()] if end else raw
    if not _NOT_A_HEADER.search(block):
        return raw
    lines = block.split(b"\n")
    # A boundary line also ends the headers (mail that lost the blank line before its body).
    stop = next((i for i, line in enumerate(lines) if line.startswith(b"--")), len(lines))
    lines, rest = lines[:stop], lines[stop:]
    header_rows = [i for i, line in enumerate(lines) if _HEADER_LINE.match(line)]
    last_header = header_rows[-1] if header_rows else -1
    fold = [
        i
        for i, line in enumerate(lines)
        if 0 < i < last_header
        and line.strip()
        and not line[:1].isspace()
        and not _HEADER_LINE.match(line)
    ]
    if not fold:
        return raw
    for i in fold:
        lines[i] = b" " + lines[i]
    defects.append(f"{len(fold)} header line(s) without leading white space folded")
    return b"\n".join(lines + rest) + raw[len(block) :]


_LEAKED_PART_HEADER = re.compile(
    r"^(?:content-(?:type|transfer-encoding|disposition|id)|mime-version)[ \t]*:[^\n]*\n?"
    r"(?:[ \t]+\S[^\n]*\n?)*",
    re.IGNORECASE | re.MULTILINE,
)
_LEAKED_BOUNDARY = re.compile(
    r"^--[!-~][ -~]{0,69}\n(?=(?:content-[\w-]+|mime-version)[ \t]*:)", re.IGNORECASE | re.MULTILINE
)


def _without_leaked_mime(text: str) -> str:
    """``text`` without MIME part headers (``Content-Type: …``) and the boundary lines before
    them: what a broken boundary leaves in a part's text. No complaint starts a line so."""
    if "content-" not in text.lower() and "mime-version" not in text.lower():
        return text
    text = _LEAKED_PART_HEADER.sub("", _LEAKED_BOUNDARY.sub("", text))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


DATE_TRUST_WINDOW = timedelta(days=3)
"""How far before the fetch a Date header may set a case's received time."""


def parse_message(
    raw: bytes,
    *,
    received_at: datetime | None = None,
    limits: AttachmentLimits | None = None,
    own_addresses: Iterable[str] = (),
) -> ParsedMail:
    """Raw RFC 5322 message bytes (as fetched with ``BODY.PEEK[]``) → `ParsedMail`.

    ``received_at`` (timezone-aware; default now, UTC) is when the mail was fetched. The
    submission's time, which the deadlines count from, is the fetch time unless the Date
    header lies within `DATE_TRUST_WINDOW` (3 days) before it (a mailbox read after an
    outage): the sender writes the Date, so a backdated one must not make a case overdue
    on arrival. ``date_header`` keeps the Date when sane (not over a day after, nor over
    90 days before, the fetch) for display. ``limits`` bound the attachments
    kept (default `AttachmentLimits()`); ``own_addresses`` are the mailbox's own addresses
    (mail from them is a loop). Raises `UnparseableMail` (with a ``reason``) only when the
    bytes hold nothing readable; raises ValueError for a naive ``received_at``.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise UnparseableMail(f"not bytes but {type(raw).__name__}")
    raw = bytes(raw)
    now = received_at or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    if not raw.strip():
        raise UnparseableMail("empty message")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise UnparseableMail(f"message larger than {MAX_MESSAGE_BYTES} bytes")
    limits = limits or AttachmentLimits()
    digest = hashlib.sha256(raw).hexdigest()
    defects: list[str] = []

    source = raw
    if source[:1].isspace():
        source = source.lstrip()
        defects.append("blank lines or spaces before the first header")
    if source.startswith(b"From ") and b"\n" in source[:1000]:
        source = source.split(b"\n", 1)[1]  # an mbox "From " line, not a header
    source = _repair_header_block(source, defects)
    try:
        message = message_from_bytes(source, policy=compat32)
    except (RecursionError, MemoryError) as exc:
        raise UnparseableMail(f"the MIME structure cannot be read ({type(exc).__name__})") from exc
    except Exception as exc:  # the stdlib parser is meant never to raise; keep that promise
        raise UnparseableMail(f"the message cannot be read ({type(exc).__name__}: {exc})") from exc

    headers: dict[str, str] = {}
    for key, value in message.raw_items():
        headers.setdefault(key.lower(), value if isinstance(value, str) else str(value))

    def header(name: str) -> str:
        return decode_header(headers.get(name, ""), context=name)[0]

    subject, subject_defects = decode_header(headers.get("subject"), context="Subject")
    defects += subject_defects
    name, sender, address_defects = parse_address(headers.get("from") or headers.get("sender"))
    defects += address_defects
    _, reply_to, _ = parse_address(headers.get("reply-to"))

    walker = _Walker(limits)
    out = _Collected()
    try:
        walker.walk(message, out)
    except RecursionError as exc:
        raise UnparseableMail("MIME nesting too deep to read") from exc
    defects += out.defects
    top_type = _content_type(message)[0]

    full = "\n\n".join(t.strip() for t in out.texts if t.strip())
    if not full.strip():
        fallback = [t for t in out.forwarded + out.text_files if t.strip()]
        if fallback:
            full = "\n\n".join(t.strip() for t in fallback)
            defects.append("no text of its own: forwarded or attached text used")
    if not headers and (_readable_share(full) < 0.7 or not _text_bytes(source)):
        raise UnparseableMail("no headers and no readable text: not a mail message")
    full = _without_leaked_mime(clean_text(full))
    body = trim_reply(full) if full else ""
    if out.html_only and full:
        defects.append("HTML only: converted to text")
    subject = clean_line(subject)
    if not body:
        if subject:
            body = subject
            defects.append("no body text: the subject is the text")
        elif out.attachments:
            body = NO_TEXT
        else:
            reason = "no text, no subject and no attachment"
            if out.skipped:
                reason += f" kept ({len(out.skipped)} refused: {out.skipped[0].reason})"
            raise UnparseableMail(reason)

    ids = message_ids(headers.get("message-id"))
    message_id = ids[0] if ids else ""
    if not message_id:
        defects.append("no Message-ID: the id is the SHA-256 of the raw bytes")
    sent = parse_date(headers.get("date"), now)
    if headers.get("date") and sent is None:
        defects.append(
            "Date header unreadable or more than 90 days before or a day after the fetch: "
            "the fetch time is used"
        )

    bounce = _bounce(top_type, out, sender, subject, full)
    loops = loop_reasons(
        header, sender, own_addresses, is_bounce=bounce is not None, subject=subject
    )
    score, spam_reasons = spam_signals(
        header, subject, full, has_attachments=bool(out.attachments), sender=sender
    )

    try:
        submission = Submission(
            channel=Channel.EMAIL,
            external_id=message_id or f"sha256:{digest}",
            received_at=sent
            if sent is not None and now - DATE_TRUST_WINDOW <= sent <= now
            else now,
            body=body,
            subject=subject,
            contact=Contact(name=name, email=sender),
            attachments=tuple(out.attachments),
        )
    except ValueError as exc:  # pragma: no cover - every field is checked above
        raise UnparseableMail(f"no submission can be made of it: {exc}") from exc
    return ParsedMail(
        submission=submission,
        raw_sha256=digest,
        message_id=message_id,
        in_reply_to=tuple(message_ids(headers.get("in-reply-to"))),
        references=tuple(message_ids(headers.get("references"))),
        sender=sender,
        reply_to=reply_to,
        date_header=sent,
        full_text=full,
        quotes_trimmed=body != full and bool(full),
        loop_reasons=tuple(loops),
        bounce=bounce,
        spam_score=score,
        spam_reasons=tuple(spam_reasons),
        defects=tuple(dict.fromkeys(defects)),
        tnef=out.tnef,
        skipped_attachments=tuple(out.skipped),
    )
