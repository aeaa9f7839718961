"""Shared fixtures: a real database (SQLite or PostgreSQL, by MINSHENG_TEST_DB), settings
pointing at a temporary instance folder, the app, and signed-in clients.

The schema and the staff accounts are built once per test run; each test then gets its own
copy (SQLite: a copy of the file) or an emptied set of case tables (PostgreSQL: TRUNCATE, which
the append-only triggers on the audit log do not block).
"""

from __future__ import annotations

import os
import re
import shutil
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
REQUIRE_ALL = os.environ.get("MINSHENG_REQUIRE_ALL") == "1"
DB_KIND = os.environ.get("MINSHENG_TEST_DB", "sqlite")
PG_URL = os.environ.get("MINSHENG_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CASE_TABLES = (
    "case_messages",
    "incoming_mail",
    "leases",
    "intake_health",
    "case_events",
    "case_replies",
    "return_visits",
    "attachments",
    "duplicate_signatures",
    "outbox",
    "cases",
    "counters",
    "throttle_marks",
    # Not tied to a case, so not emptied by the cascade from "cases".
    "spot_check_draws",
    "figure_snapshots",
)
# Restored before each PostgreSQL test, since a test may change accounts or departments.
DIRECTORY_TABLES = ("departments", "users")
_directory_rows: dict[str, list[dict[str, Any]]] = {}
# The template schema's tables and (table, column, sequence) of its serial columns.
_pg_layout: dict[str, Any] = {}
# Dovecot on loopback for IMAP tests: the mailserver and mailserver_module fixtures.
pytest_plugins = ["tests.mailserver"]


# The fixtures every database a test can use comes from: a test that needs neither runs the
# same on either kind, so the PostgreSQL run (MINSHENG_TEST_DB=postgresql) leaves it to the
# SQLite run rather than running it twice.
DATABASE_FIXTURES = frozenset({"template_db", "empty_url"})


class _TemplateCodeCache(BytecodeCache):
    """Compiled templates kept in memory for every app of the test run: each test builds its
    own app, and compiling the templates again in each (about 0.1 s of CPU for a few pages)
    was a good part of the suite. Jinja keys the code by template and checks the source's
    checksum, so an edited template is compiled afresh."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


Flask.jinja_options = {**Flask.jinja_options, "bytecode_cache": _TemplateCodeCache()}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if DB_KIND != "postgresql":
        return
    keep, same_on_both = [], []
    for item in items:
        uses_database = DATABASE_FIXTURES & set(getattr(item, "fixturenames", ()))
        (keep if uses_database else same_on_both).append(item)
    if same_on_both:
        config.hook.pytest_deselected(items=same_on_both)
        items[:] = keep


def need(condition: object, reason: str) -> None:
    """Skip when a component is missing on a developer's machine; fail in CI."""
    if not condition:
        if REQUIRE_ALL:
            pytest.fail(f"required component missing: {reason}")
        pytest.skip(reason)


def password_of(username: str) -> str:
    return f"pw-{username}-secret"


def base_config() -> dict[str, Any]:
    return tomllib.loads((ROOT / "config.toml").read_text(encoding="utf-8"))


# Failed sign-ins and lookups answer after a fixed time in production (config.toml) so that
# their duration tells nothing; tests would spend most of their time waiting on it. The tests
# of that padding (test_throttle.py) set it back to config.toml's values.
NO_PADDING = {"sign_in": {"failed_answer_seconds": 0.0}, "tracking": {"failed_answer_seconds": 0.0}}
# Staff in the template database get scrypt hashes of this cost rather than werkzeug's
# default (n=32768, about 0.1 s of CPU per check here): every test signs somebody in.
TEST_HASH_METHOD = "scrypt:1024:8:1"


def make_settings(tmp: Path, url: str, **sections: dict[str, Any]) -> Any:
    """Settings from config.toml with `url`, an instance folder under `tmp`, no padding of
    failed answers (NO_PADDING) and `sections` ({"sign_in": {...}}) over all that."""
    from web.settings import settings_from_dict

    raw = base_config()
    raw["database"] = {"url": url}
    raw["app"] = {**raw["app"], "instance_dir": str(tmp / "instance"), "secret_key": "test-key"}
    for name, values in NO_PADDING.items():
        raw[name] = {**raw.get(name, {}), **values}
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return settings_from_dict(raw, base_dir=ROOT, source="test config")


