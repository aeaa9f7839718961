"""Telling the citizen without being asked: received, replied, closed.

By mail when the citizen gave an address (through the outbox, triage/outbox.py), else by
SMS when they gave a mobile number and a gateway is configured (triage/sms.py). Each notice
has a deterministic Message-ID (or SMS id), a keyed hash of what it announces: a re-run, a
retried request or a re-imported call log never queues it twice. Each shows on the case's
timeline as the outbox records it (queued, sent, retried, failed).

Where the notices come from, so that every path (web form, operator desk, call import,
Open311, email, the board, the head's sign-off, the supervisors' pages) is covered without
each remembering to call us:

- received: `cases.register` calls `note_registered` with the query code, the one moment it
  is known in clear (only its hash is stored). An email case gets no notice: the mail
  intake's acknowledgment is its receipt (with the code), or was withheld on purpose.
- replied and closed: the audit events that every such change writes ("replied",
  "reply_signed_off" — the reply becomes visible to the citizen only then —, "closed",
  "closed_without_visit") are picked up after each flush.

The citizens of cases merged into a replied or closed case are told too, each on their own
case and by their own number (without a satisfaction link: the office calls them back).

The notices are built just before the transaction commits (`before_commit`), in that
transaction, so a change that is rolled back tells nobody. Sessions notify only when their
sessionmaker carries a `Notifier` (`configure`): the web app and the `minsheng` commands do;
a bare session (a test of the domain, a migration) does not.

No loops and no mail to nowhere: no notice to an empty or malformed address, to the office's
own addresses, or to an address the mail intake found looping (its case has a
"not_acknowledged" event); every notice is Auto-Submitted: auto-generated. Nothing the
citizen typed is echoed (not their name, not their text): whoever fills in a form can type
anybody's address.

The mails are Chinese only, like the acknowledgment and like government mail in China.
"""

from __future__ import annotations

import hashlib
import hmac
import html
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from triage import satisfaction as satisfaction_links
from triage.case_people import for_citizen
from triage.models import Case, CaseEvent, CaseReply, ReplyState
from triage.outbox import MailKind, OutboxError, OutgoingMail, build_message, enqueue
from triage.privacy import People
from triage.sms import fit, mobile_number, queue_sms

INFO_KEY = "minsheng.notifier"
_PENDING = "minsheng.notices"

REPLY_ACTIONS = frozenset({"replied", "reply_signed_off"})
CLOSE_ACTIONS = frozenset({"closed", "closed_without_visit"})


@dataclass(frozen=True)
class SmsTemplates:
    received: str
    replied: str
    closed: str
    max_length: int = 300


@dataclass(frozen=True)
class Notifier:
    """What notices need to know, from the config (web/notices.py builds it).

    - ``sender``: the From of the mails (``[mail] sender``); ``own_addresses``: addresses
      never written to (the sender's, the complaints mailbox's), lower case.
    - ``secret``: keys the Message-IDs and the satisfaction tokens.
    - ``base_url``: the public site, for the /track link and the satisfaction link.
    - ``local``: an aware UTC time → local time, for the dates in the text.
    - ``received``/``replied``/``closed``: which notices are sent (``[notifications]``);
      ``satisfaction_link`` and ``link_days`` (``[satisfaction] link_days``).
    - ``sms``: the templates when a gateway is configured, else None (no SMS).
    """

    sender: str
    secret: bytes
    base_url: str
    office_name: str
    hotline: str
    local: Callable[[datetime], datetime]
    received: bool = True
    replied: bool = True
    closed: bool = True
    satisfaction_link: bool = True
    link_days: int = 15
    own_addresses: frozenset[str] = field(default_factory=frozenset)
    sms: SmsTemplates | None = None

    @property
    def track_url(self) -> str:
        return self.base_url.rstrip("/") + "/track"

    def satisfaction_url(self, token: str) -> str:
        return f"{self.base_url.rstrip('/')}/satisfaction/{token}"


