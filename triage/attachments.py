"""Attachments on disk, stored once under their SHA-256 whatever their name.

Files and rows agree after any crash: a file is written (and synced) before the transaction
that adds its row commits, so a committed row always has its file; a crash between the two
leaves a file with no row, which `AttachmentStore.sweep` removes once it is older than any
transaction could still be open.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class SweepResult:
    """What a sweep found: files kept, orphans removed (or found, on a dry run), and
    leftovers of interrupted writes removed."""

    kept: int
    orphans: tuple[str, ...]
    partial: int


class AttachmentStore:
    """A content-addressed folder: `root/ab/cd/abcd…` holds the bytes whose hash is abcd…."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in _HEX for c in sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, sha256: str, data: bytes) -> Path:
        """Writes the bytes unless they are already there; atomic, so readers never see half,
        and synced, so the row committed after it never points at nothing."""
        target = self.path(sha256)
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    def _files(self) -> Iterator[Path]:
        if not self.root.is_dir():
            return
        for path in self.root.glob("??/??/*"):
            if path.is_file():
                yield path

    def sweep(
        self,
        known: Callable[[Iterable[str]], set[str]],
        *,
        grace_seconds: float = 3600.0,
        dry_run: bool = False,
        batch: int = 500,
    ) -> SweepResult:
        """Removes files that no attachment row names, and leftovers of interrupted writes.

        ``known(hashes)`` returns those of ``hashes`` that some row names. Only files older
        than ``grace_seconds`` go: a younger one may belong to a transaction still open.
        """
        cutoff = time.time() - grace_seconds
        kept, orphans, partial = 0, [], 0
        pending: list[Path] = []

        def settle(paths: list[Path]) -> None:
            nonlocal kept
            named = known([p.name for p in paths])
            for p in paths:
                if p.name in named:
                    kept += 1
                else:
                    orphans.append(p.name)
                    if not dry_run:
                        p.unlink(missing_ok=True)

        for path in self._files():
            try:
                old = path.stat().st_mtime < cutoff
            except FileNotFoundError:
                continue
            if path.name.startswith(".incoming-"):
                if old:
                    partial += 1
                    if not dry_run:
                        path.unlink(missing_ok=True)
                continue
            if len(path.name) != 64 or not set(path.name) <= _HEX:
                continue  # not ours: leave it
            if not old:
                kept += 1
                continue
            pending.append(path)
            if len(pending) >= batch:
                settle(pending)
                pending = []
        if pending:
            settle(pending)
        if not dry_run:
            self._remove_empty_folders()
        return SweepResult(kept, tuple(sorted(orphans)), partial)

    def _remove_empty_folders(self) -> None:
        for level in ("??/??", "??"):
            for folder in self.root.glob(level):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only if empty; a file written meanwhile keeps it