@pytest.fixture(scope="session", autouse=True)
def cheap_dummy_hash() -> Iterator[None]:
    """The hash a sign-in with an unknown username is checked against costs what the
    template's staff hashes cost (TEST_HASH_METHOD), not production's: the point of it is
    the same work either way. The timing test puts production's back."""
    from werkzeug.security import generate_password_hash

    import web.auth

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            web.auth,
            "_DUMMY_HASH",
            generate_password_hash("not-a-real-password", method=TEST_HASH_METHOD),
        )
        yield


def analyze(conn: Any) -> None:
    """Planner statistics for this test's tables only, in the caller's transaction.

    A bare ANALYZE on PostgreSQL takes a lock on every table of the database, the other test
    processes' schemas included, and deadlocked with one of them holding a lock of its own
    (CI: a migration's recount waiting on the tallies' lock this transaction held)."""
    bind = conn.get_bind() if hasattr(conn, "get_bind") else conn
    if bind.dialect.name != "postgresql":
        conn.execute(text("ANALYZE"))
        return
    names = conn.execute(
        text(
            "SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables"
            " WHERE schemaname = current_schema()"
        )
    ).scalar()
    conn.execute(text(f"ANALYZE {names}"))


def _pg_url(schema: str) -> str:
    # Commits not waiting for the disk: the suite commits thousands of times and the server
    # does not crash under it (a test that kills a process kills a client, not PostgreSQL).
    return f"{PG_URL}?options=-csearch_path%3D{schema}%20-csynchronous_commit%3Doff"


_SCHEMA_NAME = re.compile(r"[tu]_([0-9]+)_[0-9a-f]+")


def _new_schema(conn: Any, prefix: str) -> str:
    """Creates and names a schema of this test process: ``<prefix>_<pid>_<random>``."""
    schema = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    conn.execute(f"CREATE SCHEMA {schema}")
    return schema


