"""The mail intake's batches (`ingest_batch`): the new cases of a batch registered together
in one flush come out exactly as one `ingest` each would make them, and one message that
fails in the middle of a batch neither keeps the others out nor is lost."""

# ruff: noqa: F811  (the fixtures of test_mail_intake, taken as arguments)
from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from intake.mailbox import Mailbox
from tests.integration.test_mail_intake import (  # noqa: F401  (fixtures)
    intake_config,
    mail,
    rt,
    smtp_port,
)
from triage.mail_intake import (
    BatchResult,
    IncomingMail,
    Outcome,
    ingest,
    ingest_batch,
    record_fetch,
)
from triage.models import Case, CaseEvent, DuplicateSignature
from triage.outbox import OutgoingMail
from triage.search_index import SearchGram
from web.cli_intake import mail_policy
from web.runtime import Runtime

MAILBOX = "intake@test"
# Near-identical reports of one problem, then another, then the first again: each later
# report's "similar cases" names the earlier ones of the same batch.
TEXTS = [
    "幸福里小区3号楼门前下水道堵塞，污水漫到路面，已经一个星期没人管。",
    "幸福里小区3号楼门口下水道堵了，污水流到马路上，一周了没人处理。",
    "解放路与人民路路口的红绿灯坏了，早晚高峰车辆乱成一团，很危险。",
    "幸福里小区3号楼下水道堵塞污水漫溢，请尽快派人疏通。",
    "解放路人民路口红绿灯不亮，车辆抢行，容易出事故。",
]


def _raw(texts: list[str], tag: str) -> list[bytes]:
    return [
        mail(text, subject=f"投诉{i}", message_id=f"<{tag}-{i}@mail.example.com>")
        for i, text in enumerate(texts)
    ]


def _open(session: Session, now: datetime) -> None:
    # What the intake does first: a write opens the transaction (see web/cli_intake.py).
    record_fetch(session, MAILBOX, now=now, waiting=0)


def _picture(session: Session) -> list[tuple[Any, ...]]:
    """What a user could notice of the cases made: number, outcome, similar cases, events,
    acknowledgment, index rows."""
    out = []
    for case in session.scalars(select(Case).order_by(Case.id)):
        incoming = session.scalars(select(IncomingMail).where(IncomingMail.case_id == case.id))
        events = session.scalars(
            select(CaseEvent.action)
            .where(CaseEvent.case_id == case.id)
            .order_by(CaseEvent.at, CaseEvent.id)
        )
        acks = session.scalar(
            select(func.count()).select_from(OutgoingMail).where(OutgoingMail.case_id == case.id)
        )
        grams = session.scalar(
            select(func.count()).select_from(SearchGram).where(SearchGram.case_id == case.id)
        )
        signature = session.scalar(
            select(func.count())
            .select_from(DuplicateSignature)
            .where(DuplicateSignature.case_id == case.id)
        )
        out.append(
            (
                case.tracking_number,
                case.body,
                case.status,
                case.similar,
                [m.outcome for m in incoming],
                list(events),
                acks,
                grams,
                signature,
            )
        )
    return out


def test_a_batch_makes_the_same_cases_as_one_message_at_a_time(rt: Runtime) -> None:
    policy = mail_policy(rt)
    now = datetime.now(UTC)
    raws = _raw(TEXTS, "same")
    with rt.sessions() as s:
        _open(s, now)
        for raw in raws:
            with s.begin_nested():
                ingest(s, raw, mailbox=MAILBOX, policy=policy, now=now)
        s.flush()
        one_by_one = _picture(s)
        s.rollback()
    with rt.sessions() as s:
        _open(s, now)
        results = ingest_batch(s, raws, mailbox=MAILBOX, policy=policy, now=now)
        s.commit()
        batch = _picture(s)

    assert [r.result.outcome for r in results] == [Outcome.REGISTERED] * len(TEXTS)
    assert not any(r.error for r in results)
    assert batch == one_by_one
    # The batch saw its own earlier cases: the third report of the drain names the first two.
    numbers = [row[0] for row in batch]
    assert {n for n, _ in batch[3][3]} >= {numbers[0], numbers[1]}
    assert numbers == sorted(set(numbers))


