"""Benchmark: complaints submitted through the web form with a real routing model.

Trains a model on ../shared/data/teddy2020c/train.jsonl into a temporary instance folder
(nothing is written to the repository), then posts N messages of unlabelled.jsonl through
the public form with Flask's test client on SQLite, and prints how long the suggestion takes
inside each request and how long the whole request takes.

    .venv/bin/python bench/bench_intake.py [--n 300] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import make_settings  # noqa: E402
from triage.routing import ModelStore, load_examples, map_labels, train_model  # noqa: E402
from web import create_app  # noqa: E402
from web.cli import _initialise  # noqa: E402
from web.runtime import Runtime  # noqa: E402


class TimedRouter:
    """Wraps the deployed router and records how long each suggestion takes."""

    def __init__(self, router: Any) -> None:
        self.router, self.version, self.threshold = router, router.version, router.threshold
        self.seconds: list[float] = []

    def suggest(self, subject: str, body: str) -> Any:
        started = time.perf_counter()
        try:
            return self.router.suggest(subject, body)
        finally:
            self.seconds.append(time.perf_counter() - started)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    teddy = args.data_dir / "teddy2020c"
    if not (teddy / "train.jsonl").exists():
        sys.exit(f"no shared data at {teddy}")

    tmp = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    settings = make_settings(tmp, f"sqlite:///{tmp}/bench.db")
    _initialise(Runtime.build(settings), lambda user: None)
    started = time.perf_counter()
    model = train_model(map_labels(load_examples(teddy / "train.jsonl"), settings.label_map))
    store = ModelStore(settings.model_path)
    store.save(model)
    store.deploy(model.version)
    print(f"model {model.version} trained in {time.perf_counter() - started:.1f} s")

    app = create_app(settings, TESTING=True)
    rt = app.extensions["minsheng"]
    timed = TimedRouter(rt.routers.get())
    rt.routers.get = lambda: timed  # type: ignore[method-assign]
    messages = []
    with (teddy / "unlabelled.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            messages.append((row["subject"][:200] or "投诉", row["body"][:5000]))
            if len(messages) >= args.n:
                break

    client = app.test_client()
    request_seconds = []
    statuses: dict[str, int] = {}
    for subject, body in messages:
        page = client.get("/complain").get_data(as_text=True)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
        form_token = re.search(r'name="token"[^>]*value="([^"]+)"', page).group(1)
        started = time.perf_counter()
        r = client.post(
            "/complain",
            data={
                "csrf_token": token,
                "token": form_token,
                "kind": "complaint",
                "subject": subject,
                "body": body,
            },
        )
        request_seconds.append(time.perf_counter() - started)
        statuses[str(r.status_code)] = statuses.get(str(r.status_code), 0) + 1

    ms = [s * 1000 for s in timed.seconds[1:]]  # the first call warms the tokenizer up
    total = [s * 1000 for s in request_seconds[1:]]
    print(f"{len(messages)} complaints posted through /complain on SQLite: {statuses}")
    print(
        f"suggestion inside the request: median {statistics.median(ms):.1f} ms, "
        f"p95 {pct(ms, 95):.1f} ms, max {max(ms):.1f} ms"
    )
    print(
        f"whole POST request: median {statistics.median(total):.1f} ms, p95 {pct(total, 95):.1f} ms"
    )
    with rt.sessions() as s:
        from sqlalchemy import func, select

        from triage.models import Case, Status

        counts = dict(s.execute(select(Case.status, func.count()).group_by(Case.status)).all())
    routed = counts.get(Status.ASSIGNED, 0)
    print(
        f"auto-routed {routed} of {sum(counts.values())} "
        f"({routed / max(1, sum(counts.values())):.0%}) at threshold {timed.threshold:.3f}"
    )


if __name__ == "__main__":
    main()