def _sweep_dead_schemas(conn: Any) -> None:
    """Drops the schemas of test runs whose process has gone (killed before its clean-up):
    left behind they slow the catalogue down and, with it, every later run. Schemas of live
    processes (another suite running beside this one) are kept."""
    names = [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")]
    for name in names:
        found = _SCHEMA_NAME.fullmatch(name)
        if found is None or int(found.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(found.group(1)), 0)
        except ProcessLookupError:
            conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        except PermissionError:
            pass  # alive, another user's


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database with the schema, the demo departments and staff with known passwords."""
    from werkzeug.security import generate_password_hash

    from triage.models import User
    from web.cli import _initialise
    from web.passwords import normalise_password, renew_session_token
    from web.runtime import Runtime

    tmp = tmp_path_factory.mktemp("template")
    schema = None
    if DB_KIND == "postgresql":
        import psycopg

        try:
            with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as conn:
                _sweep_dead_schemas(conn)
                schema = _new_schema(conn, "t")
        except psycopg.OperationalError as e:
            need(False, f"PostgreSQL at {PG_URL} unreachable: {e}")
        url = _pg_url(schema)
    else:
        url = f"sqlite:///{tmp}/template.db"

    def known_password(user: User) -> None:
        user.password_hash = generate_password_hash(
            normalise_password(password_of(user.username)), method=TEST_HASH_METHOD
        )
        renew_session_token(user)

    rt = Runtime.build(make_settings(tmp, url))
    _initialise(rt, new_password=known_password)
    with rt.sessions() as s:
        missing = [u.username for u in s.query(User) if not u.password_hash]
        assert not missing, f"staff without a password: {missing}"
    with rt.engine.connect() as conn:
        for table in DIRECTORY_TABLES:
            _directory_rows[table] = [
                dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {table}"))
            ]
        if schema:
            _read_layout(conn)
    rt.engine.dispose()
    yield url
    if schema:
        import psycopg

        with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def db_url(template_db: str, tmp_path: Path) -> str:
    if template_db.startswith("sqlite"):
        target = tmp_path / "test.db"
        shutil.copy(template_db.split("///", 1)[1], target)
        return f"sqlite:///{target}"
    from sqlalchemy import create_engine

    engine = create_engine(template_db)
    try:
        _reset_by_delete(engine)
    except DBAPIError:  # not a superuser: no session_replication_role
        _reset_by_truncate(engine)
    engine.dispose()
    return template_db


def _reset_by_delete(engine: Any) -> None:
    """Every table of the schema emptied and the template's rows put back, with triggers off
    (the audit log's append-only ones, the foreign keys'): some 0.01 s where TRUNCATE took
    about 1 s a test. Each owned sequence goes on after the highest id put back, or from 1."""
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        for table in _pg_layout["tables"]:
            conn.execute(text(f"DELETE FROM {table}"))
        _put_back(conn, _directory_rows)
        for table, column, sequence in _pg_layout["sequences"]:
            conn.execute(
                text(
                    f"SELECT setval('{sequence}', coalesce(max({column}), 1), "
                    f"max({column}) IS NOT NULL) FROM {table}"
                )
            )


def _read_layout(conn: Any) -> None:
    """Keeps the template schema's tables, its serial columns' sequences and the rows in
    them (the directory, and any a migration put in) for `_reset_by_delete`."""
    tables = conn.scalars(
        text(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename <> 'alembic_version' ORDER BY tablename"
        )
    ).all()
    _pg_layout["tables"] = tables
    _pg_layout["sequences"] = conn.execute(
        text(
            # The name is qualified with its schema: the planner may evaluate the function
            # before the schema filter, on rows of other schemas (information_schema's own).
            "SELECT table_name, column_name, seq FROM ("
            "SELECT table_name, column_name, pg_get_serial_sequence("
            "quote_ident(table_schema) || '.' || quote_ident(table_name), column_name) AS seq "
            "FROM information_schema.columns WHERE table_schema = current_schema()) AS c "
            "WHERE seq IS NOT NULL"
        )
    ).all()
    for table in tables:
        if table not in _directory_rows:
            rows = [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {table}"))]
            if rows:
                _directory_rows[table] = rows


def _put_back(conn: Any, tables: dict[str, list[dict[str, Any]]]) -> None:
    for table, rows in tables.items():
        if not rows:
            continue
        columns = list(rows[0])
        conn.execute(
            text(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join(':' + c for c in columns)})"
            ),
            rows,
        )


def _reset_by_truncate(engine: Any) -> None:
    tables = CASE_TABLES + DIRECTORY_TABLES
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        for table in DIRECTORY_TABLES:
            rows = _directory_rows[table]
            columns = list(rows[0])
            conn.execute(
                text(
                    f"INSERT INTO {table} ({', '.join(columns)}) "
                    f"VALUES ({', '.join(':' + c for c in columns)})"
                ),
                rows,
            )
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
                )
            )


@pytest.fixture
def empty_url(tmp_path: Path) -> Iterator[str]:
    """A database of the kind under test with no schema at all: for upgrading migrations."""
    if DB_KIND != "postgresql":
        yield f"sqlite:///{tmp_path}/upgrade.db"
        return
    import psycopg

    with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as conn:
        schema = _new_schema(conn, "u")
    try:
        yield _pg_url(schema)
    finally:
        with psycopg.connect(PG_URL.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(tmp_path, db_url)


@pytest.fixture
def app(settings: Any) -> Iterator[Any]:
    from web import create_app

    app = create_app(settings, TESTING=True)
    yield app
    app.extensions["minsheng"].engine.dispose()


@pytest.fixture
def runtime(app: Any) -> Any:
    return app.extensions["minsheng"]


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_from(html: str) -> str:
    m = _CSRF.search(html)
    assert m, "page has no CSRF token"
    return m.group(1)


def login(client: Any, username: str) -> Any:
    page = client.get("/login").get_data(as_text=True)
    r = client.post(
        "/login",
        data={
            "csrf_token": csrf_from(page),
            "username": username,
            "password": password_of(username),
        },
    )
    assert r.status_code == 302, f"login of {username} failed: {r.status_code}"
    return client


@pytest.fixture
def login_as(app: Any) -> Any:
    """login_as('supervisor') → a test client signed in as that user."""

    def _login(username: str) -> Any:
        return login(app.test_client(), username)

    return _login
