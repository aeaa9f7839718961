"""The monthly figures (triage/report/figures.py) on a fixture month computed by hand, on the
database under test (SQLite or PostgreSQL), and recomputed from `minsheng export cases`.

The fixture: March 2026, Asia/Shanghai (UTC+8). 28 Feb 2026 is a make-up working day (调休),
1 Mar a Sunday; no holiday in March. Local times below; "→ UTC" where the UTC date differs.

Cases (dept, channel, kind; received; due; replied; own return visits; closed; other):
  U1 urban web complaint; 03-02 09:00; due 03-09 23:59:59; replied 03-05; visit 03-06 valid
     solved satisfied contacted in time; closed 03-06 11:00; caller k1; plus a visit to a
     merged case's citizen
  U2 urban phone complaint; 03-03 09:00; due 03-10 23:59:59; replied 03-12 (late); visit
     03-13 valid unsolved basic, contacted in time (says the citizen, although the written
     reply was late); closed 03-16 (late); caller k1
  U3 urban web suggestion; 03-31 23:30 (→ UTC 03-31 15:30); due 04-08; assigned; sent back
     once; caller k3
  U4 urban email complaint; 02-27 10:00; due 03-05 23:59:59; replied 02-28; visit 03-01 00:30
     (→ UTC 02-28) valid solved satisfied, recorded before the contact question (contacted
     NULL); closed 03-01 01:00 (→ UTC 02-28); caller k3
  T1 transport phone complaint; 03-10 09:00; due 03-27 23:59:59 (after its rework); replied
     03-25; visits 03-17 not reached, 03-18 valid unsolved unsatisfied contacted in time,
     03-26 valid solved satisfied not contacted in time; closed 03-27 10:00; reworked once;
     caller k2
  T2 transport web complaint; 04-01 00:10 (→ UTC 03-31 16:10): April's
  T3 transport web complaint; 03-05 09:00; due 03-12 23:59:59; replied 03-30 (late); visit
     04-01 00:05 (→ UTC 03-31) valid: April's; visited
  X1 transport letter complaint; 03-11 09:00; due 03-30 23:59:59 (extended once); no reply;
     in progress; caller k2
  M1 urban web complaint; 03-04 09:00; due 03-06 23:59:59; merged 03-05; anonymous
  R1 no department, email complaint; 03-20 09:00; rejected; caller k1

By hand, March 2026 (calendar month):
  received = U1 U2 U3 M1 R1 T1 T3 X1 = 8 (U4 is February's, T2 April's in local time)
  by_channel = web U1 U3 M1 T3 = 4, phone U2 T1 = 2, email R1 = 1, letter X1 = 1
  by_kind = complaint 7, suggestion U3 = 1
  by_department = urban U1 U2 U3 M1 = 4, transport T1 T3 X1 = 3 (R1 has none)
  valid visits N = U1, U2, U4 (1 Mar local), T1 (latest valid one: 03-26) = 4; T3's is April's
    urban 3 (U1 U2 U4), transport 1 (T1), health 0
  response (the visit's "contacted in time"; NULL: replied ≤ due): U1 yes, U2 yes (its
    answer, though replied late), U4 yes (NULL: 02-28 ≤ 03-05), T1 no (its answer, though
    replied in time) = 3/4 = 0.75; urban 3/3, transport 0/1
  resolution (solved): U1, U4, T1 = 3/4 = 0.75; urban 2/3, transport 1
  satisfaction: satisfied U1 U4 T1 = 3, basic U2 = 1 → (3 + 0.9) / 4 = 0.975
    urban (2 + 0.9) / 3 = 0.96667, transport 1
  composite = 0.1 × 0.75 + 0.5 × 0.75 + 0.4 × 0.975 = 0.075 + 0.375 + 0.39 = 0.84
    urban 0.1 × 1 + (0.5 × 2 + 0.4 × 2.9) / 3 = 0.1 + 2.16 / 3 = 0.82 → 4 stars (≥ 0.8)
    transport 0.1 × 0 + 0.5 + 0.4 = 0.9 → 5 stars (≥ 0.9); health: no visits → null rates, no stars
  on_time (closed in March by due): U1 yes, U2 no, U4 yes (1 Mar local), T1 yes = 3/4 = 0.75
    urban 2/3, transport 1/1 (R1 rejected and M1 merged are not 办结)
  avg working days received → closed: U1 03-02→03-06 = 4 (3,4,5,6); U2 03-03→03-16 = 9
    (4,5,6, 9-13, 16); U4 02-27→03-01 = 1 (28 Feb 调休; 1 Mar Sunday);
    T1 03-10→03-27 = 13 (11-13, 16-20, 23-27) → 27 / 4 = 6.75
  overdue (due in March, not replied by it, not merged/rejected): U2 (late reply), T3 (late
    reply), X1 (no reply, in progress) = 3; M1 merged does not count
  reworked T1 = 1, sent_back U3 = 1, extended X1 = 1
  repeat complainants: k1 has U1 U2 R1 in March, k2 T1 X1, k3 only U3 (U4 is February's);
    anonymous M1 is no caller = 2
February: received U4 = 1, no valid visit (U4's is 1 Mar local), nothing closed → null rates.
With [report] cutoff_day = 25, "2026-03" is 26 Feb - 25 Mar: received U4 U1 U2 M1 R1 T1 T3 X1
  = 8; N = U1 U2 U4 T1, T1 counted with its 03-18 visit (unsolved, unsatisfied): resolution
  U1 U4 = 0.5, satisfaction (2 + 0.9) / 4 = 0.725, response U1 U2 U4 T1 (03-18: contacted in
  time) = 1.0 (the case columns alone would say 0.75).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from tests.conftest import make_settings
from triage.calendar import WorkCalendar
from triage.models import Case, Department, ReturnVisit, Status
from triage.report.figures import ReportPolicy, month_window, monthly_figures
from web.cli import main
from web.runtime import Runtime

TZ = ZoneInfo("Asia/Shanghai")
POLICY = ReportPolicy(calendar=WorkCalendar(TZ))


def at(text: str) -> datetime:
    """Local Shanghai time "MM-DD HH:MM" of 2026 (or "YYYY-MM-DD HH:MM")."""
    if not text.startswith("20"):
        text = "2026-" + text
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def end_of(day: str) -> datetime:
    return at(f"{day} 23:59:59")


_n = 0


def _case(session: Any, dept: Department | None, **fields: Any) -> Case:
    global _n
    _n += 1
    defaults: dict[str, Any] = {
        "tracking_number": f"MS-2026-{_n:06d}",
        "query_code_hash": "x",
        "channel": "web",
        "external_id": f"fixture-{_n}",
        "kind": "complaint",
        "status": Status.CLOSED,
        "subject": "楼道堵塞",
        "body": "楼道里堆满杂物",
        "department_id": dept.id if dept else None,
    }
    defaults["caller_key"] = fields.pop("caller", "")
    case = Case(**{**defaults, **fields})
    session.add(case)
    session.flush()
    return case


def _visit(
    session: Any,
    case: Case,
    when: datetime,
    solved: bool | None,
    satisfaction: str | None,
    *,
    reached: bool = True,
    citizen_case: Case | None = None,
    contacted: bool | None = None,
) -> None:
    session.add(
        ReturnVisit(
            case_id=case.id,
            at=when,
            reached=reached,
            solved=solved if reached else None,
            satisfaction=satisfaction if reached else None,
            channel="phone",
            valid=reached,
            citizen_case_id=citizen_case.id if citizen_case else None,
            contacted=contacted if reached else None,
        )
    )


def build_march(session: Any) -> dict[str, Case]:
    """The fixture of the module docstring."""
    depts = {d.code: d for d in session.scalars(select(Department))}
    urban, transport = depts["urban"], depts["transport"]
    c: dict[str, Case] = {}
    c["U1"] = _case(
        session, urban, received_at=at("03-02 09:00"), due_at=end_of("03-09"),
        replied_at=at("03-05 10:00"), closed_at=at("03-06 11:00"), caller="k1",
    )  # fmt: skip
    _visit(session, c["U1"], at("03-06 10:00"), True, "satisfied", contacted=True)
    c["U2"] = _case(
        session, urban, channel="phone", received_at=at("03-03 09:00"),
        due_at=end_of("03-10"), replied_at=at("03-12 10:00"), closed_at=at("03-16 10:00"),
        caller="k1",
    )  # fmt: skip
    _visit(session, c["U2"], at("03-13 10:00"), False, "basic", contacted=True)
    c["U3"] = _case(
        session, urban, kind="suggestion", status=Status.ASSIGNED,
        received_at=at("03-31 23:30"), due_at=end_of("04-08"), sent_back_count=1, caller="k3",
    )  # fmt: skip
    c["U4"] = _case(
        session, urban, channel="email", received_at=at("02-27 10:00"), due_at=end_of("03-05"),
        replied_at=at("02-28 10:00"), closed_at=at("03-01 01:00"), caller="k3",
    )  # fmt: skip
    _visit(session, c["U4"], at("03-01 00:30"), True, "satisfied")
    c["T1"] = _case(
        session, transport, channel="phone", received_at=at("03-10 09:00"),
        due_at=end_of("03-27"), replied_at=at("03-25 10:00"), closed_at=at("03-27 10:00"),
        rework_count=1, caller="k2",
    )  # fmt: skip
    _visit(session, c["T1"], at("03-17 10:00"), None, None, reached=False)
    _visit(session, c["T1"], at("03-18 10:00"), False, "unsatisfied", contacted=True)
    _visit(session, c["T1"], at("03-26 10:00"), True, "satisfied", contacted=False)
    c["T2"] = _case(
        session, transport, status=Status.ASSIGNED, received_at=at("04-01 00:10"),
        due_at=end_of("04-09"),
    )  # fmt: skip
    c["T3"] = _case(
        session, transport, status=Status.VISITED, received_at=at("03-05 09:00"),
        due_at=end_of("03-12"), replied_at=at("03-30 10:00"),
    )  # fmt: skip
    _visit(session, c["T3"], at("04-01 00:05"), True, "satisfied")
    c["X1"] = _case(
        session, transport, channel="letter", status=Status.IN_PROGRESS,
        received_at=at("03-11 09:00"), due_at=end_of("03-30"), extension_count=1,
        extended_to=end_of("03-30"), caller="k2",
    )  # fmt: skip
    c["M1"] = _case(
        session, urban, status=Status.MERGED, received_at=at("03-04 09:00"),
        due_at=end_of("03-06"), closed_at=at("03-05 09:00"), merged_into_id=c["U1"].id,
    )  # fmt: skip
    c["R1"] = _case(
        session, None, channel="email", status=Status.REJECTED, received_at=at("03-20 09:00"),
        closed_at=at("03-20 10:00"), caller="k1",
    )  # fmt: skip
    # The merged case's citizen called back on U1: not U1's own visit, not counted.
    _visit(session, c["U1"], at("03-06 10:30"), False, "unsatisfied", citizen_case=c["M1"])
    session.flush()
    return c


@pytest.fixture
def rt(settings: Any) -> Any:
    runtime = Runtime.build(settings)
    yield runtime
    runtime.engine.dispose()


@pytest.fixture
def march(rt: Any) -> Any:
    with rt.sessions() as s, s.begin():
        build_march(s)
    return rt


def _dept(figures: dict[str, Any], code: str) -> dict[str, Any]:
    return next(d for d in figures["departments"] if d["code"] == code)


def test_march_figures_are_the_hand_computed_ones(march: Any) -> None:
    with march.sessions() as s:
        f = monthly_figures(s, "2026-03", POLICY)
    assert f["month"] == "2026-03"
    assert f["received"] == 8
    assert f["by_channel"] == {"email": 1, "letter": 1, "phone": 2, "web": 4}
    assert f["by_kind"] == {"complaint": 7, "suggestion": 1}
    assert f["by_department"] == {"transport": 3, "urban": 4}
    assert f["valid_visits"] == 4
    assert f["response_rate"] == pytest.approx(0.75)
    assert f["resolution_rate"] == pytest.approx(0.75)
    assert f["satisfaction_rate"] == pytest.approx(0.975)
    assert f["composite"] == pytest.approx(0.84)
    assert f["on_time_rate"] == pytest.approx(0.75)
    assert f["avg_handling_working_days"] == pytest.approx(6.75)
    assert (f["overdue"], f["reworked"], f["sent_back"], f["extended"]) == (3, 1, 1, 1)
    assert f["repeat_complainants"] == 2


def test_departments_are_ranked_with_stars_and_an_empty_one_has_null_rates(march: Any) -> None:
    with march.sessions() as s:
        f = monthly_figures(s, "2026-03", POLICY)
    codes = [d["code"] for d in f["departments"]]
    assert codes[:2] == ["transport", "urban"]
    transport, urban, health = _dept(f, "transport"), _dept(f, "urban"), _dept(f, "health")
    assert transport["valid_visits"] == 1 and transport["response_rate"] == 0
    assert transport["composite"] == pytest.approx(0.9)
    assert transport["stars"] == 5 and transport["on_time_rate"] == pytest.approx(1.0)
    assert urban["name"] == "区住房和城乡建设局"
    assert urban["valid_visits"] == 3
    assert urban["response_rate"] == pytest.approx(1.0)
    assert urban["resolution_rate"] == pytest.approx(2 / 3)
    assert urban["satisfaction_rate"] == pytest.approx(2.9 / 3)
    assert urban["composite"] == pytest.approx(0.82)
    assert urban["stars"] == 4 and urban["on_time_rate"] == pytest.approx(2 / 3)
    assert health["valid_visits"] == 0
    assert [health[k] for k in ("response_rate", "composite", "stars", "on_time_rate")] == [
        None
    ] * 4
    assert set(f["departments"][0]) == {
        "code", "name", "valid_visits", "response_rate", "resolution_rate",
        "satisfaction_rate", "composite", "stars", "on_time_rate",
    }  # fmt: skip


def test_the_month_before_has_no_valid_visits_so_its_rates_are_null(march: Any) -> None:
    with march.sessions() as s:
        f = monthly_figures(s, "2026-03", POLICY)
        feb = monthly_figures(s, "2026-02", POLICY)
    previous = f["previous"]
    assert previous["month"] == "2026-02" and previous["received"] == 1
    assert previous["valid_visits"] == 0
    for key in ("response_rate", "resolution_rate", "satisfaction_rate", "composite"):
        assert previous[key] is None and feb[key] is None
    assert previous["on_time_rate"] is None and previous["avg_handling_working_days"] is None
    assert feb["received"] == 1 and feb["by_department"] == {"urban": 1}


def test_an_empty_month_has_zero_counts_and_null_rates(march: Any) -> None:
    with march.sessions() as s:
        f = monthly_figures(s, "2025-06", POLICY)
    assert f["received"] == 0 and f["valid_visits"] == 0 and f["hot_issues"] == []
    assert f["by_channel"] == {} and f["overdue"] == 0
    assert all(f[k] is None for k in ("composite", "on_time_rate", "avg_handling_working_days"))
    assert all(d["stars"] is None for d in f["departments"])


def test_the_cut_off_day_moves_the_month_and_which_visit_counts(march: Any) -> None:
    policy = ReportPolicy(calendar=WorkCalendar(TZ), cutoff_day=25)
    start, end = month_window("2026-03", policy)
    assert (start, end) == (at("02-26 00:00"), at("03-26 00:00"))
    with march.sessions() as s:
        f = monthly_figures(s, "2026-03", policy)
    assert f["received"] == 8
    assert f["by_department"] == {"transport": 3, "urban": 4}
    assert f["valid_visits"] == 4
    assert f["resolution_rate"] == pytest.approx(0.5)
    assert f["satisfaction_rate"] == pytest.approx(0.725)
    assert f["response_rate"] == pytest.approx(1.0)


def test_until_gives_the_month_so_far(march: Any) -> None:
    with march.sessions() as s:
        f = monthly_figures(s, "2026-03", POLICY, until=at("03-10 00:00"))
    # Received before 10 Mar: U1 U2 M1 T3; valid visits: U4 (1 Mar), U1 (6 Mar).
    assert f["received"] == 4
    assert f["valid_visits"] == 2
    # Deadlines passed by then: M1 (merged), U4 and U1 replied in time; U2's is the 10th.
    assert f["overdue"] == 0


def test_the_command_prints_the_figures_as_json(march: Any, config_file: Path) -> None:
    result = CliRunner().invoke(
        main, ["report", "monthly", "--config", str(config_file), "--month", "2026-03", "--json"]
    )
    assert result.exit_code == 0, result.output
    f = json.loads(result.stdout)
    assert f["received"] == 8 and f["composite"] == pytest.approx(0.84)
    keys = {
        "month", "received", "by_channel", "by_kind", "by_department", "valid_visits",
        "response_rate", "resolution_rate", "satisfaction_rate", "composite", "on_time_rate",
        "avg_handling_working_days", "overdue", "reworked", "sent_back", "extended",
        "repeat_complainants", "hot_issues", "departments", "previous",
    }  # fmt: skip
    assert set(f) == keys


def test_a_bad_month_is_refused_with_a_message(march: Any, config_file: Path) -> None:
    result = CliRunner().invoke(
        main, ["report", "monthly", "--config", str(config_file), "--month", "2026-13"]
    )
    assert result.exit_code != 0
    assert "2026-13" in result.output and "YYYY-MM" in result.output


# -- recomputed from `minsheng export cases` --------------------------------------------------


def _local(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def figures_from_export(
    records: list[dict[str, Any]], month: str, calendar: WorkCalendar
) -> dict[str, Any]:
    """The figures from an export's records alone, by the definitions of
    triage/report/figures.py (calendar months; the export's times carry their offset)."""
    year, mon = map(int, month.split("-"))
    start = datetime(year, mon, 1, tzinfo=calendar.timezone)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=calendar.timezone)

    def inside(text: str | None) -> bool:
        moment = _local(text)
        return moment is not None and start <= moment < end

    received = [r for r in records if inside(r["received_at"])]
    by: dict[str, dict[str, int]] = {"channel": {}, "kind": {}, "department": {}}
    for r in received:
        for key in by:
            if r[key] is not None:
                by[key][r[key]] = by[key].get(r[key], 0) + 1
    tallies: dict[str | None, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for r in records:
        counted = [v for v in r["visits"] if v["valid"] and inside(v["at"])]
        if not counted:
            continue
        v = counted[-1]
        t = tallies[r["department"]]
        t[0] += 1
        if v["contacted"] is None:
            t[1] += r["replied_at"] is not None and (
                r["due_at"] is None or _local(r["replied_at"]) <= _local(r["due_at"])
            )
        else:
            t[1] += v["contacted"] is True
        t[2] += v["solved"] is True
        t[3] += v["satisfaction"] == "satisfied"
        t[4] += v["satisfaction"] == "basic"
    closed = [r for r in records if r["status"] == "closed" and inside(r["closed_at"])]

    def rates(t: list[int]) -> dict[str, float | None]:
        if not t[0]:
            return dict.fromkeys(("response_rate", "resolution_rate", "satisfaction_rate"))
        resp, res, sat = t[1] / t[0], t[2] / t[0], (t[3] + 0.9 * t[4]) / t[0]
        return {
            "response_rate": resp,
            "resolution_rate": res,
            "satisfaction_rate": sat,
            "composite": 0.1 * resp + 0.5 * res + 0.4 * sat,
        }

    def on_time(rows: list[dict[str, Any]]) -> float | None:
        if not rows:
            return None
        late = sum(
            1 for r in rows if r["due_at"] is None or _local(r["closed_at"]) > _local(r["due_at"])
        )
        return (len(rows) - late) / len(rows)

    total = [sum(t[i] for t in tallies.values()) for i in range(5)]
    days = [
        calendar.working_days_between(_local(r["received_at"]), _local(r["closed_at"]))
        for r in closed
    ]
    overdue = sum(
        1
        for r in records
        if inside(r["due_at"])
        and r["status"] not in ("merged", "rejected")
        and (
            r["replied_at"] is None
            or _local(r["replied_at"]) > _local(r["due_at"])
            or r["status"] in ("assigned", "in_progress")
        )
    )
    return {
        "received": len(received),
        "by_channel": by["channel"],
        "by_kind": by["kind"],
        "by_department": by["department"],
        "valid_visits": total[0],
        **rates(total),
        "on_time_rate": on_time(closed),
        "avg_handling_working_days": sum(days) / len(days) if days else None,
        "overdue": overdue,
        "reworked": sum(1 for r in received if r["rework_count"] > 0),
        "sent_back": sum(1 for r in received if r["sent_back_count"] > 0),
        "extended": sum(1 for r in received if r["extension_count"] > 0),
        "repeat_complainants": sum(
            1
            for n in Counter(r["caller_key"] for r in received if r["caller_key"]).values()
            if n > 1
        ),
        "departments": {
            code: {
                **rates(t),
                "valid_visits": t[0],
                "on_time_rate": on_time([r for r in closed if r["department"] == code]),
            }
            for code, t in tallies.items()
        },
    }


def test_the_figures_equal_those_recomputed_from_the_export(march: Any, config_file: Path) -> None:
    runner = CliRunner()
    exported = runner.invoke(main, ["export", "cases", "--config", str(config_file)])
    assert exported.exit_code == 0, exported.output
    records = [json.loads(line) for line in exported.stdout.splitlines() if line.strip()]
    assert len(records) == 10
    out = runner.invoke(
        main, ["report", "monthly", "--config", str(config_file), "--month", "2026-03", "--json"]
    )
    assert out.exit_code == 0, out.output
    figures = json.loads(out.stdout)
    again = figures_from_export(records, "2026-03", POLICY.calendar)
    for key, value in again.items():
        if key == "departments":
            continue
        assert figures[key] == (pytest.approx(value) if isinstance(value, float) else value), key
    for code, expected in again["departments"].items():
        got = _dept(figures, code)
        for key, value in expected.items():
            assert got[key] == (pytest.approx(value) if value is not None else None), (code, key)
    # And the hand computation, once more, through the export.
    assert again["composite"] == pytest.approx(0.84) and again["overdue"] == 3
    assert again["departments"]["urban"]["response_rate"] == pytest.approx(1.0)
    assert again["departments"]["transport"]["response_rate"] == 0


def test_months_are_counted_in_local_time_on_this_database(rt: Any) -> None:
    """A case received at 23:59 local on the last day is that month's, one at 00:00 the
    next month's, although both are the same UTC day."""
    with rt.sessions() as s, s.begin():
        urban = s.scalar(select(Department).where(Department.code == "urban"))
        _case(s, urban, status=Status.ASSIGNED, received_at=at("2026-05-31 23:59"))
        _case(s, urban, status=Status.ASSIGNED, received_at=at("2026-06-01 00:00"))
        _case(s, urban, status=Status.ASSIGNED, received_at=at("2026-06-01 07:59"))
    with rt.sessions() as s:
        may = monthly_figures(s, "2026-05", POLICY, with_previous=False)
        june = monthly_figures(s, "2026-06", POLICY, with_previous=False)
    assert (may["received"], june["received"]) == (1, 2)
    assert at("2026-06-01 07:59").astimezone(UTC).day == 31


def test_settings_give_the_policy(tmp_path: Path, db_url: str) -> None:
    s = make_settings(
        tmp_path,
        db_url,
        report={"cutoff_day": 20, "star_thresholds": [0.5, 0.6, 0.7, 0.95]},
    )
    policy = ReportPolicy.from_settings(s)
    assert policy.cutoff_day == 20 and policy.stars(0.94) == 4
    assert policy.timezone == ZoneInfo("Asia/Shanghai")


# -- hot issues ------------------------------------------------------------------------------

NOISE = (
    "明德路126号的夜归人酒吧每天晚上九点开始有乐队现场演出，鼓声和音响一直响到凌晨一两点，"
    "我家就在酒吧楼上，窗户关上也挡不住，孩子每晚都睡不好。"
)


def test_hot_issues_group_similar_complaints_with_places_and_a_masked_example(rt: Any) -> None:
    with rt.sessions() as s, s.begin():
        dept = s.scalar(select(Department).where(Department.code == "commerce"))
        for i, name in enumerate(("王小明", "李红", "张伟")):
            _case(
                s, dept, status=Status.ASSIGNED, received_at=at(f"2026-05-0{i + 2} 21:00"),
                subject="夜归人酒吧噪音扰民", place="明德路126号" if i < 2 else "明德路",
                body=f"我叫{name}，电话1391234567{i}。" + NOISE,
                contact_name=name, contact_phone=f"1391234567{i}",
            )  # fmt: skip
        # The same words, but rejected (not a complaint about the district) or praise.
        _case(
            s, dept, status=Status.REJECTED, received_at=at("2026-05-08 10:00"),
            subject="夜归人酒吧噪音扰民", body=NOISE,
        )  # fmt: skip
        _case(
            s, dept, kind="praise", received_at=at("2026-05-09 10:00"),
            subject="夜归人酒吧噪音扰民", body=NOISE,
        )  # fmt: skip
        for day, (subject, body) in enumerate(
            (
                ("公交站牌损坏", "解放路口的公交站牌被车撞倒了，一直没人修，等车的人找不到站。"),
                ("学校门口乱停车", "实验小学门口每天放学时间家长乱停车，堵得救护车都过不去。"),
            ),
            start=10,
        ):
            _case(s, dept, status=Status.ASSIGNED, received_at=at(f"2026-05-{day} 10:00"),
                  subject=subject, body=body)  # fmt: skip
    with rt.sessions() as s:
        hot = monthly_figures(s, "2026-05", POLICY, with_previous=False)["hot_issues"]
    assert len(hot) == 1
    issue = hot[0]
    assert issue["count"] == 3
    assert issue["places"][0] == "明德路126号"
    assert "夜归人酒吧噪音扰民" in issue["label"] and issue["label"].startswith("明德路126号")
    assert "酒吧" in issue["example"] and len(issue["example"]) <= 120
    for name in ("王小明", "李红", "张伟"):
        assert name not in issue["example"]
    assert "13912345670" not in issue["example"] and "1391234567" not in issue["example"]


def test_a_large_month_is_clustered_from_a_sample(rt: Any) -> None:
    with rt.sessions() as s, s.begin():
        dept = s.scalar(select(Department).where(Department.code == "commerce"))
        for i in range(8):
            _case(s, dept, status=Status.ASSIGNED, received_at=at(f"2026-05-{i + 2:02d} 10:00"),
                  subject="夜归人酒吧噪音扰民", body=NOISE)  # fmt: skip
    policy = ReportPolicy(calendar=WorkCalendar(TZ), hot_issue_sample=4)
    with rt.sessions() as s:
        hot = monthly_figures(s, "2026-05", policy, with_previous=False)["hot_issues"]
    # Every second case of 8 is clustered: 4 found, counted as 4 × 2.
    assert [h["count"] for h in hot] == [8]


ENGLISH_LETTERS = (
    ("The elevator in our building has been broken for three weeks",
     "Dear Sir or Madam, the elevator in Building 5 of Maple Court has been broken for three "
     "weeks. Elderly residents on the upper floors cannot get out. Please have it repaired."),
    ("Restaurant dumps cooking oil into the drain",
     "Dear Sir or Madam, the restaurant downstairs dumps cooking oil into the storm drain "
     "every evening and the whole street smells rotten. Please send an inspector."),
    ("Unpaid salary for three months",
     "Hello, my employer has not paid my salary since February and the manager keeps "
     "promising to pay next week. Where can I file a complaint about unpaid wages?"),
    ("Bus Route 8 skips our stop",
     "Dear Sir or Madam, Bus Route 8 skips the Qingsong Street stop in the morning and we "
     "wait forty minutes in the rain. Please ask the company to keep the timetable."),
    ("Streetlights on the river path are dark",
     "Dear Sir or Madam, the streetlights along the river path have been dark for a month "
     "and two women were robbed there last Friday. Please fix the lights."),
    ("Library hours too short for working people",
     "Dear Sir or Madam, the district library closes at five on weekdays, so people who "
     "work cannot borrow books. Could the opening hours be extended to the evening?"),
)  # fmt: skip


def test_unrelated_english_complaints_are_no_hot_issue_and_english_labels_end_on_a_word(
    rt: Any,
) -> None:
    with rt.sessions() as s, s.begin():
        dept = s.scalar(select(Department).where(Department.code == "commerce"))
        for day, (subject, body) in enumerate(ENGLISH_LETTERS, start=2):
            _case(s, dept, status=Status.ASSIGNED, received_at=at(f"2026-05-{day:02d} 10:00"),
                  subject=subject, body=body)  # fmt: skip
    with rt.sessions() as s:
        assert monthly_figures(s, "2026-05", POLICY, with_previous=False)["hot_issues"] == []

    with rt.sessions() as s, s.begin():
        dept = s.scalar(select(Department).where(Department.code == "commerce"))
        for day, body in enumerate(
            (
                "The lift of Building 5, Maple Court has been out of order for three weeks; "
                "old people on the top floors cannot go out.",
                "Building 5 Maple Court elevator broken again, three weeks now, and the elderly "
                "upstairs cannot leave their flats.",
            ),
            start=10,
        ):
            _case(s, dept, status=Status.ASSIGNED, received_at=at(f"2026-05-{day} 10:00"),
                  subject="The elevator in our building has been broken for three weeks",
                  body=body)  # fmt: skip
    with rt.sessions() as s:
        hot = monthly_figures(s, "2026-05", POLICY, with_previous=False)["hot_issues"]
    assert [h["count"] for h in hot] == [3]
    label = hot[0]["label"]
    # 40 characters at most, cut after a whole word ("…has been br" before).
    assert label == "The elevator in our building has been…"
    assert hot[0]["example"].startswith("The elevator in our building")
    assert len(hot[0]["example"]) <= 120 and not hot[0]["example"].endswith(" br…")


# -- the command sends the email and writes the folder --------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope.content)
        return "250 OK"


def test_the_command_sends_the_report_and_writes_its_folder(
    march: Any, config_file: Path, tmp_path: Path
) -> None:
    from email import message_from_bytes, policy

    from tests.mailserver import free_port

    controller_mod = pytest.importorskip("aiosmtpd.controller")
    port = free_port()
    config_file.write_text(
        config_file.read_text(encoding="utf-8").replace("\nport = 25\n", f"\nport = {port}\n"),
        encoding="utf-8",
    )
    inbox = _Inbox()
    controller = controller_mod.Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        out = tmp_path / "out"
        result = CliRunner().invoke(
            main,
            ["report", "monthly", "--config", str(config_file), "--month", "2026-03", "--json",
             "--send", "--to", "leader@example.gov.cn", "--output", str(out)],
        )  # fmt: skip
    finally:
        controller.stop()
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["received"] == 8 and figures["composite"] == pytest.approx(0.84)
    assert (out / "report.eml").exists() and (out / "report.html").exists()
    assert len(inbox.received) == 1
    message = message_from_bytes(inbox.received[0], policy=policy.default)
    assert "2026" in str(message["Subject"]) and "3月" in str(message["Subject"])
    assert message["To"] == "leader@example.gov.cn"
    text = message.get_body(("plain",)).get_content()
    assert "8" in text


def test_send_without_any_recipient_says_so(march: Any, config_file: Path) -> None:
    result = CliRunner().invoke(
        main, ["report", "monthly", "--config", str(config_file), "--month", "2026-03", "--send"]
    )
    assert result.exit_code != 0
    assert "recipient" in result.output