class _FailsOn:
    """A router that fails on one text (a bug in a model, say), else asks the real one."""

    def __init__(self, inner: Any, word: str) -> None:
        self.inner, self.word = inner, word
        self.version, self.threshold = inner.version, inner.threshold

    def suggest(self, subject: str, body: str) -> Any:
        if self.word in body:
            raise ValueError(f"the router cannot read {self.word}")
        return self.inner.suggest(subject, body)


def test_a_message_failing_mid_batch_is_quarantined_and_the_others_registered(
    rt: Runtime,
) -> None:
    base = mail_policy(rt)
    policy = dataclasses.replace(
        base, intake=dataclasses.replace(base.intake, router=_FailsOn(base.intake.router, "嘤嘤嘤"))
    )
    texts = [*TEXTS[:2], "这封邮件里有嘤嘤嘤三个字，路由会出错。", *TEXTS[2:]]
    raws = _raw(texts, "fails")
    now = datetime.now(UTC)
    with rt.sessions() as s:
        _open(s, now)
        results = ingest_batch(s, raws, mailbox=MAILBOX, policy=policy, now=now)
        s.commit()

    failed: BatchResult = results[2]
    assert failed.result.outcome == Outcome.QUARANTINED
    assert "intake failed: ValueError" in failed.error
    assert [r.result.outcome for i, r in enumerate(results) if i != 2] == [Outcome.REGISTERED] * (
        len(texts) - 1
    )
    with rt.sessions() as s:
        cases = list(s.scalars(select(Case).order_by(Case.id)))
        assert [c.body for c in cases] == [t for i, t in enumerate(texts) if i != 2]
        # Numbers without a gap: the failed batch's numbers were given back.
        assert [c.tracking_number[-6:] for c in cases] == [f"{i:06d}" for i in range(1, 6)]
        quarantined = s.scalars(
            select(IncomingMail).where(IncomingMail.outcome == Outcome.QUARANTINED)
        ).one()
        assert quarantined.raw == raws[2] and quarantined.case_id is None
        assert "ValueError" in quarantined.reason
        # Each registered case acknowledged once, searchable, one incoming row each.
        assert s.scalar(select(func.count()).select_from(OutgoingMail)) == len(cases)
        assert s.scalar(select(func.count()).select_from(IncomingMail)) == len(texts)
        for case in cases:
            grams = select(func.count()).select_from(SearchGram)
            assert s.scalar(grams.where(SearchGram.case_id == case.id))

    # Run again (the move never happened): nothing doubles, the bad one stays quarantined.
    with rt.sessions() as s:
        _open(s, now)
        again = ingest_batch(s, raws, mailbox=MAILBOX, policy=policy, now=now)
        s.commit()
        assert [r.result.outcome for r in again] == [Outcome.DUPLICATE] * len(texts)
        assert s.scalar(select(func.count()).select_from(Case)) == len(texts) - 1


def test_a_duplicate_message_id_inside_one_batch_is_its_own_case_as_one_at_a_time(
    rt: Runtime,
) -> None:
    policy = mail_policy(rt)
    now = datetime.now(UTC)
    first = mail(TEXTS[0], message_id="<twice@mail.example.com>")
    other = mail(TEXTS[2], message_id="<twice@mail.example.com>")
    with rt.sessions() as s:
        _open(s, now)
        results = ingest_batch(s, [first, first, other], mailbox=MAILBOX, policy=policy, now=now)
        s.commit()
        outcomes = [r.result.outcome for r in results]
        assert outcomes == [Outcome.REGISTERED, Outcome.DUPLICATE, Outcome.REGISTERED]
        ids = sorted(s.scalars(select(Case.external_id)))
        assert ids[0].startswith("twice@mail.example.com") and len(ids) == 2


@pytest.mark.slow
def test_a_reply_to_a_mail_of_the_same_batch_threads_into_its_case(
    rt: Runtime, mailserver: Any
) -> None:
    policy = mail_policy(rt)
    now = datetime.now(UTC)
    original = mail(TEXTS[0], message_id="<orig@mail.example.com>")
    reply = mail(
        "补充：今天更严重了。",
        subject="Re: 投诉",
        sender="李四 <li.si@example.com>",
        headers={"In-Reply-To": "<orig@mail.example.com>"},
    )
    for raw in (original, reply):
        mailserver.append("INBOX", raw)
    with Mailbox(rt.settings.mailbox_config()) as mailbox, rt.sessions() as s:  # type: ignore[arg-type]
        raws = [m.raw for m in mailbox.fetch(mailbox.pending())]
        _open(s, now)
        results = ingest_batch(s, raws, mailbox=MAILBOX, policy=policy, now=now)
        s.commit()
    assert [r.result.outcome for r in results] == [Outcome.REGISTERED, Outcome.THREADED]
    assert results[1].result.case_id == results[0].result.case_id