def configure(sessions: sessionmaker[Session], notifier: Notifier) -> None:
    """Sessions made by `sessions` from now on notify citizens through `notifier`."""
    sessions.configure(info={INFO_KEY: notifier})


@contextmanager
def quiet(session: Session) -> Iterator[None]:
    """Within the block, `session` tells no citizen anything: what it registers, replies or
    closes there sends no notice, now or at its commit (the demo's cases, written as if
    weeks old, are history, not news). Notices due from before the block still go with the
    commit; the session notifies again after it. Flushes on entry and on a normal exit."""
    session.flush()  # what came before is collected while the notifier is still there
    notifier = session.info.pop(INFO_KEY, None)
    before = session.info.pop(_PENDING, None)
    try:
        yield
        session.flush()  # what the block wrote, collected without a notifier: nothing
    finally:
        session.info.pop(_PENDING, None)
        if before:
            session.info[_PENDING] = before
        if notifier is not None:
            session.info[INFO_KEY] = notifier


def note_registered(session: Session, case: Case, query_code: str, now: datetime) -> None:
    """A case was just registered with `query_code`: its 'received' notice goes out with the
    transaction (none for an email case, or when the session does not notify)."""
    if INFO_KEY in session.info:
        session.info.setdefault(_PENDING, []).append(("received", case, query_code, now))


# -- picking the notices up ----------------------------------------------------------------


@event.listens_for(Session, "after_flush")
def _collect(session: Session, flush_context: Any) -> None:
    if INFO_KEY not in session.info:
        return
    found = [
        ev
        for ev in session.new
        if isinstance(ev, CaseEvent) and ev.action in REPLY_ACTIONS | CLOSE_ACTIONS
    ]
    if found:
        pending = session.info.setdefault(_PENDING, [])
        pending.extend(("event", ev) for ev in sorted(found, key=lambda e: e.id))


@event.listens_for(Session, "before_commit")
def _send_with_commit(session: Session) -> None:
    notifier: Notifier | None = session.info.get(INFO_KEY)
    if notifier is None:
        return
    session.flush()
    while session.info.get(_PENDING):
        pending = session.info.pop(_PENDING)
        for item in pending:
            _notice(session, notifier, item)
        session.flush()


@event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, previous_transaction: Any) -> None:
    if getattr(previous_transaction, "parent", None) is None:
        session.info.pop(_PENDING, None)


def _alive(obj: object) -> bool:
    """Not rolled back with a savepoint since it was noted."""
    state = inspect(obj)
    return bool(state.persistent or state.pending)


def _notice(session: Session, notifier: Notifier, item: tuple[Any, ...]) -> None:
    if item[0] == "received":
        _, case, code, now = item
        if notifier.received and _alive(case):
            received(session, notifier, case, code, now)
        return
    ev: CaseEvent = item[1]
    if not _alive(ev):
        return
    case = session.get(Case, ev.case_id)
    if case is None:
        return
    if ev.action in REPLY_ACTIONS and notifier.replied:
        reply = None
        if ev.detail.get("reply_id"):
            reply = session.get(CaseReply, int(ev.detail["reply_id"]))
        reply = reply or case.latest_reply
        if reply is not None and reply.state == ReplyState.SENT:
            replied(session, notifier, case, reply, ev.at)
            for citizen in _merged_citizens(session, case):
                replied(session, notifier, citizen, reply, ev.at, merged=True)
    elif ev.action in CLOSE_ACTIONS and notifier.closed:
        closed(session, notifier, case, ev, ev.at)
        for citizen in _merged_citizens(session, case):
            closed(session, notifier, citizen, ev, ev.at)


def own_view(session: Session, case: Case, text: str) -> str:
    """``text`` of ``case`` (a reply) as its own citizen may read it: the other citizens of
    its group of merged and linked cases masked (`triage.case_people.for_citizen`)."""
    own = People.of(case.caller_names, [case.contact_phone], [case.contact_email])
    return for_citizen(session, case.id, own, text)


