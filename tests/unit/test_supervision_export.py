"""The export's supervision fields on a case in memory: visits with their channel and
validity (no notes), findings, extended_to, and overdue as of the export's time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from triage.export import FIELDS, case_record
from triage.models import Case, CaseFinding, Department, ReturnVisit, Status

BJ = ZoneInfo("Asia/Shanghai")
T = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def test_export_has_visits_findings_extension_and_overdue() -> None:
    for name in ("findings", "overdue", "extended_to", "visits"):
        assert name in FIELDS
    case = Case(
        id=1,
        tracking_number="MS-2026-000001",
        channel="phone",
        external_id="call-1",
        kind="complaint",
        status=Status.IN_PROGRESS,
        subject="噪音扰民",
        body="王小明 13812345678 反映夜间施工噪音",
        contact_name="王小明",
        contact_phone="13812345678",
        contact_email="",
        received_at=T,
        due_at=T + timedelta(days=10),
        extended_to=T + timedelta(days=10),
        department=Department(code="urban", name="城管局"),
        alternatives=[],
        urgent_reasons=[],
        sent_back_count=0,
        rework_count=0,
    )
    case.visits = [
        ReturnVisit(
            at=T + timedelta(days=1),
            reached=False,
            solved=None,
            satisfaction=None,
            channel="sms",
            valid=False,
            note="王小明 未接",
        ),
        ReturnVisit(
            at=T + timedelta(days=2),
            reached=True,
            solved=True,
            satisfaction="basic",
            channel="phone",
            valid=True,
            note="王小明 13812345678 表示基本满意",
        ),
    ]
    finding = CaseFinding(
        rule="extension_pending", combination=1, severity="warning", since=T, detail={}
    )
    record = case_record(case, 3, BJ, masked=True, findings=[finding], now=T + timedelta(days=3))
    assert record["overdue"] is False
    assert record["extended_to"] == "2026-12-03T10:00:00+08:00"
    assert record["visits"] == [
        {
            "at": "2026-11-24T10:00:00+08:00",
            "channel": "sms",
            "reached": False,
            "solved": None,
            "satisfaction": None,
            "valid": False,
            "contacted": None,
        },
        {
            "at": "2026-11-25T10:00:00+08:00",
            "channel": "phone",
            "reached": True,
            "solved": True,
            "satisfaction": "basic",
            "valid": True,
            "contacted": None,
        },
    ]
    assert record["findings"] == [
        {
            "rule": "extension_pending",
            "combination": 1,
            "severity": "warning",
            "since": "2026-11-23T10:00:00+08:00",
        }
    ]
    assert "13812345678" not in str(record) and "王小明" not in str(record)
    late = case_record(case, 3, BJ, masked=True, now=T + timedelta(days=11))
    assert late["overdue"] is True
