"""The public outcomes of a rejected complaint (未予受理): what the citizen is told, and why.

The list is configuration (`[[rejection_reasons]]` in config.toml); the internal reason a
supervisor writes stays internal. One kind of outcome names an outside body the citizen
should turn to (不属于受理范围 / 转外单位).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RejectionReason:
    """One public reason for not accepting a complaint.

    `code` is stored on the case; `label` (Chinese) and `label_en` are what the citizen
    reads; `refer` says that the supervisor must name the outside body responsible.
    """

    code: str
    label: str
    label_en: str = ""
    refer: bool = False
