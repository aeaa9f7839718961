"""Why a mail or text message to a citizen did not go, as the system says it (not a server's
own answer): stored as a neutral code with its facts, put into the reader's language when
shown (web/i18n.delivery_reason; English here for the command line and the logs).

A coded reason is one string, stored where the prose used to be (the outbox row's
``last_error``, the case event's ``reason``)::

    delivery:<name> {"param": "value", ...}

the JSON object left out when there are no facts. What each code says (its facts in
brackets; ``to``, on a case event, names the recipients):

- `NEEDS_SMTPUTF8` {server, addresses}: the SMTP server does not offer SMTPUTF8, which an
  address not ASCII before the @ needs (张三@example.cn): the citizen must be told another
  way (web/mail.py; permanent).
- `SENDER_STOPPED`: the sender died during the last allowed try; the mail may even have gone.
- `SERVER_UNAVAILABLE` {server, error}: connecting, STARTTLS or login failed; `error` is the
  network's or server's own words.
- `GATEWAY_UNAVAILABLE` {gateway, error}: the SMS gateway (host[:port]) could not be
  reached (refused, timed out, a bad address); `error` is the network's own words.
- `UNKNOWN`: a failure that said nothing.
- `BOUNCED` {recipient, status, diagnostic}: a bounce came back for a mail of ours to
  `recipient` ("" when the bounce does not say), with its DSN `status` (5.1.1) and the
  remote server's `diagnostic` (its own words); the text of the bounce's case message
  (triage/mail_intake.py).

Anything else (a server's "550 no such user", a gateway's "HTTP 503") is the other side's
words and is shown as it is. Reasons stored before these codes keep their English text.
"""

from __future__ import annotations

import json
import re
from typing import Any

PREFIX = "delivery:"
NEEDS_SMTPUTF8 = "delivery:needs_smtputf8"
SENDER_STOPPED = "delivery:sender_stopped"
SERVER_UNAVAILABLE = "delivery:server_unavailable"
UNKNOWN = "delivery:unknown"
BOUNCED = "delivery:bounced"
GATEWAY_UNAVAILABLE = "delivery:gateway_unavailable"

CODES = frozenset(
    {NEEDS_SMTPUTF8, SENDER_STOPPED, SERVER_UNAVAILABLE, UNKNOWN, BOUNCED, GATEWAY_UNAVAILABLE}
)

# English, for the command line and the logs; the pages have their own (web/i18n.py).
ENGLISH = {
    NEEDS_SMTPUTF8: (
        "the SMTP server %(server)s does not offer SMTPUTF8, which the address "
        "%(addresses)s needs (not ASCII before the @); the citizen must be told another way"
    ),
    SENDER_STOPPED: "the sender stopped during the last try",
    SERVER_UNAVAILABLE: "SMTP server %(server)s: %(error)s",
    GATEWAY_UNAVAILABLE: "SMS gateway %(gateway)s not reachable: %(error)s",
    UNKNOWN: "unknown error",
    BOUNCED: "bounce: the mail to %(recipient)s was not delivered (%(status)s) %(diagnostic)s",
}

_CODED = re.compile(r"(delivery:[a-z0-9_]+)(?: (\{.*\}))?", re.DOTALL)


def coded(code: str, **facts: Any) -> str:
    """The stored form of `code` with its `facts` (strings or numbers): ``code`` or
    ``code {json}``. Raises ValueError for a code not in CODES."""
    if code not in CODES:
        raise ValueError(f"not a delivery reason code: {code}")
    if not facts:
        return code
    return f"{code} {json.dumps(facts, ensure_ascii=False, sort_keys=True)}"


def parse(text: str) -> tuple[str, dict[str, str]] | None:
    """(code, facts as strings) of a coded reason; None for any other text (a server's
    words, a reason from before the codes, a coded one cut short by the column's limit)."""
    if not text or not text.startswith(PREFIX):
        return None
    m = _CODED.fullmatch(text)
    if m is None or m.group(1) not in CODES:
        return None
    try:
        facts = json.loads(m.group(2)) if m.group(2) else {}
    except ValueError:
        return None
    if not isinstance(facts, dict):
        return None
    return m.group(1), {str(k): str(v) for k, v in facts.items()}


def with_facts(text: str, **facts: Any) -> str:
    """A coded reason with more facts (the case event's `to`); other text unchanged."""
    found = parse(text)
    if found is None:
        return text
    code, known = found
    return coded(code, **{**known, **facts})


def english(text: str) -> str:
    """A stored reason as English text: a coded one written out (with ``to: `` before it when
    it names the recipients), any other text as it is."""
    found = parse(text)
    if found is None:
        return text
    code, facts = found
    said = ENGLISH[code] % Facts(facts)
    return f"{facts['to']}: {said}" if facts.get("to") else said


class Facts(dict[str, str]):
    """Facts for %-formatting: a fact missing from an old or cut row reads as "—"."""

    def __missing__(self, key: str) -> str:
        return "—"
