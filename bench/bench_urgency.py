"""Benchmark: precision and recall of the urgent-hazard rules on a hand-labelled set.

Reads bench/data/urgency_labelled.jsonl (one complaint a line: ``text``, ``urgent``, ``kind``;
written for this benchmark, not taken from any data set) and prints, for the current rules
and beside them their floors measured in the same run:

- a keyword baseline: urgent when any hazard word appears anywhere, negated or not;
- the rules before issue #6 (negation = a negation word within eight characters), read from
  git history at ``--old-commit`` when git and that commit are at hand.

For each: precision, recall, F1, the false positives and negatives, a per-kind breakdown for
the current rules, and the time per message.

    .venv/bin/python bench/bench_urgency.py [--data bench/data/urgency_labelled.jsonl]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from triage.urgency import detect_hazard  # noqa: E402

OLD_COMMIT = "0280a4a"
KEYWORDS = [
    "泄漏",
    "泄露",
    "漏气",
    "煤气",
    "燃气",
    "天然气",
    "液化气",
    "危险品",
    "危化品",
    "易燃易爆",
    "隐患",
    "消防通道",
    "安全出口",
    "充电",
    "电线",
    "漏电",
    "触电",
    "坍塌",
    "塌陷",
    "塌",
    "开裂",
    "裂缝",
    "危房",
    "爆炸",
    "着火",
    "起火",
    "中毒",
    "gas",
    "leak",
    "smell",
    "fire",
    "exit",
    "blocked",
    "wire",
    "spark",
    "collapse",
    "crack",
    "explosion",
    "chemical",
    "shock",
]

Detector = Callable[[str], bool]


@dataclass(frozen=True)
class Example:
    text: str
    urgent: bool
    kind: str


@dataclass(frozen=True)
class Result:
    name: str
    precision: float
    recall: float
    false_pos: tuple[Example, ...]
    false_neg: tuple[Example, ...]
    ms_per_message: float

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def load(path: Path) -> list[Example]:
    """The labelled set; a line without ``text`` or ``urgent`` stops the run with its number."""
    examples = []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        try:
            examples.append(Example(row["text"], bool(row["urgent"]), row.get("kind", "")))
        except KeyError as missing:
            sys.exit(f"{path}:{number}: no {missing}")
    return examples


def measure(name: str, detect: Detector, examples: list[Example], repeat: int) -> Result:
    started = time.perf_counter()
    for _ in range(repeat):
        predicted = [detect(e.text) for e in examples]
    ms = (time.perf_counter() - started) * 1000 / (repeat * len(examples))
    pairs = list(zip(examples, predicted, strict=True))
    tp = sum(1 for e, p in pairs if p and e.urgent)
    fp = tuple(e for e, p in pairs if p and not e.urgent)
    fn = tuple(e for e, p in pairs if not p and e.urgent)
    precision = tp / (tp + len(fp)) if tp + len(fp) else 0.0
    recall = tp / (tp + len(fn)) if tp + len(fn) else 0.0
    return Result(name, precision, recall, fp, fn, ms)


def old_rules(commit: str) -> Detector | None:
    """The rules as they were at ``commit``, or None when git or the commit is missing."""
    try:
        source = subprocess.run(
            ["git", "show", f"{commit}:triage/urgency.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("old_urgency")
    sys.modules[module.__name__] = module  # dataclasses look their module up by name
    exec(compile(source, f"{commit}:triage/urgency.py", "exec"), module.__dict__)
    return lambda text: bool(module.detect_hazard("", text).urgent)


def keyword_baseline(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in KEYWORDS)


def report(result: Result, show_errors: bool) -> None:
    print(
        f"{result.name:<28} precision {result.precision:.3f}  recall {result.recall:.3f}  "
        f"F1 {result.f1:.3f}  FP {len(result.false_pos):>3}  FN {len(result.false_neg):>3}  "
        f"{result.ms_per_message:.3f} ms/message"
    )
    if show_errors:
        for label, errors in (
            ("false positive", result.false_pos),
            ("false negative", result.false_neg),
        ):
            for e in errors:
                print(f"    {label} [{e.kind}] {e.text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=ROOT / "bench" / "data" / "urgency_labelled.jsonl"
    )
    parser.add_argument("--old-commit", default=OLD_COMMIT)
    parser.add_argument("--repeat", type=int, default=20, help="passes over the set for timing")
    parser.add_argument("--all-errors", action="store_true", help="list the floors' errors too")
    args = parser.parse_args()
    examples = load(args.data)
    urgent = sum(e.urgent for e in examples)
    print(f"{len(examples)} labelled complaints, {urgent} urgent, {len(examples) - urgent} not")

    current = measure(
        "rules (triage.urgency)", lambda t: detect_hazard("", t).urgent, examples, args.repeat
    )
    floors = [measure("keyword baseline", keyword_baseline, examples, args.repeat)]
    old = old_rules(args.old_commit)
    if old is None:
        print(f"(old rules at {args.old_commit} not available: git or the commit is missing)")
    else:
        floors.append(measure(f"old rules ({args.old_commit})", old, examples, args.repeat))

    report(current, show_errors=True)
    for floor in floors:
        report(floor, show_errors=args.all_errors)

    print("per kind (current rules): correct / total")
    kinds = sorted({e.kind for e in examples})
    wrong = {id(e) for e in current.false_pos + current.false_neg}
    for kind in kinds:
        members = [e for e in examples if e.kind == kind]
        right = sum(1 for e in members if id(e) not in wrong)
        print(f"    {kind:<22} {right:>3} / {len(members)}")


if __name__ == "__main__":
    main()
