"""The two formats of GeoReport v2, JSON and XML, and its error format.

Every answer is built as plain data (dicts, lists, strings, numbers, booleans, None) and
rendered here in the format the address asks for: ``.json`` (the default) or ``.xml``. XML
follows the spec's examples: a root element, one child per item, one element per field, a
list as an element holding one element per entry (``<formats><format>…</format></formats>``).
Characters XML 1.0 cannot carry (NUL and the other control characters) are left out, so the
document always parses.

Errors are ``[{"code": 400, "description": "…"}]`` in JSON and
``<errors><error><code>400</code><description>…</description></error></errors>`` in XML,
with the same HTTP status.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any
from xml.etree import ElementTree as ET

from flask import Response, request

FORMATS = ("json", "xml")
MEDIA_TYPES = {"json": "application/json; charset=utf-8", "xml": "text/xml; charset=utf-8"}

# The element of one entry of a list, by the list's element (the spec's singular forms).
ITEM_NAMES = {
    "services": "service",
    "service_requests": "request",
    "errors": "error",
    "endpoints": "endpoint",
    "formats": "format",
    "attributes": "attribute",
    "values": "value",
}
_NOT_IN_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_FORMAT_SUFFIX = re.compile(r"\.(json|xml)$")
# As the spec's examples write it (ElementTree's own uses single quotes and lower case).
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


class ApiError(Exception):
    """An answer in the spec's error format: HTTP `status`, a `description` for developers;
    `headers` go with it (Retry-After on 429, Allow on 405)."""

    def __init__(self, status: int, description: str, headers: Mapping[str, str] | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.headers = dict(headers or {})


def format_of_request() -> str:
    """The format the request's address asks for: ``xml`` for ``….xml``, else ``json``."""
    found = _FORMAT_SUFFIX.search(request.path)
    return found.group(1) if found else "json"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return _NOT_IN_XML.sub("", str(value))


def _fill(element: ET.Element, value: Any) -> None:
    if isinstance(value, Mapping):
        for key, child in value.items():
            _fill(ET.SubElement(element, key), child)
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        name = ITEM_NAMES.get(element.tag, "item")
        for child in value:
            _fill(ET.SubElement(element, name), child)
    else:
        element.text = _text(value)


def to_xml(root: str, value: Any) -> bytes:
    """`value` under the element `root`, as an XML document (UTF-8, with declaration)."""
    element = ET.Element(root)
    _fill(element, value)
    return XML_DECLARATION + ET.tostring(element, encoding="unicode").encode()


def render(fmt: str, root: str, value: Any, status: int = 200) -> Response:
    """The answer `value` in `fmt`; `root` names the XML root (``services``, ...)."""
    if fmt == "xml":
        body = to_xml(root, value)
    else:
        body = json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    response = Response(body, status=status, mimetype=None, content_type=MEDIA_TYPES[fmt])
    response.headers["Cache-Control"] = "no-store"
    return response


def render_error(
    fmt: str, status: int, description: str, headers: Mapping[str, str] | None = None
) -> Response:
    """The spec's error answer: one error with `status` as its code."""
    response = render(fmt, "errors", [{"code": status, "description": description}], status)
    response.headers.update(headers or {})
    return response