def _merged_citizens(session: Session, case: Case) -> list[Case]:
    """The cases merged into `case` (directly or not): their citizens follow it, so they are
    told of its reply and close too, each on their own case's timeline."""
    from triage.cases import citizens_to_call  # triage.cases imports this module

    return citizens_to_call(session, case)


# -- whom, and how -------------------------------------------------------------------------


def _address_of(notifier: Notifier, case: Case) -> str | None:
    """The citizen's address as the outbox writes it (IDNA domain), or None when it cannot
    be one; from the case's contact alone."""
    address = (case.contact_email or "").strip()
    if not address or "@" not in address or any(c.isspace() for c in address):
        return None
    local, _, domain = address.rpartition("@")
    if not local:
        return None
    # 张三@example.com is a valid address (RFC 6531): written as it is, it goes only to a
    # server that offers SMTPUTF8, and a server without it fails the mail on the case's
    # timeline with that reason (web/mail.py), so the office knows to call.
    if not domain.isascii():
        try:  # 例子.中国 → xn--fsqu00a.xn--fiqs8s, which every server takes
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return None
        address = f"{local}@{domain}"
    if len(address) > 254 or address.lower() in notifier.own_addresses:
        return None
    return address


def _mail_address(notifier: Notifier, case: Case) -> str | None:
    """The address the notices of `case` go to, or None (none usable, or looping)."""
    address = _address_of(notifier, case)
    if address is None:
        return None
    if any(e.action == "not_acknowledged" for e in case.events):
        # The mail intake found this address answering automatically: no more mail to it.
        return None
    return address


def _tag(notifier: Notifier, kind: str, case: Case, key: object = "") -> str:
    return hmac.new(
        notifier.secret, f"notice:{kind}:{case.tracking_number}:{key}".encode(), hashlib.sha256
    ).hexdigest()[:24]


def _domain(sender: str) -> str:
    return sender.rsplit("@", 1)[-1].strip(" >") or "localhost"


def _queue_mail(
    session: Session,
    notifier: Notifier,
    case: Case,
    address: str,
    *,
    kind: str,
    key: object,
    subject: str,
    text: str,
    html_body: str,
    now: datetime,
) -> OutgoingMail | None:
    message_id = f"<notice.{kind}.{_tag(notifier, kind, case, key)}@{_domain(notifier.sender)}>"
    if session.scalar(select(OutgoingMail.id).where(OutgoingMail.message_id == message_id)):
        return None
    try:
        msg = build_message(
            sender=notifier.sender, to=[address], subject=subject, text=text, html=html_body
        )
    except (OutboxError, ValueError):  # UnicodeError included: never the citizen's 500
        return None
    msg["Message-ID"] = message_id
    msg["X-Minsheng-Notice"] = kind
    try:
        return enqueue(session, msg, case=case, kind=MailKind.NOTIFICATION, now=now)
    except OutboxError:
        return None


def _queue_sms(
    session: Session,
    notifier: Notifier,
    case: Case,
    *,
    kind: str,
    key: object,
    template: str,
    now: datetime,
    held: bool = False,
    **fields: str,
) -> None:
    """The notice by SMS, or, `held`, its stand-in for the notice's mail (`_stand_in`)."""
    if notifier.sms is None:
        return  # the office sends no text messages: its return visits are its calls
    phone = mobile_number(case.contact_phone or "")
    if phone is None:
        if not held:
            _not_told(session, case, kind, now)
        return
    values = {
        "office": notifier.office_name,
        "tracking_number": case.tracking_number,
        "query_code": "",
        "link": notifier.track_url,
        "reply": "",
        **fields,
    }
    text = fit(template, notifier.sms.max_length, **values)
    queue_sms(
        session,
        case=case,
        phone=phone,
        text=text,
        kind=f"notice_{kind}",
        sms_id=f"{kind}.{_tag(notifier, kind, case, key)}",
        now=now,
        held=held,
    )


def needs_smtputf8(address: str) -> bool:
    """Whether a mail to `address` can go only through a server that offers SMTPUTF8 (its
    local part is not ASCII: 张三@example.cn; an IDNA domain goes anywhere)."""
    return not address.rpartition("@")[0].isascii()


