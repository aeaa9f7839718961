"""The `minsheng` command: set up, load the demo, serve, export, manage accounts.

Every command takes `--config PATH` (default ./config.toml, or env MINSHENG_CONFIG). Each
command opens one transaction and commits it once at the end.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from flask.cli import FlaskGroup
from sqlalchemy import select

from triage.directory import DepartmentSpec, UserSpec, sync_departments, sync_users
from triage.export import iter_records, write_csv, write_jsonl
from triage.models import Role, User
from web.cli_common import config_option, settings, transaction
from web.cli_triage import triage as triage_commands
from web.db import upgrade
from web.runtime import Runtime
from web.settings import ConfigError

# config_option, settings and transaction live in web.cli_common, so that the command groups
# need not import each other; they stay importable from here for code that imports them so.


def _create_app() -> Any:
    from web import create_app

    try:
        return create_app()
    except ConfigError as e:
        raise click.ClickException(str(e)) from e


class MinshengGroup(FlaskGroup):
    """Flask's CLI group without its --app/--env-file/--debug options: the config decides."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.params = [p for p in self.params if p.name not in ("env_file", "app", "debug")]


@click.group(
    cls=MinshengGroup,
    create_app=_create_app,
    add_default_commands=False,
    add_version_option=False,
    load_dotenv=False,
)
@config_option
def main() -> None:
    """Minsheng (民声): public-supervision feedback for local government."""


def _hash(password: str) -> str:
    from web.auth import hash_password

    return hash_password(password)


def _initial_password(user: User) -> str:
    from web.passwords import set_generated_password

    password = set_generated_password(user)
    # Printed to whoever ran the command: the user chooses their own at the first sign-in,
    # as after an administrator set one in the browser.
    user.must_change_password = True
    return f"initial password {password} (to be changed at the first sign-in)"


def _initialise(
    rt: Runtime, new_password: Callable[[User], str | None] = _initial_password
) -> list[str]:
    """Schema up to date, departments and users as configured; `new_password` sets the
    password of each new user and returns what to tell the admin."""
    upgrade(rt.engine)
    s = rt.settings

    with transaction(rt) as session:
        changes = sync_departments(
            session,
            [DepartmentSpec(d.code, d.name, d.name_en, d.email) for d in s.departments],
        )
        changes += sync_users(
            session,
            [UserSpec(u.username, u.role, u.name, u.department, u.head, u.email) for u in s.users],
            new_password,
        )
        from triage.callers import backfill_caller_keys

        # Cases from before migration 0010, or whose keys migration 0026 cleared.
        backfill_caller_keys(session, rt.secret, area_code=rt.settings.app.area_code)
        from triage.call_keys import rekey_for_area_code

        # `[app] area_code` set or changed since the keys were made (local numbers' keys).
        rekey_for_area_code(session, rt.secret, rt.settings.app.area_code)
    return changes


@main.command(with_appcontext=False)
@config_option
def init() -> None:
    """Create or upgrade the database schema and load departments and users from the config."""
    rt = Runtime.build(settings())
    changes = _initialise(rt)
    click.echo(f"database ready: {rt.engine.url.render_as_string(hide_password=True)}")
    for line in changes:
        click.echo(f"  {line}")
    if not changes:
        click.echo("  departments and users already match the config")


@main.command(with_appcontext=False)
@config_option
@click.option("--no-model", is_flag=True, help="Do not train the demo routing model.")
@click.option("--volume", type=click.IntRange(min=0), default=0, help="Also add N synthetic cases.")
@click.option("--months", type=click.IntRange(min=1), default=12, show_default=True)
def demo(no_model: bool, volume: int, months: int) -> None:
    """Load the demo: demo passwords, a model trained on demo messages, demo cases; with
    --volume N, N synthetic cases over the last --months months (web/demo_volume.py)."""
    from web.auth import verify_password
    from web.demo import DEMO_PASSWORD, load_demo
    from web.passwords import renew_session_token

    rt = Runtime.build(settings())
    # One hash for everybody: they all get the same demo password anyway.
    demo_hash = _hash(DEMO_PASSWORD)
    _initialise(rt, lambda user: None)
    if not no_model and rt.routers.store.current_version() is None:
        version = _train_demo_model(rt)
        click.echo(f"demo routing model {version} trained and deployed")
    with transaction(rt) as session:
        users = session.scalars(select(User).order_by(User.id)).all()
        for user in users:
            if verify_password(user, DEMO_PASSWORD):
                # Already the demo's: who is signed in stays so (adding a --volume, say).
                continue
            user.password_hash = demo_hash
            # A reloaded demo signs out whoever was signed in with the old passwords.
            renew_session_token(user)
        created = load_demo(session, rt.intake_policy())
        logins = [(u.username, u.role, u.department.name if u.department else "") for u in users]
    click.echo(f"{created} demo cases loaded")
    click.echo(f"demo logins (password for all: {DEMO_PASSWORD}):")
    for username, role, dept in logins:
        click.echo(f"  {username:<14} {role:<11} {dept}")
    if volume:
        from triage import tallies
        from web.demo_volume import add_volume

        with rt.engine.begin() as conn:
            added = add_volume(
                conn,
                volume,
                months=months,
                prefix=rt.settings.app.tracking_prefix,
                label_map=rt.settings.label_map,
                secret=rt.secret,
                progress=lambda n: click.echo(f"  {n} synthetic cases", err=True),
                model_version=rt.routers.store.current_version() or "",
            )
        tallies.shrink(rt.engine)
        click.echo(f"{added} synthetic cases added over {months} months")


