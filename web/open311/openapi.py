"""The OpenAPI 3.0 description of /open311/v2/, served at /open311/v2/openapi.json.

It documents every endpoint, parameter, status and both media types of the answers, so that
a property-based run against it (schemathesis) can hold the app to it: JSON answers are
described by schemas, XML answers (the same fields as elements) as text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from web.open311.fields import DESCRIPTION_MAX, IDS_MAX, PAGE_MAX
from web.open311.services import Service

NULLABLE_STRING = {"type": "string", "nullable": True}
# The app refuses control characters in every query parameter (web/__init__.py) and in
# every one-line field; a description may hold line breaks.
NO_CONTROL = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
LINE = {"type": "string", "pattern": NO_CONTROL}
_OK = "[^\\u0000-\\u001f\\u007f-\\u009f]"
SOME_TEXT = f"^{_OK}*[^\\s\\u0000-\\u001f\\u007f-\\u009f]{_OK}*$"
NULLABLE_NUMBER = {"type": "number", "nullable": True}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": _ref(schema)},
            "text/xml": {"schema": {"type": "string"}},
        },
    }


def _errors(*codes: int) -> dict[str, Any]:
    why = {
        400: "A field is missing or wrong; the description names it.",
        403: "No API key, or not a valid one.",
        404: "No such service, request, token or jurisdiction.",
        405: "The address does not take this method.",
        413: "The request is too large.",
        429: "Too many requests for this key or address; see Retry-After.",
    }
    return {str(c): _answer(why[c], "Errors") for c in codes}


def _operation(
    summary: str,
    parameters: list[dict[str, Any]],
    ok: dict[str, Any],
    errors: Sequence[int],
    **more: Any,
) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": parameters,
        "responses": {**ok, **_errors(*errors)},
        **more,
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str, description: str, example: str = "") -> dict[str, Any]:
    param: dict[str, Any] = {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "minLength": 1},
        "description": description,
    }
    if example:
        param["example"] = example
    return param


FORMAT = {
    "name": "format",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "enum": ["json", "xml"]},
    "description": "The answer's format.",
}
JURISDICTION = _query(
    "jurisdiction_id",
    {"type": "string", "pattern": "^[A-Za-z0-9._-]{0,100}$"},
    "Optional; the configured jurisdiction only.",
)
API_KEY = {
    "name": "X-Api-Key",
    "in": "header",
    "required": False,
    "schema": LINE,
    "description": "Optional for reading; counted per key. Never in the query string (400).",
}

SCHEMAS: dict[str, Any] = {
    "Errors": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["code", "description"],
            "properties": {"code": {"type": "integer"}, "description": {"type": "string"}},
        },
    },
    "Discovery": {
        "type": "object",
        "required": ["changeset", "contact", "key_service", "endpoints"],
        "properties": {
            "changeset": {"type": "string"},
            "contact": {"type": "string"},
            "key_service": {"type": "string"},
            "endpoints": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["specification", "url", "type", "formats"],
                    "properties": {
                        "specification": {"type": "string"},
                        "url": {"type": "string"},
                        "changeset": {"type": "string"},
                        "type": {"type": "string", "enum": ["production", "test"]},
                        "formats": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    },
    "Services": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["service_code", "service_name", "metadata", "type"],
            "properties": {
                "service_code": {"type": "string"},
                "service_name": {"type": "string"},
                "description": {"type": "string"},
                "metadata": {"type": "boolean"},
                "type": {"type": "string", "enum": ["realtime", "batch", "blackbox"]},
                "keywords": {"type": "string"},
                "group": {"type": "string"},
            },
        },
    },
    "ServiceDefinition": {
        "type": "object",
        "required": ["service_code", "attributes"],
        "properties": {
            "service_code": {"type": "string"},
            "attributes": {"type": "array", "items": {"type": "object"}},
        },
    },
    "ServiceRequests": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["service_request_id", "status", "requested_datetime"],
            "properties": {
                "service_request_id": {"type": "string"},
                "status": {"type": "string", "enum": ["open", "closed"]},
                "status_notes": NULLABLE_STRING,
                "service_name": NULLABLE_STRING,
                "service_code": NULLABLE_STRING,
                "description": NULLABLE_STRING,
                "agency_responsible": NULLABLE_STRING,
                "service_notice": NULLABLE_STRING,
                "requested_datetime": {"type": "string", "format": "date-time"},
                "updated_datetime": {"type": "string", "format": "date-time", "nullable": True},
                "expected_datetime": {"type": "string", "format": "date-time", "nullable": True},
                "address": NULLABLE_STRING,
                "address_id": NULLABLE_STRING,
                "zipcode": NULLABLE_STRING,
                "lat": NULLABLE_NUMBER,
                "long": NULLABLE_NUMBER,
                "media_url": NULLABLE_STRING,
            },
        },
    },
    "CreatedRequests": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["service_request_id", "token", "query_code"],
            "properties": {
                "service_request_id": {"type": "string"},
                "token": {"type": "string"},
                "service_notice": {"type": "string"},
                "account_id": NULLABLE_STRING,
                "query_code": {
                    "type": "string",
                    "description": "For the citizen: with the tracking number it opens the "
                    "case on the public tracking page.",
                },
            },
        },
    },
    "Tokens": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["service_request_id", "token"],
            "properties": {"service_request_id": {"type": "string"}, "token": {"type": "string"}},
        },
    },
}


def _new_request_body(codes: list[str]) -> dict[str, Any]:
    def line(limit: int) -> dict[str, Any]:
        return {"type": "string", "pattern": NO_CONTROL, "maxLength": limit}

    place = {"type": "string", "pattern": NO_CONTROL}
    bad = "\\s\\u0000-\\u001f\\u007f-\\u009f"
    properties: dict[str, Any] = {
        # Ignored when the X-Api-Key header carries one.
        "api_key": {"type": "string"},
        "jurisdiction_id": JURISDICTION["schema"],
        "service_code": {"type": "string", **({"enum": codes} if codes else {})},
        "description": {
            "type": "string",
            "minLength": 4,
            "maxLength": DESCRIPTION_MAX,
            # At least four characters that are not white space, and no NUL.
            "pattern": "^[^\\u0000]*(?:\\S[^\\u0000]*){4}$",
        },
        "lat": {"type": "number", "minimum": -90, "maximum": 90},
        "long": {"type": "number", "minimum": -180, "maximum": 180},
        "address_string": {**place, "maxLength": 500},
        "address_id": {**place, "maxLength": 100},
        "email": {
            "anyOf": [
                {"type": "string", "format": "email", "maxLength": 200},
                {"type": "string", "maxLength": 0},
            ]
        },
        "device_id": line(100),
        "account_id": line(100),
        "first_name": line(50),
        "last_name": line(50),
        "phone": {
            "type": "string",
            "pattern": "^(?:\\+?[0-9][0-9 ()-]{4,30})?$",
            "description": "A Chinese mobile or landline, or an international number.",
        },
        "media_url": {
            "type": "string",
            "pattern": f"^(?:https?://[^{bad}/?#]+[^{bad}]*)?$",
            "maxLength": 1000,
        },
    }
    return {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["service_code", "description"],
                    "properties": properties,
                    # lat and long come together.
                    "allOf": [
                        {"not": {"required": ["lat"], "not": {"required": ["long"]}}},
                        {"not": {"required": ["long"], "not": {"required": ["lat"]}}},
                    ],
                    # A place: lat and long, an address or an address id.
                    "anyOf": [
                        {"required": ["lat", "long"]},
                        {
                            "required": ["address_string"],
                            "properties": {"address_string": {"pattern": SOME_TEXT}},
                        },
                        {
                            "required": ["address_id"],
                            "properties": {"address_id": {"pattern": SOME_TEXT}},
                        },
                    ],
                    # attribute[CODE] fields and any other, ignored.
                    "additionalProperties": {"type": "string"},
                }
            }
        },
    }


def openapi_document(
    server_url: str, services: Sequence[Service], page_size: int
) -> dict[str, Any]:
    """The description, with `server_url` (…/open311/v2) as its server, the current
    services' codes as the values of service_code and `page_size` as the largest page."""
    codes = [s.code for s in services]
    example = codes[0] if codes else "urban"
    date = {"type": "string", "format": "date-time"}
    one = "(?:" + "|".join(re.escape(c) for c in codes) + ")" if codes else "[^,]+"
    service_list = {"type": "string", "pattern": f"^(?:{one}(?:,{one})*)?$"}
    read_errors = (400, 403, 404, 413, 429)
    paths: dict[str, Any] = {
        "/discovery.{format}": {
            "get": _operation(
                "Where this API is, what it speaks and how to get a key.",
                [FORMAT, JURISDICTION, API_KEY],
                {"200": _answer("The discovery document.", "Discovery")},
                read_errors,
            )
        },
        "/services.{format}": {
            "get": _operation(
                "The services: one per configured category, with its department's commitment.",
                [FORMAT, JURISDICTION, API_KEY],
                {"200": _answer("Every service.", "Services")},
                read_errors,
            )
        },
        "/services/{service_code}.{format}": {
            "get": _operation(
                "A service's attributes (none: metadata is false for every service).",
                [
                    _path("service_code", "A code from services.", example),
                    FORMAT,
                    JURISDICTION,
                    API_KEY,
                ],
                {"200": _answer("The service definition.", "ServiceDefinition")},
                read_errors,
            )
        },
        "/requests.{format}": {
            "get": _operation(
                "Requests of the last 90 days (or the given window), newest first, a page "
                "at a time; public fields only: texts masked, and only for requests filed "
                "through this API (other channels: status, service, agency, dates).",
                [
                    FORMAT,
                    JURISDICTION,
                    API_KEY,
                    _query(
                        "service_request_id",
                        LINE,
                        f"Comma-separated tracking numbers (at most {IDS_MAX}); the other "
                        "filters are then ignored.",
                    ),
                    _query("service_code", service_list, "Comma-separated codes."),
                    _query("start_date", date, "Received at or after (W3C date-time)."),
                    _query("end_date", date, "Received at or before (W3C date-time)."),
                    _query(
                        "status", {"type": "string", "enum": ["open", "closed"]}, "open or closed."
                    ),
                    _query(
                        "page",
                        {"type": "integer", "minimum": 1, "maximum": PAGE_MAX},
                        "Page number, from 1.",
                    ),
                    _query(
                        "page_size",
                        {"type": "integer", "minimum": 1, "maximum": page_size},
                        f"Requests per page, at most {page_size} (the default).",
                    ),
                ],
                {"200": _answer("The requests.", "ServiceRequests")},
                read_errors,
            ),
            "post": _operation(
                "Create a request: a case on the channel api, registered, classified and "
                "routed like every other; the same request again (same key, device_id and "
                "text) within the retry window answers with the same case.",
                [FORMAT],
                {
                    "201": {
                        **_answer(
                            "The new case's tracking number, token, query code.",
                            "CreatedRequests",
                        ),
                        "links": {
                            "GetRequest": {
                                "operationId": "getRequest",
                                "parameters": {
                                    "service_request_id": "$response.body#/0/service_request_id",
                                    "format": "json",
                                },
                            },
                            "GetToken": {
                                "operationId": "getToken",
                                "parameters": {
                                    "token": "$response.body#/0/token",
                                    "format": "json",
                                },
                            },
                        },
                    },
                    "200": _answer("A retry: the case made the first time.", "CreatedRequests"),
                },
                (400, 403, 404, 413, 429),
                requestBody=_new_request_body(codes),
                operationId="createRequest",
                security=[{"ApiKey": []}],
            ),
        },
        "/requests/{service_request_id}.{format}": {
            "get": _operation(
                "One request by its tracking number.",
                [
                    _path("service_request_id", "The tracking number.", "MS-2026-000001"),
                    FORMAT,
                    JURISDICTION,
                    API_KEY,
                ],
                {"200": _answer("A list of one request.", "ServiceRequests")},
                read_errors,
                operationId="getRequest",
            )
        },
        "/tokens/{token}.{format}": {
            "get": _operation(
                "The request a token of POST requests stands for.",
                [_path("token", "A token from POST requests."), FORMAT, JURISDICTION, API_KEY],
                {"200": _answer("A list of one token and its request.", "Tokens")},
                read_errors,
                operationId="getToken",
            )
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Minsheng Open311 GeoReport v2",
            "version": "2",
            "description": "GeoReport v2 (http://wiki.open311.org/GeoReport_v2) for filing and "
            "following complaints. Errors come as [{code, description}] with the same HTTP "
            "status, in the format the address asks for. Free text (description, "
            "status_notes, address, address_id, lat/long, media_url) is given only for "
            "requests filed through this API, masked (names, phones, emails, ID numbers); "
            "a case that came by the web form, email or phone is listed with its status, "
            "service, agency and dates only: its citizen never agreed to publication.",
        },
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "ApiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-Api-Key",
                    "description": "In the X-Api-Key header, or as the form field api_key of "
                    "a POST; a key in the query string is refused (400).",
                },
            },
        },
    }