def _stand_in(
    session: Session,
    notifier: Notifier,
    case: Case,
    address: str,
    mail: OutgoingMail | None,
    **sms: Any,
) -> None:
    """A notice mail to an address that needs SMTPUTF8 fails for good on a server without
    it (web/mail.py): when the citizen also gave a mobile number and a gateway is set, the
    notice's text message is kept (held) with the mail, and goes instead if the mail fails
    (triage/outbox.py). Nothing for a mail queued before (a re-run)."""
    if mail is not None and notifier.sms is not None and needs_smtputf8(address):
        _queue_sms(session, notifier, case, held=True, **sms)


def reach(notifier: Notifier | None, case: Case) -> str:
    """How the notices reach the case's citizen: "mail" (an address to write to), "sms" (a
    mobile number, and a gateway), "none" (they gave a contact, but neither works: a
    landline only, or an address that cannot be one; the office must call them back),
    "off" (no usable address, and the office sends no text messages at all: no gateway) or
    "anonymous" (no contact at all). Read from the case's contact alone, no query."""
    if notifier is None:
        return "off"
    if _address_of(notifier, case) is not None:
        return "mail"
    if notifier.sms is None:
        return "off"
    phone = case.contact_phone or ""
    if mobile_number(phone):
        return "sms"
    if phone.strip() or (case.contact_email or "").strip():
        return "none"
    return "anonymous"


def without_contact(case: Case) -> bool:
    """Whether the citizen left no way to reach them: no phone number, no address (an
    anonymous caller, or one whose number was withheld). Nobody can call them back or send
    them a notice; they follow the case with its tracking number and query code."""
    return not ((case.contact_phone or "").strip() or (case.contact_email or "").strip())


def _not_told(session: Session, case: Case, kind: str, now: datetime) -> None:
    """A notice the citizen cannot get (no usable address, no mobile number): on
    the timeline as `notice_not_sent`, so that whoever handles the case calls them back;
    nothing for an anonymous citizen, who asked to hear nothing."""
    if without_contact(case):
        return
    case.record("notice_not_sent", "system", now, notice=kind)


def _html(paragraphs: list[str], links: dict[str, str] | None = None) -> str:
    """Simple HTML of the text's paragraphs; URLs in `links` become links."""
    links = links or {}
    body = []
    for p in paragraphs:
        escaped = html.escape(p).replace("\n", "<br>")
        for url in links.values():
            e = html.escape(url)
            escaped = escaped.replace(e, f'<a href="{e}">{e}</a>')
        body.append(f"<p>{escaped}</p>")
    return (
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8"></head>'
        '<body style="font-family:sans-serif;line-height:1.6;max-width:40em">'
        + "".join(body)
        + "</body></html>"
    )


def _footer(notifier: Notifier) -> str:
    return (
        f"本邮件由系统自动发送，请勿直接回复。如有疑问，请拨打{notifier.hotline}。\n\n"
        f"{notifier.office_name}"
    )


def received(
    session: Session, notifier: Notifier, case: Case, query_code: str, now: datetime
) -> None:
    """The 'received' notice of a new case: tracking number, query code, the /track link.
    Nothing for an email case (its acknowledgment says it)."""
    if case.channel == "email":
        return
    link = f"{notifier.track_url}?number={case.tracking_number}"
    address = _mail_address(notifier, case)
    sms: dict[str, Any] = {
        "kind": "received",
        "key": "",
        "template": notifier.sms.received if notifier.sms else "",
        "now": now,
        "query_code": query_code,
        "link": link,
    }
    if address is None:
        _queue_sms(session, notifier, case, **sms)
        return
    when = notifier.local(case.received_at).strftime("%Y年%m月%d日 %H:%M")
    paragraphs = [
        "您好：",
        f"您于{when}反映的诉求已收到并受理。",
        f"受理编号：{case.tracking_number}\n查询码：{query_code}",
        f"请凭受理编号和查询码查询办理进度：\n{link}",
        "查询码只在此告知一次，请妥善保存，勿告诉他人。",
        _footer(notifier),
    ]
    mail = _queue_mail(
        session,
        notifier,
        case,
        address,
        kind="received",
        key="",
        subject=f"已受理（受理编号 {case.tracking_number}）",
        text="\n\n".join(paragraphs) + "\n",
        html_body=_html(paragraphs, {"track": link}),
        now=now,
    )
    _stand_in(session, notifier, case, address, mail, **sms)


