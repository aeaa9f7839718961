"""What every `minsheng` command shares: the `--config` option, the settings, one transaction.

Its own module so that the command groups (web/cli.py, web/cli_triage.py) import it and not
each other; web/cli.py re-exports these names for code that imports them from there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.orm import Session

from web.runtime import Runtime
from web.settings import ConfigError, Settings, load_settings

__all__ = ["config_option", "settings", "transaction"]


def _remember_config(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        os.environ["MINSHENG_CONFIG"] = value


config_option = click.option(
    "--config",
    type=click.Path(dir_okay=False),
    expose_value=False,
    is_eager=True,
    callback=_remember_config,
    help="Config file (default ./config.toml or $MINSHENG_CONFIG).",
)
"""`--config PATH` for a command: sets $MINSHENG_CONFIG, which `settings()` reads."""


def settings() -> Settings:
    """The validated settings; a wrong or unknown key stops the command with its message."""
    try:
        return load_settings()
    except ConfigError as e:
        raise click.ClickException(str(e)) from e


@contextmanager
def transaction(rt: Runtime) -> Iterator[Session]:
    """One session for the command, committed once if the command succeeds."""
    session = rt.sessions()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
