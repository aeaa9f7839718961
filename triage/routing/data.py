"""Labelled examples: reading them from JSON Lines, mapping labels to departments, a hash."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Example:
    """One labelled complaint."""

    subject: str
    body: str
    label: str


class DataError(ValueError):
    """Training data that cannot be used; the message says where and why."""


def load_examples(path: str | Path) -> list[Example]:
    """Read JSON Lines with ``subject``, ``body`` and ``label``; blank lines are skipped."""
    path = Path(path)
    examples: list[Example] = []
    with path.open(encoding="utf-8-sig") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            subject = row.get("subject", "")
            body = row.get("body")
            label = row.get("label")
            if subject is None:
                subject = ""
            for name, value in (("subject", subject), ("body", body), ("label", label)):
                if not isinstance(value, str):
                    shown = "missing" if value is None else f"a {type(value).__name__}"
                    raise DataError(f"{where}: '{name}' must be a string, it is {shown}")
            if not (subject.strip() or body.strip()):
                raise DataError(f"{where}: subject and body are both empty")
            if not label.strip():
                raise DataError(f"{where}: 'label' is empty")
            examples.append(Example(subject, body, label.strip()))
    if not examples:
        raise DataError(f"{path}: no examples")
    return examples


def map_labels(examples: Iterable[Example], mapping: dict[str, str]) -> list[Example]:
    """Replace each label by the department code it maps to; unmapped labels are an error."""
    examples = list(examples)
    unknown = Counter(e.label for e in examples if e.label not in mapping)
    if unknown:
        listed = ", ".join(f"'{label}' ({n} rows)" for label, n in sorted(unknown.items()))
        raise DataError(f"labels with no department in the mapping: {listed}")
    return [Example(e.subject, e.body, mapping[e.label]) for e in examples]


def data_fingerprint(examples: Sequence[Example]) -> str:
    """sha256 over the examples as canonical JSON lines: the same data gives the same hash."""
    digest = hashlib.sha256()
    for e in examples:
        line = json.dumps([e.subject, e.body, e.label], ensure_ascii=False, separators=(",", ":"))
        digest.update(line.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()