class _CountingModel:
    """A trained routing model that counts how it was asked (one by one, or a batch at once)."""

    def __init__(self, model: Any) -> None:
        self.model, self.version, self.threshold = model, model.version, model.threshold
        self.one, self.many = 0, 0
        self.answers: list[tuple[str, float]] = []

    def suggest(self, subject: str, body: str) -> Any:
        self.one += 1
        answer = self.model.suggest(subject, body)
        self.answers.append((answer.label, round(answer.confidence, 9)))
        return answer

    def suggest_many(self, pairs: Any) -> Any:
        self.many += 1
        answers = self.model.suggest_many(pairs)
        self.answers += [(a.label, round(a.confidence, 9)) for a in answers]
        return answers


def test_a_batch_asks_a_trained_model_once_and_gets_the_same_suggestions(rt: Runtime) -> None:
    from triage.routing import load_examples, train_model
    from web.demo import DEMO_TRAINING

    model = _CountingModel(train_model(load_examples(DEMO_TRAINING), folds=3))
    base = mail_policy(rt)
    policy = dataclasses.replace(base, intake=dataclasses.replace(base.intake, router=model))
    now = datetime.now(UTC)

    def suggestions(s: Session) -> list[tuple[Any, ...]]:
        return [
            (c.tracking_number, c.suggested_department_id, round(c.confidence or 0, 9), c.status)
            for c in s.scalars(select(Case).order_by(Case.id))
        ]

    with rt.sessions() as s:
        _open(s, now)
        for raw in _raw(TEXTS, "model-one"):
            with s.begin_nested():
                ingest(s, raw, mailbox=MAILBOX, policy=policy, now=now)
        s.flush()
        one_by_one = suggestions(s)
        s.rollback()
    assert model.one == len(TEXTS)
    asked_one_by_one = model.answers
    model.one, model.answers = 0, []
    with rt.sessions() as s:
        _open(s, now)
        ingest_batch(s, _raw(TEXTS, "model-one"), mailbox=MAILBOX, policy=policy, now=now)
        s.commit()
        batch = suggestions(s)
    assert (model.one, model.many) == (0, 1)  # one matrix product for the whole run
    assert model.answers == asked_one_by_one  # the same label and confidence for each
    assert all(confidence > 0 for _, confidence in model.answers)
    assert batch == one_by_one


def test_a_batch_reads_and_writes_in_as_many_statements_for_many_messages_as_for_few(
    rt: Runtime,
) -> None:
    """The intake's speed on a server database (issue 7: 200 messages a second) rests on a
    batch costing a fixed number of round trips, not a few per message: the duplicate and
    threading checks of a batch, its new cases and their rows go in the same number of
    statements for 20 messages as for 5 (suggestions and search rows deferred, as the
    intake does: `triage.enrichment`)."""
    from sqlalchemy import event

    policy = mail_policy(rt)
    now = datetime.now(UTC)
    counted: list[int] = []

    def statements(raws: list[bytes]) -> int:
        n = 0

        def count(*args: Any) -> None:
            nonlocal n
            n += 1

        with rt.sessions() as s:
            _open(s, now)
            event.listen(rt.engine, "before_cursor_execute", count)
            try:
                results = ingest_batch(
                    s, raws, mailbox=MAILBOX, policy=policy, now=now, defer_enrichment=True
                )
            finally:
                event.remove(rt.engine, "before_cursor_execute", count)
            assert [r.result.outcome for r in results] == [Outcome.REGISTERED] * len(raws)
            s.commit()
        return n

    few = [f"东风路{i}号门前的路灯坏了{i}天，晚上一片漆黑。" for i in range(5)]
    many = [f"建设街{i}号旁的垃圾桶{i}天没人清理，臭味很大。" for i in range(20)]
    statements(_raw(["和平路的井盖丢了，很危险。"], "first"))  # the year's counter row made
    counted.append(statements(_raw(few, "few")))
    counted.append(statements(_raw(many, "many")))
    assert counted[1] == counted[0], counted
