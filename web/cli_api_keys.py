"""`minsheng api-key add NAME | list | revoke KEY`: the keys of the Open311 interface.

The same as the administrators' page (web/open311/admin.py); the domain is
triage/api_keys.py. `add` prints the key once: only its hash is stored. `--json` output is
kept stable for other tools: add → {"id", "name", "prefix", "key"}; list → a list of
{"id", "name", "prefix", "created_at", "created_by", "last_used_at", "revoked_at"}.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import click

from triage.api_keys import ApiKey, ApiKeyError, create_key, find_key, list_keys, revoke_key
from web.cli_common import config_option, settings, transaction
from web.runtime import Runtime


@click.group("api-key")
def api_key() -> None:
    """Keys of the Open311 GeoReport v2 interface: add, list, revoke."""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


@api_key.command("add")
@config_option
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the key as one JSON object.")
def add(name: str, as_json: bool) -> None:
    """Make a key for NAME (the system or organisation that gets it); prints it once."""
    rt = Runtime.build(settings())
    try:
        with transaction(rt) as s:
            made = create_key(s, name, "cli", datetime.now(UTC))
            row = {"id": made.row.id, "name": made.row.name, "prefix": made.row.prefix}
    except ApiKeyError as e:
        raise click.ClickException(str(e)) from e
    finally:
        rt.engine.dispose()
    if as_json:
        click.echo(json.dumps({**row, "key": made.secret}, ensure_ascii=False))
        return
    click.echo(f"key {row['id']} for {row['name']}: {made.secret}")
    click.echo("Hand it over safely: it is not shown again (only its hash is stored).")


@api_key.command("list")
@config_option
@click.option("--active", is_flag=True, help="Leave out revoked keys.")
@click.option("--json", "as_json", is_flag=True, help="Print the keys as a JSON list.")
def list_(active: bool, as_json: bool) -> None:
    """The keys, newest first: id, prefix, name, made, last used, revoked."""
    rt = Runtime.build(settings())
    try:
        with transaction(rt) as s:
            keys = [_row(k) for k in list_keys(s, include_revoked=not active)]
    finally:
        rt.engine.dispose()
    if as_json:
        click.echo(json.dumps(keys, ensure_ascii=False))
        return
    if not keys:
        click.echo("no keys")
    for k in keys:
        state = f"revoked {k['revoked_at']}" if k["revoked_at"] else "active"
        used = k["last_used_at"] or "never used"
        click.echo(
            f"{k['id']:>4}  {k['prefix']}…  {k['name']}  made {k['created_at']} by "
            f"{k['created_by']}  {used}  {state}"
        )


def _row(k: ApiKey) -> dict[str, object]:
    return {
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "created_at": _iso(k.created_at),
        "created_by": k.created_by,
        "last_used_at": _iso(k.last_used_at),
        "revoked_at": _iso(k.revoked_at),
    }


@api_key.command("revoke")
@config_option
@click.argument("key")
def revoke(key: str) -> None:
    """Revoke KEY: its id, its prefix (ms_…) or its name. Requests with it are refused."""
    rt = Runtime.build(settings())
    try:
        with transaction(rt) as s:
            row = find_key(s, key)
            changed = revoke_key(s, row, datetime.now(UTC))
            label = f"key {row.id} ({row.prefix}…, {row.name})"
    except ApiKeyError as e:
        raise click.ClickException(str(e)) from e
    finally:
        rt.engine.dispose()
    click.echo(f"{label} revoked" if changed else f"{label} was revoked already")
