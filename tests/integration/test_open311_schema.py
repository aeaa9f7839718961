"""A property-based run of the Open311 OpenAPI description against the app (schemathesis):
every operation, with generated valid and invalid input, answers without a server error and
with a response that its own description allows (status, content type, body schema)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from triage.api_keys import create_key

schemathesis = pytest.importorskip("schemathesis")
hypothesis = pytest.importorskip("hypothesis")
checks = pytest.importorskip("schemathesis.checks")

# What the issue asks: no 500, and no answer its own description does not allow. Not
# positive_data_acceptance: the API refuses on purpose some input the schema's formats admit
# (an email at a reserved domain such as user@localhost or a@b.test, as the web form does).
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


@pytest.fixture
def open311_schema(tmp_path: Path, db_url: str) -> Iterator[tuple[Any, str]]:
    from web import create_app

    # Limits high enough that the run tests the answers, not the rate limiter.
    settings = make_settings(
        tmp_path,
        db_url,
        open311={"requests_per_minute": 100000, "anonymous_requests_per_minute": 100000},
    )
    app = create_app(settings, TESTING=True)
    with app.extensions["minsheng"].sessions() as s:
        key = create_key(s, "schemathesis", "test", datetime.now(UTC)).secret
        s.commit()
    yield schemathesis.openapi.from_wsgi("/open311/v2/openapi.json", app), key
    app.extensions["minsheng"].engine.dispose()


def _request_of(case: Any) -> str:
    """What goes to the app for `case`, as a key: the same key is the same request."""
    parts = (case.path_parameters, case.headers, case.cookies, case.query, case.body)
    return repr((case.method, case.path, case.media_type, *(_sorted(p) for p in parts)))


def _sorted(value: Any) -> Any:
    return sorted(value.items(), key=repr) if isinstance(value, dict) else value


def _answers_as_described(operation: Any, key: str) -> None:
    """Twelve requests of `operation`, each GET a different one: Hypothesis draws the same
    request again often (of 25 draws a GET operation, 11 to 19 differed), and the answer
    to a GET asked again is the answer it had, as only POST writes and each operation runs
    on its own; so a repeated GET is no example and another is drawn in its place. A POST
    drawn again is sent again: the second is filed once, a path of its own."""
    asked: set[str] = set()

    @hypothesis.given(case=operation.as_strategy())
    @hypothesis.settings(
        max_examples=12,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        derandomize=True,
        database=None,
    )
    def answers_as_described(case: Any) -> None:
        request = _request_of(case)
        if case.method.upper() == "GET":
            hypothesis.assume(request not in asked)
        asked.add(request)
        case.call_and_validate(headers={"X-Api-Key": key}, checks=CHECKS)

    answers_as_described()


def test_every_operation_answers_as_its_description_says(
    open311_schema: tuple[Any, str],
) -> None:
    schema, key = open311_schema
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    for operation in operations:
        _answers_as_described(operation, key)
