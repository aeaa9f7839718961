"""The Submission: one complaint as it arrived, whatever the channel."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from intake.normalise import clean_filename, clean_line, clean_text


class Channel(StrEnum):
    """How a complaint reached us."""

    WEB = "web"
    EMAIL = "email"
    PHONE = "phone"
    CALL_LOG = "call_log"
    LETTER = "letter"
    VISIT = "visit"
    # Another system (a city app, a neighbouring hotline) through Open311 GeoReport v2.
    API = "api"


class Kind(StrEnum):
    """What the citizen wants: 投诉 / 建议 / 咨询 / 表扬."""

    COMPLAINT = "complaint"
    SUGGESTION = "suggestion"
    INQUIRY = "inquiry"
    PRAISE = "praise"


@dataclass(frozen=True)
class Attachment:
    """A file that came with a submission; the bytes stay in memory until stored.

    The file name is cleaned on creation (`clean_filename`): no folders, control or bidi
    characters.
    """

    filename: str
    content_type: str
    data: bytes = field(repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "filename", clean_filename(self.filename))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class Contact:
    """Who complained; every part is optional, citizens may stay anonymous.

    Cleaned on creation (`clean_line`); the channel validates the phone and email.
    """

    name: str = ""
    phone: str = ""
    email: str = ""

    def __post_init__(self) -> None:
        for name in ("name", "phone", "email"):
            object.__setattr__(self, name, clean_line(getattr(self, name)))


@dataclass(frozen=True)
class Submission:
    """A complaint as it arrived: registering the same (channel, external_id) twice is a no-op."""

    channel: Channel
    external_id: str
    received_at: datetime
    body: str
    subject: str = ""
    kind: Kind = Kind.COMPLAINT
    contact: Contact = field(default_factory=Contact)
    attachments: tuple[Attachment, ...] = ()
    # Where it happened: a place or an address, one line, as given.
    place: str = ""

    def __post_init__(self) -> None:
        # One boundary for every channel: what is stored is what was meant (see normalise).
        object.__setattr__(self, "external_id", clean_line(self.external_id))
        object.__setattr__(self, "place", clean_line(self.place))
        object.__setattr__(self, "subject", clean_line(self.subject))
        object.__setattr__(self, "body", clean_text(self.body))
        if not self.external_id:
            raise ValueError("a submission needs an external id (form token, Message-ID, call id)")
        if not self.body.strip():
            raise ValueError("a submission needs a body")
        if self.received_at.tzinfo is None:
            raise ValueError("received_at must be timezone-aware")
