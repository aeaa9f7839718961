"""The response rate's question (响应率: did the department contact the citizen in time?),
asked on the supervisor's return-visit form and on the citizen's satisfaction page, on both
databases: the answer is stored on the visit, exported in ``visits[].contacted`` and counted
by the figures instead of the reply-by-deadline proxy."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.conftest import csrf_from, make_settings
from tests.integration.helpers import post_form
from tests.integration.test_satisfaction import case_of, replied_case
from triage.report.figures import ReportPolicy, month_of, monthly_figures
from web.cli import main


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(
        tmp_path,
        db_url,
        mail={"sender": "xiaonengban@example.gov.cn"},
        classifier={"auto_route": False, "model_dir": str(tmp_path / "instance" / "models")},
    )


def test_the_supervisor_records_not_contacted_in_time_and_the_figures_count_it(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, _path = replied_case(client, login_as, runtime)
    supervisor = login_as("supervisor")
    page = supervisor.get(f"/board/cases/{number}").get_data(as_text=True)
    assert "承办单位是否及时联系群众" in page and "未及时联系" in page
    r = post_form(
        supervisor,
        f"/board/cases/{number}",
        f"/board/cases/{number}/visit",
        {
            "visit-reached": "yes",
            "visit-solved": "yes",
            "visit-satisfaction": "satisfied",
            "visit-contacted": "no",
        },
    )
    assert r.status_code == 302
    case = case_of(runtime, number)
    assert [v.contacted for v in case.visits] == [False]
    assert case.events[-1].detail["contacted"] is False
    # Replied at once, so the old proxy would say "in time": the citizen's answer wins.
    now = datetime.now(UTC)
    policy = ReportPolicy.from_settings(runtime.settings)
    with runtime.sessions() as s:
        f = monthly_figures(s, month_of(now, policy), policy, with_previous=False)
    assert f["valid_visits"] == 1 and f["response_rate"] == 0
    assert f["resolution_rate"] == 1


def test_the_citizen_answers_contacted_in_time_on_the_satisfaction_page(
    client: Any, login_as: Any, runtime: Any, config_file: Path
) -> None:
    number, path = replied_case(client, login_as, runtime)
    citizen = client.application.test_client()
    html = citizen.get(path).get_data(as_text=True)
    assert "承办单位是否及时与您联系？" in html
    r = citizen.post(
        path,
        data={
            "csrf_token": csrf_from(html),
            "solved": "yes",
            "satisfaction": "basic",
            "contacted": "yes",
        },
    )
    assert r.status_code == 200
    assert [v.contacted for v in case_of(runtime, number).visits] == [True]
    out = CliRunner().invoke(main, ["export", "cases", "--config", str(config_file)])
    assert out.exit_code == 0, out.output
    records = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    (record,) = [r for r in records if r["tracking_number"] == number]
    assert [v["contacted"] for v in record["visits"]] == [True]


def test_a_visit_without_the_answer_falls_back_to_the_reply_deadline(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, _path = replied_case(client, login_as, runtime)
    r = post_form(
        login_as("supervisor"),
        f"/board/cases/{number}",
        f"/board/cases/{number}/visit",
        {"visit-reached": "yes", "visit-solved": "no", "visit-satisfaction": "basic"},
    )
    assert r.status_code == 302
    assert [v.contacted for v in case_of(runtime, number).visits] == [None]
    policy = ReportPolicy.from_settings(runtime.settings)
    with runtime.sessions() as s:
        f = monthly_figures(s, month_of(datetime.now(UTC), policy), policy, with_previous=False)
    # Replied well before its deadline: counted as contacted in time.
    assert f["valid_visits"] == 1 and f["response_rate"] == 1
