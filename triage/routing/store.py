"""A versioned store of trained models on disk, and whether a new one should replace the old.

The model is stored with joblib (pickle): the pipeline refers to ``ComplaintFeatures`` and
the ``Calibration`` by module path. Models saved before the classifier became a package name
them ``triage.routing.ComplaintFeatures`` and ``triage.routing.Calibration``; the package
re-exports both names so those models still load.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import joblib
import sklearn

from triage.routing.model import RoutingModel


class IncompatibleModel(RuntimeError):
    """A stored model this code cannot use: made by another scikit-learn version, or naming
    classes that no longer exist where its pickle says they are. The message says which."""


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


class ModelStore:
    """Trained models on disk: ``root/<version>/model.joblib`` and ``metadata.json``.

    ``root/CURRENT`` holds the version in use.
    """

    MODEL = "model.joblib"
    METADATA = "metadata.json"
    CURRENT = "CURRENT"

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def save(self, model: RoutingModel) -> Path:
        """Write the model and its metadata; returns the model's folder."""
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / model.version
        if target.exists():
            raise FileExistsError(f"{target} already exists")
        # Written in a scratch folder and renamed, so a folder that exists is complete.
        scratch = Path(tempfile.mkdtemp(prefix=f".{model.version}-", dir=self.root))
        try:
            stored = {"pipeline": model.pipeline, "calibration": model.calibration}
            joblib.dump(stored, scratch / self.MODEL, compress=3)
            (scratch / self.METADATA).write_text(
                json.dumps(model.metadata, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
            )
            os.replace(scratch, target)
        except BaseException:
            for path in scratch.glob("*"):
                path.unlink()
            scratch.rmdir()
            raise
        return target

    def deploy(self, version: str) -> None:
        """Make ``version`` the model in use."""
        if not (self.root / version / self.MODEL).is_file():
            raise FileNotFoundError(f"no model {version!r} in {self.root}")
        scratch = self.root / f".{self.CURRENT}.{secrets.token_hex(4)}"
        scratch.write_text(version + "\n", encoding="utf-8")
        os.replace(scratch, self.root / self.CURRENT)

    def current_version(self) -> str | None:
        """The version in use, or None."""
        try:
            version = (self.root / self.CURRENT).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return version or None

    def metadata(self, version: str) -> dict[str, Any]:
        """The metadata of one stored model."""
        path = self.root / version / self.METADATA
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"no model {version!r} in {self.root}") from None

    def load(self, version: str | None = None) -> RoutingModel:
        """Load a stored model, by default the one in use."""
        if version is None:
            version = self.current_version()
            if version is None:
                raise FileNotFoundError(f"no model deployed in {self.root}")
        metadata = self.metadata(version)
        made_with = metadata.get("libraries", {}).get("scikit-learn", "unknown")
        if _minor(made_with) != _minor(sklearn.__version__):
            raise IncompatibleModel(
                f"model {version} was made with scikit-learn {made_with}, this is "
                f"scikit-learn {sklearn.__version__}: retrain it with this version"
            )
        try:
            stored = joblib.load(self.root / version / self.MODEL)
        except (AttributeError, ImportError) as e:
            # Unpickling looks classes up by module path: a model naming a class that was
            # moved or removed cannot be read, whatever the library versions.
            raise IncompatibleModel(
                f"model {version} refers to code this version of Minsheng does not have "
                f"({e}): retrain it"
            ) from e
        return RoutingModel(stored["pipeline"], stored["calibration"], metadata)

    def versions(self) -> list[dict[str, Any]]:
        """Metadata of every stored model, oldest first."""
        if not self.root.is_dir():
            return []
        found = [
            self.metadata(path.name)
            for path in self.root.iterdir()
            if path.is_dir() and not path.name.startswith(".") and (path / self.METADATA).is_file()
        ]
        return sorted(found, key=lambda m: (m.get("created_at", ""), m.get("version", "")))


def _cv_f1(meta: dict[str, Any] | None) -> float | None:
    if not meta or not meta.get("cv"):
        return None
    value = meta["cv"].get("macro_f1")
    return None if value is None or math.isnan(value) else float(value)


def should_deploy(
    new_meta: dict[str, Any], current_meta: dict[str, Any] | None
) -> tuple[bool, str]:
    """Whether a newly trained model should replace the one in use, and why."""
    if current_meta is None:
        return True, "no model is deployed yet"
    new_labels, old_labels = new_meta.get("labels"), current_meta.get("labels")
    if new_labels != old_labels:
        return True, (
            f"the departments changed ({', '.join(old_labels or [])} → "
            f"{', '.join(new_labels or [])}): the deployed model cannot route to them, "
            "so the scores are not compared"
        )
    new_f1, old_f1 = _cv_f1(new_meta), _cv_f1(current_meta)
    old_version = current_meta.get("version", "?")
    if new_f1 is None:
        if old_f1 is None:
            return True, "neither model has cross-validation figures; the newer one is used"
        return False, (
            f"the new model has no cross-validation figures (too few examples per "
            f"department); keeping {old_version} (macro-F1 {old_f1:.3f})"
        )
    if old_f1 is None or new_f1 >= old_f1:
        than = "" if old_f1 is None else f" ≥ {old_f1:.3f} of {old_version}"
        return True, f"cross-validated macro-F1 {new_f1:.3f}{than}"
    return False, (
        f"cross-validated macro-F1 {new_f1:.3f} < {old_f1:.3f} of the deployed {old_version}; "
        "keeping it"
    )