def _train_demo_model(rt: Runtime) -> str:
    from triage.routing import load_examples, map_labels, train_model
    from web.demo import DEMO_TRAINING

    examples = map_labels(load_examples(DEMO_TRAINING), rt.settings.label_map)
    model = train_model(examples, target_precision=rt.settings.classifier.target_precision, folds=3)
    rt.routers.store.save(model)
    rt.routers.store.deploy(model.version)
    return model.version


@main.command(with_appcontext=False)
@config_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
def serve(host: str, port: int) -> None:
    """Serve Minsheng with the built-in threaded server (use gunicorn in production)."""
    from werkzeug.serving import run_simple

    app = _create_app()
    # Files left by a crash of the last run: old enough that no request can still own them.
    sweep_attachments(app.extensions["minsheng"], grace_seconds=3600)
    click.echo(f"Minsheng on http://{host}:{port}/  (staff sign in at /login)")
    run_simple(host, port, app, threaded=True, use_reloader=False)


@main.group()
def export() -> None:
    """Export data."""


@export.command("cases", with_appcontext=False)
@config_option
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: standard output).",
)
@click.option(
    "--unmasked", is_flag=True, help="Include citizens' names, phones and emails unmasked."
)
def export_cases(fmt: str, output: Path | None, unmasked: bool) -> None:
    """Every case with its routing, status, deadlines and event count."""
    rt = Runtime.build(settings())
    tz = rt.settings.work_calendar().timezone
    writer = write_jsonl if fmt == "jsonl" else write_csv
    with transaction(rt) as session:
        records = iter_records(session, tz, masked=not unmasked)
        if output is None:
            n = writer(records, sys.stdout)
        else:
            with output.open("w", encoding="utf-8", newline="") as fh:
                n = writer(records, fh)
    click.echo(f"{n} cases exported", err=True)


@main.group()
def user() -> None:
    """Manage staff accounts."""


@user.command("add", with_appcontext=False)
@config_option
@click.argument("username")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--department", help="Department code (handlers only, and required for them).")
@click.option("--head", is_flag=True, help="The department's head (handlers only).")
@click.option("--name", default="")
def user_add(username: str, role: str, department: str | None, head: bool, name: str) -> None:
    """Add a staff account; prints its initial password once. The username is stored in its
    normal form (lower-case, half-width) and must differ from every other one ignoring case.
    Only a handler has a department (and may be its head): the rule of the admin pages."""
    from triage.directory import BadUsername, find_user, normalise_username
    from triage.models import Department
    from triage.staff import StaffChangeRefused, check_role_fits
    from web.passwords import set_generated_password

    try:
        username = normalise_username(username)
    except BadUsername as e:
        raise click.ClickException(str(e)) from e
    rt = Runtime.build(settings())
    with transaction(rt) as session:
        existing = find_user(session, username)
        if existing is not None:
            raise click.ClickException(
                f"user {existing.username} exists already (usernames ignore case)"
            )
        dept = None
        if department:
            dept = session.scalar(select(Department).where(Department.code == department))
            if dept is None:
                raise click.ClickException(f"unknown department {department!r}")
        try:
            check_role_fits(role, dept is not None, head)
        except StaffChangeRefused as e:
            raise click.ClickException(str(e)) from e
        account = User(username=username, role=role, department=dept, head=head, display_name=name)
        # In the session first: the policy reads the departments' names through it.
        session.add(account)
        password = set_generated_password(account)
        account.must_change_password = True
    click.echo(
        f"user {username} added (they choose their own password at the first sign-in);"
        f" initial password: {password}"
    )


