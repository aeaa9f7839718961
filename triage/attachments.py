"""Attachments on disk, stored once under their SHA-256 whatever their name."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class AttachmentStore:
    """A content-addressed folder: `root/ab/cd/abcd…` holds the bytes whose hash is abcd…."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, sha256: str, data: bytes) -> Path:
        """Writes the bytes unless they are already there; atomic, so readers never see half."""
        target = self.path(sha256)
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target
