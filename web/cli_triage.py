"""`minsheng triage …`: train, evaluate and retrain the routing model.

These commands are called by other tools; their options and the JSON of `evaluate` are kept
stable.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from triage.models import Case, Status
from triage.routing import (
    DataError,
    Example,
    RoutingModel,
    evaluate,
    load_examples,
    map_labels,
    should_deploy,
    train_model,
)
from web.cli_common import config_option, settings, transaction
from web.runtime import Runtime

# Cases whose department is settled: a department has them and kept them.
SETTLED = (Status.ASSIGNED, Status.IN_PROGRESS, Status.REPLIED, Status.VISITED, Status.CLOSED)


@click.group()
def triage() -> None:
    """Routing model: train, evaluate, retrain."""


def _progress(stage: str, done: int, total: int) -> None:
    width = 24
    filled = int(width * done / total) if total else width
    sys.stderr.write(f"\r  {stage:<28} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _examples(rt: Runtime, data: tuple[Path, ...], from_cases: bool) -> list[Example]:
    examples: list[Example] = []
    try:
        for path in data:
            examples += map_labels(load_examples(path), rt.settings.label_map)
    except (DataError, OSError) as e:
        raise click.ClickException(str(e)) from e
    if from_cases:
        examples += case_examples(rt)
    if not examples:
        raise click.ClickException("no training data: give --data FILE or --from-cases")
    return examples


def case_examples(rt: Runtime) -> list[Example]:
    """The cases' final departments as labels: supervisors' corrections included."""
    with transaction(rt) as session:
        cases = session.scalars(
            select(Case)
            .where(Case.status.in_(SETTLED), Case.department_id.is_not(None))
            .options(selectinload(Case.department))
        ).all()
        return [Example(c.subject, c.body, c.department.code) for c in cases if c.department]


def _summary(model: RoutingModel) -> str:
    cv = model.metadata.get("cv") or {}
    ar = model.metadata.get("auto_route") or {}
    if not cv:
        return "too few examples per department for cross-validation; it will not auto-route"
    return (
        f"cross-validated macro-F1 {cv.get('macro_f1', 0):.3f}, "
        f"top-3 {cv.get('top3_accuracy', 0):.3f}, auto-route threshold {model.threshold:.3f} "
        f"(coverage {ar.get('coverage') or 0:.2f} at precision {ar.get('precision') or 0:.3f})"
    )


@triage.command()
@config_option
@click.option(
    "--data",
    "data",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON Lines with subject, body, label (repeatable).",
)
@click.option("--from-cases", is_flag=True, help="Also learn from the cases' final departments.")
@click.option(
    "--deploy/--no-deploy",
    default=True,
    show_default=True,
    help="Make the new model the one in use.",
)
def train(data: tuple[Path, ...], from_cases: bool, deploy: bool) -> None:
    """Train a routing model and store it under the model folder."""
    rt = Runtime.build(settings())
    examples = _examples(rt, data, from_cases)
    click.echo(f"training on {len(examples)} examples", err=True)
    model = train_model(
        examples, target_precision=rt.settings.classifier.target_precision, progress=_progress
    )
    path = rt.routers.store.save(model)
    click.echo(f"model {model.version} written to {path}")
    click.echo(f"  {_summary(model)}")
    if deploy:
        rt.routers.store.deploy(model.version)
        click.echo(f"model {model.version} deployed")


@triage.command()
@config_option
@click.option(
    "--data",
    "data",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Extra labelled JSON Lines (repeatable).",
)
def retrain(data: tuple[Path, ...]) -> None:
    """Retrain from the cases' final departments; deploy only if no worse than the current."""
    rt = Runtime.build(settings())
    examples = _examples(rt, data, from_cases=True)
    click.echo(f"retraining on {len(examples)} examples", err=True)
    model = train_model(
        examples, target_precision=rt.settings.classifier.target_precision, progress=_progress
    )
    rt.routers.store.save(model)
    click.echo(f"new model {model.version}: {_summary(model)}")
    current = rt.routers.store.current_version()
    current_meta = None
    if current is not None:
        current_meta = next(
            (m for m in rt.routers.store.versions() if m.get("version") == current), None
        )
    ok, reason = should_deploy(model.metadata, current_meta)
    if ok:
        rt.routers.store.deploy(model.version)
        click.echo(f"deployed {model.version}: {reason}")
    else:
        click.echo(f"kept {current}: {reason}")


@triage.command("evaluate")
@click.option(
    "--train",
    "train_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--test",
    "test_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--target-precision",
    type=float,
    default=None,
    help="Auto-route precision to reach (default: the config's, else 0.97).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@config_option
def evaluate_command(
    train_file: Path, test_file: Path, target_precision: float | None, as_json: bool
) -> None:
    """Train on --train, predict --test, report accuracy, macro-F1, top-3 and auto-routing."""
    if target_precision is None:
        try:
            target_precision = load_target_precision()
        except click.ClickException:
            target_precision = 0.97
    try:
        train_set, test_set = load_examples(train_file), load_examples(test_file)
    except (DataError, OSError) as e:
        raise click.ClickException(str(e)) from e
    report = evaluate(train_set, test_set, target_precision=target_precision)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
        return
    ar = report["auto_route"]
    click.echo(
        f"train {report['n_train']}, test {report['n_test']}: accuracy {report['accuracy']:.3f}, "
        f"macro-F1 {report['macro_f1']:.3f}, top-3 {report['top3_accuracy']:.3f}\n"
        f"auto-route: threshold {ar['threshold']:.3f}, coverage {ar['coverage']:.3f}, "
        f"precision {ar['precision']:.3f}\n"
        f"training {report['train_seconds']:.1f} s, {report['predict_per_second']:.0f} "
        "predictions/s"
    )
    for label, m in sorted(report["per_label"].items()):
        click.echo(
            f"  {label:<16} P {m['precision']:.3f}  R {m['recall']:.3f}  "
            f"F1 {m['f1']:.3f}  n {m['support']}"
        )


def load_target_precision() -> float:
    return settings().classifier.target_precision


@triage.command("hot-issues")
@config_option
@click.option("--days", default=30, show_default=True, help="Cases received in the last N days.")
@click.option("--min-size", default=3, show_default=True, help="Smallest group to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON Lines, one issue a line.")
def hot_issues_command(days: int, min_size: int, as_json: bool) -> None:
    """Groups of recent cases about the same local problem, largest first."""
    from datetime import UTC, datetime, timedelta

    from triage.cases import case_text
    from triage.similarity import hot_issues

    rt = Runtime.build(settings())
    since = datetime.now(UTC) - timedelta(days=days)
    with transaction(rt) as session:
        rows = session.execute(
            select(Case.id, Case.tracking_number, Case.subject, Case.body)
            .where(Case.received_at >= since, Case.status != Status.REJECTED)
            .order_by(Case.id)
        ).all()
    numbers = {r.id: r.tracking_number for r in rows}
    issues = hot_issues([(r.id, case_text(r.subject, r.body)) for r in rows], min_size=min_size)
    for issue in issues:
        cases = [numbers[i] for i in issue.case_ids]
        if as_json:
            record = {
                "size": issue.size,
                "label": issue.label,
                "keywords": list(issue.keywords),
                "cases": cases,
            }
            click.echo(json.dumps(record, ensure_ascii=False))
        else:
            click.echo(f"{issue.size:>4}  {issue.label}  [{' '.join(issue.keywords)}]")
            click.echo(f"      {', '.join(cases)}")
    if not as_json:
        click.echo(
            f"{len(issues)} hot issues among {len(rows)} cases of the last {days} days", err=True
        )