@user.command("set-password", with_appcontext=False)
@config_option
@click.argument("username")
@click.password_option()
@click.option(
    "--temporary",
    is_flag=True,
    help="The user must choose their own password at the next sign-in (a password set for "
    "someone else to hand over).",
)
def user_set_password(username: str, password: str, temporary: bool) -> None:
    """Set a staff account's password (the policy of the web form applies); signs the
    account out everywhere. The operator's or the user's own act at the server (the way in
    when no administrator can sign in): the password stays as set unless `--temporary`,
    unlike one an administrator sets in the browser, which the user must replace."""
    from triage.directory import find_user
    from web.passwords import WeakPassword, set_password

    rt = Runtime.build(settings())
    with transaction(rt) as session:
        account = find_user(session, username)
        if account is None:
            raise click.ClickException(f"no user {username}")
        username = account.username
        try:
            set_password(account, password)
        except WeakPassword as e:
            raise click.ClickException(f"password not accepted: {e}") from e
        account.must_change_password = temporary
    click.echo(
        f"password of {username} changed; its sessions are signed out"
        + ("; the user chooses their own at the next sign-in" if temporary else "")
    )


@main.group()
def attachments() -> None:
    """Attachment files on disk."""


def sweep_attachments(rt: Runtime, grace_seconds: float, dry_run: bool = False) -> Any:
    """Removes attachment files that no case names (left by a crash between writing a file
    and committing its case); see `AttachmentStore.sweep`."""
    from triage.models import Attachment

    def known(hashes: Any) -> set[str]:
        with rt.sessions() as session:
            wanted = list(hashes)
            return set(
                session.scalars(select(Attachment.sha256).where(Attachment.sha256.in_(wanted)))
            )

    return rt.attachments.sweep(known, grace_seconds=grace_seconds, dry_run=dry_run)


@attachments.command("sweep", with_appcontext=False)
@config_option
@click.option(
    "--grace-minutes",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Leave files younger than this: they may belong to a submission still being saved.",
)
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON object.")
def attachments_sweep(grace_minutes: float, dry_run: bool, as_json: bool) -> None:
    """Remove attachment files that no case names (after a crash); safe to run any time."""
    import json

    rt = Runtime.build(settings())
    result = sweep_attachments(rt, grace_minutes * 60, dry_run)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "kept": result.kept,
                    "orphans": len(result.orphans),
                    "partial": result.partial,
                    "dry_run": dry_run,
                }
            )
        )
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{result.kept} files kept; {verb} {len(result.orphans)} without a case "
        f"and {result.partial} unfinished writes"
    )


@main.command("tallies", with_appcontext=False)
@config_option
@click.option(
    "--recount",
    is_flag=True,
    help="Rebuild the tallies from the cases (and their triggers if missing); writers wait.",
)
def tallies_command(recount: bool) -> None:
    """Check the case tallies (the board's counts per filter value, the dashboard's open,
    at-risk and overdue) against the cases; exit status 1 when they differ."""
    from triage import tallies

    rt = Runtime.build(settings())
    with transaction(rt) as session:
        if recount:
            if not tallies.tallied(session):
                tallies.create_triggers(session.connection())
            n = tallies.recount(session)
            click.echo(f"recounted {n} cases")
            return
        if not tallies.tallied(session):
            raise click.ClickException("the tallies' triggers are missing: run with --recount")
        wrong = tallies.differences(session)
    if wrong:
        for key, (tallied, counted) in sorted(wrong.items(), key=repr)[:20]:
            click.echo(
                f"{dict(zip(tallies.DIMENSIONS, key, strict=True))}: {tallied} tallied, "
                f"{counted} counted"
            )
        raise click.ClickException(
            f"the tallies differ from the cases in {len(wrong)} combinations: run with --recount"
        )
    click.echo("the tallies agree with the cases")


main.add_command(triage_commands)


def _register_extensions() -> None:
    """Command groups of their own modules (web/cli_*.py); they import web.cli_common,
    never this module, so the import here closes no circle."""
    from web.cli_api_keys import api_key
    from web.cli_intake import intake
    from web.cli_outbox import outbox
    from web.cli_report import report
    from web.cli_search import search
    from web.cli_supervise import supervise

    main.add_command(api_key)
    from web.cli_calls import calls

    intake.add_command(calls)
    main.add_command(intake)
    main.add_command(outbox)
    main.add_command(report)
    main.add_command(search)
    main.add_command(supervise)


_register_extensions()
