"""Masking of personal data where the public or external supervisors look."""

from __future__ import annotations

import re

_MOBILE = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])(\d{6})(\d{8})(\d{3}[\dXx])(?![0-9A-Za-z])")
_LANDLINE = re.compile(r"(?<!\d)(0\d{2,3}-?)(\d{3,4})(\d{4})(?!\d)")
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*(@[A-Za-z0-9.-]+\.[A-Za-z]{2,})")


def mask_name(name: str) -> str:
    """王小明 → 王**, John Smith → J***."""
    name = name.strip()
    if not name:
        return ""
    return name[0] + "*" * max(1, min(len(name) - 1, 3))


def mask_phone(phone: str) -> str:
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def mask_email(email: str) -> str:
    return _EMAIL.sub(r"\1***\2", email.strip())


def mask_text(text: str) -> str:
    """Masks mobile numbers, ID card numbers, landlines and emails inside free text."""
    text = _ID_CARD.sub(lambda m: m.group(1) + "*" * 12, text)
    text = _MOBILE.sub(r"\1****\3", text)
    text = _LANDLINE.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), text)
    return _EMAIL.sub(r"\1***\2", text)
