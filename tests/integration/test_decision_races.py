"""Two decisions on the same case at once, on both databases: the case's version serialises
them even when a decision only adds a child row (a reply's state, an extension request), so
the second is refused instead of both being stored; through the board the loser reads a
"changed by someone else" message, not a server error."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError

from tests.conftest import csrf_from, make_settings
from tests.integration.helpers import flashes
from tests.integration.test_extension_requests import (
    case_of,
    dispatched,
    local_due,
    working_days_after,
)
from tests.integration.test_sign_off_flow import reply
from triage.models import Case, IllegalTransition, ReplyState, RequestState, Status, User


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(
        tmp_path, db_url, supervision={"reply_sign_off": True, "extensions_allowed": 2}
    )


def race(runtime: Any, number: str, actions: list[Callable[[Any, Case], None]]) -> list[str]:
    """Runs each action in its own thread and session on the case as loaded before any of
    them writes; returns each one's outcome: "ok", "stale" or "refused"."""
    loaded = threading.Barrier(len(actions))
    outcomes = [""] * len(actions)

    def run(i: int, action: Callable[[Any, Case], None]) -> None:
        with runtime.sessions() as s:
            case = s.scalar(select(Case).where(Case.tracking_number == number))
            _ = case.replies, case.extension_requests, case.events, case.department
            loaded.wait()
            try:
                action(s, case)
                s.commit()
                outcomes[i] = "ok"
            except StaleDataError:
                s.rollback()
                outcomes[i] = "stale"
            except IllegalTransition:
                s.rollback()
                outcomes[i] = "refused"

    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def _user(s: Any, username: str) -> User:
    return s.scalar(select(User).where(User.username == username))


def test_signing_off_and_returning_the_same_draft_at_once(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, _code = dispatched(client, login_as, runtime)
    reply(login_as("urban"), number)
    draft_id = case_of(runtime, number).pending_draft.id
    now = datetime.now(UTC)

    def sign(s: Any, case: Case) -> None:
        case.sign_off_reply(_user(s, "urban-head"), now, case.pending_draft)

    def give_back(s: Any, case: Case) -> None:
        case.return_reply(_user(s, "urban-head"), now, case.pending_draft, "请补充维修时间")

    outcomes = race(runtime, number, [sign, give_back])
    assert sorted(outcomes) == ["ok", "stale"], outcomes
    case = case_of(runtime, number)
    draft = next(r for r in case.replies if r.id == draft_id)
    # Whichever won, the case and its only reply agree.
    if draft.state == ReplyState.SENT:
        assert case.status == Status.REPLIED
    else:
        assert draft.state == ReplyState.RETURNED and case.status == Status.IN_PROGRESS
    assert [e.action for e in case.events].count("reply_signed_off") + [
        e.action for e in case.events
    ].count("reply_returned") == 1


def test_six_extension_requests_at_once_store_one(client: Any, login_as: Any, runtime: Any) -> None:
    number, _code = dispatched(client, login_as, runtime)
    day = working_days_after(runtime, local_due(runtime, number), 2)
    from triage.extensions import request_extension

    def ask(s: Any, case: Case) -> None:
        request_extension(
            case,
            _user(s, "urban"),
            runtime.settings.deadlines(),
            2,
            datetime.now(UTC),
            "需协调供电公司",
            day,
        )

    outcomes = race(runtime, number, [ask] * 6)
    assert outcomes.count("ok") == 1, outcomes
    case = case_of(runtime, number)
    assert [r.state for r in case.extension_requests] == [RequestState.PENDING]
    assert [e.action for e in case.events].count("extension_requested") == 1


def test_the_board_tells_the_loser_to_look_again(client: Any, login_as: Any, runtime: Any) -> None:
    """Six handlers' browsers send the request at the same moment: one request is stored,
    every other answer is a page with a message, never a server error."""
    number, _code = dispatched(client, login_as, runtime)
    day = working_days_after(runtime, local_due(runtime, number), 2)
    clients = [login_as("urban") for _ in range(6)]
    tokens = [csrf_from(c.get(f"/board/cases/{number}").get_data(as_text=True)) for c in clients]
    go = threading.Barrier(len(clients))
    said: list[Any] = [None] * len(clients)

    def post(i: int) -> None:
        go.wait()
        r = clients[i].post(
            f"/board/cases/{number}/extension",
            data={
                "csrf_token": tokens[i],
                "extension-due_date": str(day),
                "extension-reason": "需协调供电公司",
            },
        )
        page = clients[i].get(r.headers["Location"]) if r.status_code == 302 else None
        said[i] = (r.status_code, flashes(page.get_data(as_text=True)) if page else [])

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(code == 302 for code, _f in said), said
    case = case_of(runtime, number)
    assert [r.state for r in case.extension_requests] == [RequestState.PENDING]
    winners = [fs for _c, fs in said if any("已提交延期申请" in f for f in fs)]
    losers = [fs for _c, fs in said if any("刚被他人修改" in f or "已有一份" in f for f in fs)]
    assert (len(winners), len(losers)) == (1, 5), said
