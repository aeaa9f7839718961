"""Spot checks (不定期抽查) on a real database: the draw's population and sample, re-doing a draw
from its log, the schedule, and the supervisor's pages (who may draw, a failed check reopens
the case for rework, CSRF)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.integration.helpers import flashes, post_form
from triage import spot_checks
from triage.models import (
    Case,
    CaseEvent,
    Department,
    IllegalTransition,
    SpotCheck,
    SpotCheckDraw,
    SpotCheckResult,
    Status,
)
from triage.spot_checks import Schedule

NOW = datetime.now(UTC).replace(microsecond=0)
SCHEDULE = Schedule(spot_check_sample=3, spot_check_window_days=30, spot_check_every_days=7)


def closed_case(s: Any, n: int, closed_at: datetime, dept: str = "urban") -> Case:
    """A case that went the whole way and was closed at `closed_at`."""
    department = s.scalar(select(Department).where(Department.code == dept))
    case = Case(
        tracking_number=f"MS-2026-{n:06d}",
        query_code_hash="x",
        channel="web",
        external_id=f"spot-{n}",
        status=Status.TRIAGE,
        body=f"第{n}号楼道堆放杂物",
        received_at=closed_at - timedelta(days=3),
        contact_name="王小明",
        contact_phone="13812345678",
    )
    s.add(case)
    t = closed_at - timedelta(days=2)
    case.assign(department, "supervisor", t, t + timedelta(days=5))
    case.reply("handler", t + timedelta(hours=1), "已清理完毕。")
    case.record_visit("supervisor", closed_at, reached=True, solved=True, satisfaction="satisfied")
    case.close("supervisor", closed_at)
    s.flush()
    return case


def make_closed(runtime: Any, ages_in_days: list[float]) -> list[str]:
    with runtime.sessions() as s, s.begin():
        return [
            closed_case(s, i + 1, NOW - timedelta(days=age)).tracking_number
            for i, age in enumerate(ages_in_days)
        ]


def test_a_draw_samples_the_window_and_can_be_redone(runtime: Any) -> None:
    # Eight closed in the window, two before it.
    numbers = make_closed(runtime, [1, 2, 3, 5, 8, 13, 21, 29, 31, 60])
    in_window = sorted(numbers[:8])
    with runtime.sessions() as s, s.begin():
        drawn = spot_checks.draw(s, NOW, SCHEDULE, seed="2026-11-30")
        draw_id = drawn.id
    with runtime.sessions() as s, s.begin():
        drawn = s.get(SpotCheckDraw, draw_id)
        assert drawn.seed == "2026-11-30" and drawn.population == 8
        assert len(drawn.sample) == 3 and set(drawn.sample) <= set(in_window)
        assert drawn.window_end - drawn.window_start == timedelta(days=30)
        checks = s.scalars(select(SpotCheck).where(SpotCheck.draw_id == draw_id)).all()
        assert {c.case.tracking_number for c in checks} == set(drawn.sample)
        assert {c.result for c in checks} == {SpotCheckResult.PENDING}
        events = s.scalars(select(CaseEvent).where(CaseEvent.action == "spot_check_drawn")).all()
        assert sorted(e.detail["draw_id"] for e in events) == [draw_id] * 3
        # Re-done later, after more cases closed and one drawn case was reopened: the same.
        closed_case(s, 99, NOW + timedelta(hours=1))
        reopened = checks[0]
        spot_checks.record_check(
            reopened,
            "supervisor",
            NOW + timedelta(hours=2),
            passed=False,
            method="phone",
            note="群众称未处理",
            deadlines=runtime.settings.deadlines(),
        )
    with runtime.sessions() as s:
        drawn = s.get(SpotCheckDraw, draw_id)
        assert spot_checks.redo_draw(drawn) == drawn.sample
        # The sample is the seed's: the same population with another seed draws otherwise
        # (for these numbers; a fixed check, not a probability).
        population = spot_checks.population(
            s, drawn.window_start, drawn.window_end, before_draw=drawn.id
        )
        assert population == in_window
        assert spot_checks.sample_of(population, "another seed", 3) != drawn.sample


def test_redo_notices_a_changed_population(runtime: Any) -> None:
    make_closed(runtime, [1, 2])
    with runtime.sessions() as s, s.begin():
        drawn = spot_checks.draw(s, NOW, SCHEDULE, seed="s")
        drawn.population = 5  # as if the log said otherwise
        with pytest.raises(ValueError, match="population is 2"):
            spot_checks.redo_draw(drawn)
        s.rollback()


def test_the_schedule_calls_for_a_draw_every_n_days(runtime: Any) -> None:
    make_closed(runtime, [1])
    with runtime.sessions() as s, s.begin():
        assert spot_checks.due_draw(s, NOW, SCHEDULE)
        spot_checks.draw(s, NOW, SCHEDULE)
        assert not spot_checks.due_draw(s, NOW + timedelta(days=6, hours=23), SCHEDULE)
        assert spot_checks.due_draw(s, NOW + timedelta(days=7), SCHEDULE)
        off = Schedule(spot_check_sample=0)
        assert not spot_checks.due_draw(s, NOW + timedelta(days=30), off)
        # An empty window is drawn and logged all the same.
        empty = spot_checks.draw(s, NOW + timedelta(days=100), SCHEDULE)
        assert (empty.population, empty.sample) == (0, [])


def _page(client: Any, url: str) -> str:
    r = client.get(url)
    assert r.status_code == 200, r.status_code
    return r.get_data(as_text=True)


def test_supervisor_draws_and_a_failed_check_reopens_the_case(runtime: Any, login_as: Any) -> None:
    (number,) = make_closed(runtime, [2])
    office = login_as("supervisor")
    r = post_form(office, "/board/spot-checks", "/board/spot-checks/draw", {"draw-seed": "abc"})
    assert r.status_code == 302
    html = _page(office, "/board/spot-checks")
    assert "abc" in html and f'data-case="{number}"' in html
    with runtime.sessions() as s:
        check = s.scalar(select(SpotCheck))
        check_id = check.id
    prefix = f"check{check_id}"
    # A failure needs a note.
    r = post_form(
        office,
        "/board/spot-checks",
        f"/board/spot-checks/{check_id}",
        {f"{prefix}-method": "phone", f"{prefix}-result": "failed", f"{prefix}-note": ""},
    )
    html = _page(office, "/board/spot-checks")
    assert flashes(html) and f'data-check="{check_id}"' in html
    r = post_form(
        office,
        f"/board/cases/{number}",
        f"/board/spot-checks/{check_id}",
        {
            f"{prefix}-method": "visit",
            f"{prefix}-result": "failed",
            f"{prefix}-note": "实地查看：杂物仍在",
            "back": "case",
        },
    )
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/board/cases/{number}")
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        assert case.status == Status.IN_PROGRESS and case.rework_count == 1
        assert case.due_at is not None and case.due_at > datetime.now(UTC)
        failed = case.events[-1]
        assert failed.action == "spot_check_failed"
        assert failed.detail["department"] == "urban" and failed.detail["method"] == "visit"
    # The department sees it back, with the reason, and may reply again.
    urban = login_as("urban")
    html = _page(urban, f"/board/cases/{number}")
    assert "杂物仍在" in html and 'id="reply-form"' in html
    html = _page(office, f"/board/cases/{number}")
    assert re.search(r'class="check-failed"', html)


def test_only_supervisors_draw_and_check(runtime: Any, login_as: Any, client: Any) -> None:
    make_closed(runtime, [2])
    with runtime.sessions() as s, s.begin():
        check_id = spot_checks.draw(s, NOW, SCHEDULE).checks[0].id
    for who in ("urban", "observer", "operator"):
        user = login_as(who)
        assert user.get("/board/spot-checks").status_code == 403
        r = post_form(user, "/account/password", "/board/spot-checks/draw", {})
        assert r.status_code == 403
        r = post_form(
            user,
            "/account/password",
            f"/board/spot-checks/{check_id}",
            {f"check{check_id}-method": "phone", f"check{check_id}-result": "passed"},
        )
        assert r.status_code == 403
    assert client.get("/board/spot-checks").status_code == 302  # to the sign-in page
    # No CSRF token: refused, nothing drawn.
    office = login_as("supervisor")
    assert office.post("/board/spot-checks/draw", data={"draw-seed": "x"}).status_code == 400
    with runtime.sessions() as s:
        assert len(s.scalars(select(SpotCheckDraw)).all()) == 1
        assert s.get(SpotCheck, check_id).result == SpotCheckResult.PENDING
    # Unknown check: 404, not 500.
    assert (
        post_form(office, "/account/password", "/board/spot-checks/999999", {}).status_code == 404
    )


def test_the_command_draws_and_redoes(runtime: Any, config_file: Any) -> None:
    from click.testing import CliRunner

    from web.cli import main

    numbers = make_closed(runtime, [1, 2, 3, 4])
    runner = CliRunner()
    args = ["supervise", "draw", "--config", str(config_file), "--json"]
    result = runner.invoke(main, [*args, "--seed", "cli-seed"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    drawn = json.loads(result.output)
    assert drawn["seed"] == "cli-seed" and drawn["population"] == 4
    # The configured sample is larger than the four closed cases: all are drawn.
    assert sorted(drawn["sample"]) == sorted(numbers)
    result = runner.invoke(main, [*args, "--redo", str(drawn["draw_id"])], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    redone = json.loads(result.output)
    assert redone["same"] is True and redone["redone"] == drawn["sample"]
    result = runner.invoke(main, [*args, "--redo", "999"])
    assert result.exit_code != 0 and "no spot-check draw 999" in result.output


def test_the_population_is_what_is_closed_and_unchecked_when_drawing(runtime: Any) -> None:
    """A case reopened by a failed check is not drawn; a case whose check is still pending is
    not drawn again; a check of a case reopened since is refused; and every draw can still be
    redone after the cases moved on."""
    a, b, c = make_closed(runtime, [1, 2, 3])
    deadlines = runtime.settings.deadlines()
    everything = Schedule(spot_check_sample=10, spot_check_window_days=30)
    with runtime.sessions() as s, s.begin():
        first = spot_checks.draw(s, NOW - timedelta(hours=3), everything, seed="one")
        first_id = first.id
        assert sorted(first.sample) == [a, b, c]
        checks = {ch.case.tracking_number: ch for ch in first.checks}
        spot_checks.record_check(
            checks[a],
            "supervisor",
            NOW - timedelta(hours=2),
            passed=False,
            method="phone",
            note="未解决",
            deadlines=deadlines,
        )
        spot_checks.record_check(
            checks[b],
            "supervisor",
            NOW - timedelta(hours=2),
            passed=True,
            method="phone",
            note="",
            deadlines=deadlines,
        )
    with runtime.sessions() as s, s.begin():
        second = spot_checks.draw(s, NOW - timedelta(hours=1), everything, seed="two")
        # a is open again (reopened), c's first check is pending: only b is drawn.
        assert second.sample == [b] and second.population == 1
        second_id = second.id
        # A check left over from before (two pending checks on one case): the newer one
        # fails and reopens it, the older one may then record nothing.
        case_b = s.scalar(select(Case).where(Case.tracking_number == b))
        legacy = SpotCheckDraw(
            drawn_at=NOW - timedelta(hours=1),
            drawn_by="system",
            seed="legacy",
            window_start=NOW - timedelta(days=30),
            window_end=NOW - timedelta(hours=1),
            population=0,
            sample_size=0,
            sample=[],
        )
        s.add(legacy)
        s.flush()
        older = SpotCheck(draw_id=legacy.id, case_id=case_b.id, result=SpotCheckResult.PENDING)
        s.add(older)
        s.flush()
        newer = next(ch for ch in second.checks if ch.case_id == case_b.id)
        spot_checks.record_check(
            newer,
            "supervisor",
            NOW,
            passed=False,
            method="visit",
            note="杂物仍在",
            deadlines=deadlines,
        )
        for passed in (True, False):
            with pytest.raises(IllegalTransition, match="reopened"):
                spot_checks.record_check(
                    older,
                    "supervisor",
                    NOW,
                    passed=passed,
                    method="phone",
                    note="好",
                    deadlines=deadlines,
                )
        s.delete(older)
        s.delete(legacy)
    with runtime.sessions() as s:
        for draw_id in (first_id, second_id):
            drawn = s.get(SpotCheckDraw, draw_id)
            assert spot_checks.redo_draw(drawn) == drawn.sample


def test_a_scheduled_draw_is_shown_as_the_system_s_in_chinese(runtime: Any, login_as: Any) -> None:
    make_closed(runtime, [1])
    with runtime.sessions() as s, s.begin():
        spot_checks.draw(s, NOW, SCHEDULE)
    html = _page(login_as("supervisor"), "/board/spot-checks")
    assert '<small class="drawn-by">系统（定时抽取）</small>' in html


def test_draws_at_the_same_moment_never_check_a_case_twice(runtime: Any) -> None:
    import threading

    make_closed(runtime, [1, 2, 3, 4, 5, 6])
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def one_draw(n: int) -> None:
        try:
            with runtime.sessions() as s:
                barrier.wait()
                spot_checks.draw(s, NOW, SCHEDULE, seed=f"same-moment-{n}", actor="supervisor")
                s.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one_draw, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with runtime.sessions() as s:
        checked = list(s.scalars(select(SpotCheck.case_id)))
        sizes = [len(d.sample) for d in s.scalars(select(SpotCheckDraw))]
    # Six closed cases, three of them per draw: the third draw finds none left.
    assert len(checked) == len(set(checked)) == 6
    assert sorted(sizes) == [0, 3, 3]