def replied(
    session: Session,
    notifier: Notifier,
    case: Case,
    reply: CaseReply,
    now: datetime,
    *,
    merged: bool = False,
) -> None:
    """The 'replied' notice to `case`'s citizen: the reply as it went out (signed off where
    the config asks it), and the satisfaction link when it is on. `merged`: `case` was merged
    into the case replied; its citizen gets the reply without a link (the office calls them
    back, `Case.record_citizen_visit`)."""
    track = f"{notifier.track_url}?number={case.tracking_number}"
    # The reply names whom the office reached: the citizens of the other cases merged with
    # this one are masked for this one's citizen (as on the tracking page).
    body = own_view(session, case, reply.body)
    link = ""
    if notifier.satisfaction_link and not merged:
        token = satisfaction_links.issue_token(
            notifier.secret, case, reply, now, notifier.link_days
        )
        link = notifier.satisfaction_url(token)
    address = _mail_address(notifier, case)
    sms: dict[str, Any] = {
        "kind": "replied",
        "key": reply.id,
        "template": notifier.sms.replied if notifier.sms else "",
        "now": now,
        "reply": " ".join(body.split()),
        "link": link or track,
    }
    if address is None:
        _queue_sms(session, notifier, case, **sms)
        return
    who = reply.department.name if reply.department is not None else "承办部门"
    together = "与反映同一问题的诉求合并办理，" if merged else ""
    paragraphs = [
        "您好：",
        f"您反映的诉求（受理编号：{case.tracking_number}）{together}已由{who}答复如下：",
        body.strip(),
    ]
    links = {"track": track}
    if link:
        paragraphs.append(
            "请您对办理结果进行评价（无需登录，链接"
            f"{notifier.link_days}日内有效，只能使用一次）：\n{link}"
        )
        links["satisfaction"] = link
    paragraphs += [f"办理进度可凭受理编号和查询码查询：\n{track}", _footer(notifier)]
    mail = _queue_mail(
        session,
        notifier,
        case,
        address,
        kind="replied",
        key=reply.id,
        subject=f"已答复（受理编号 {case.tracking_number}）",
        text="\n\n".join(paragraphs) + "\n",
        html_body=_html(paragraphs, links),
        now=now,
    )
    _stand_in(session, notifier, case, address, mail, **sms)


def closed(
    session: Session, notifier: Notifier, case: Case, closing: CaseEvent, now: datetime
) -> None:
    """The 'closed' notice (办结), one per closing event (a case reopened by a spot check and
    closed again is told again)."""
    address = _mail_address(notifier, case)
    sms: dict[str, Any] = {
        "kind": "closed",
        "key": closing.id,
        "template": notifier.sms.closed if notifier.sms else "",
        "now": now,
    }
    if address is None:
        _queue_sms(session, notifier, case, **sms)
        return
    track = f"{notifier.track_url}?number={case.tracking_number}"
    paragraphs = [
        "您好：",
        f"您反映的诉求（受理编号：{case.tracking_number}）已办结。感谢您对我们工作的监督和支持。",
        f"办理经过可凭受理编号和查询码查询：\n{track}",
        _footer(notifier),
    ]
    mail = _queue_mail(
        session,
        notifier,
        case,
        address,
        kind="closed",
        key=closing.id,
        subject=f"已办结（受理编号 {case.tracking_number}）",
        text="\n\n".join(paragraphs) + "\n",
        html_body=_html(paragraphs, {"track": track}),
        now=now,
    )
    _stand_in(session, notifier, case, address, mail, **sms)
