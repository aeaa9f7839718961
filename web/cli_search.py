"""`minsheng search`: the search index (triage/search_index.py)."""

from __future__ import annotations

import time

import click

from triage.search_index import rebuild
from web.cli_common import config_option, settings
from web.cli_intake import enrich_all
from web.runtime import Runtime

__all__ = ["search"]


@click.group()
def search() -> None:
    """The full-text search index."""


@search.command("reindex", context_settings={"ignore_unknown_options": False})
@config_option
def reindex() -> None:
    """Rebuild the search index of every case (safe to run again: the result is the same).

    One transaction: searches see the old index until it commits. Then the cases still
    waiting for enrichment (mail registered just before, triage/enrichment.py) get their
    similar-case suggestions.
    """
    rt = Runtime.build(settings())
    started = time.monotonic()
    with rt.engine.begin() as conn:
        cases, rows = rebuild(conn, progress=lambda n: click.echo(f"  {n} cases", err=True))
    click.echo(f"{cases} cases indexed, {rows} index rows, {time.monotonic() - started:.1f} s")
    enriched = enrich_all(rt, rt.intake_policy())
    if enriched:
        click.echo(f"{enriched} new cases enriched (similar cases, search rows)")
