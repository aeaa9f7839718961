"""The services of GeoReport v2: one per configured category (a department's `labels`).

A department with one category (or none: it is then its own category) gives one service
coded with the department's code (``urban``); one with several gives one per category,
coded ``<department>-<category>`` when the category is plain ASCII, else
``<department>-<6 hex digits of its SHA-256>``: stable as long as the category is.

The service's description states the department's service commitment (服务承诺), as the
deadlines compute it for a complaint.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from flask_babel import gettext as _

from web.settings import Settings

_ASCII_CODE = re.compile(r"^[A-Za-z0-9_]{1,30}$")


@dataclass(frozen=True)
class Service:
    """One GeoReport service. `keywords`: the department's routing keywords."""

    code: str
    name: str
    department_code: str
    department_name: str
    description: str
    keywords: tuple[str, ...]


def _code(department: str, category: str, several: bool) -> str:
    if not several:
        return department
    if _ASCII_CODE.match(category):
        return f"{department}-{category.lower()}"
    return f"{department}-{hashlib.sha256(category.encode()).hexdigest()[:6]}"


def services_of(settings: Settings, english: bool = False) -> list[Service]:
    """Every service of the configuration, in the order of its departments and categories.
    Names and descriptions in the current locale (`english`: the departments' English names
    where they have one)."""
    deadlines = settings.deadlines()
    found: list[Service] = []
    for d in settings.departments:
        name = d.name_en if english and d.name_en else d.name
        normal = deadlines.commitment("complaint", False, d.code)
        urgent = deadlines.commitment("complaint", True, d.code)
        description = _(
            "%(department)s replies within %(days)d working days; urgent safety hazards within "
            "%(hours)d hours.",
            department=name,
            days=normal.handling,
            hours=urgent.handling,
        )
        categories = d.labels or [name]
        for category in categories:
            # The categories are written in Chinese only: in English a department's only
            # category is named by the department's English name.
            shown = name if english and d.name_en and len(categories) == 1 else category
            found.append(
                Service(
                    code=_code(d.code, category, len(categories) > 1),
                    name=shown,
                    department_code=d.code,
                    department_name=name,
                    description=description,
                    keywords=tuple(d.keywords),
                )
            )
    return found


def service_of_department(services: Sequence[Service], department_code: str) -> Service | None:
    """The first service of a department: the one a case handled there is listed under."""
    return next((s for s in services if s.department_code == department_code), None)


def as_spec(service: Service) -> dict[str, object]:
    """The service as GeoReport's `services` lists it."""
    return {
        "service_code": service.code,
        "service_name": service.name,
        "description": service.description,
        "metadata": False,
        "type": "realtime",
        "keywords": ",".join(service.keywords),
        "group": service.department_name,
    }
