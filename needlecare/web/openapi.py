"""The app's OpenAPI schema: every public endpoint, the webhook body and its signature header included.

FastAPI describes the JSON routes from their decorators; the webhook's body is read raw (it is signed), so its
schema comes from :class:`models.SessionCompleted` through :func:`json_body`. The patient and login pages are
HTML routes kept out of FastAPI's generated schema (their handlers read forms themselves), so :func:`install`
adds their descriptions here: ``GET``/``POST /s/{token}`` (the survey form) and ``GET``/``POST /login``.
Staff pages behind the login are not public and are not described.
"""

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

_HTML = {"text/html": {"schema": {"type": "string"}}}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {key: _inline(value, defs) for key, value in node.items() if key != "$defs"}
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    return node


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with every ``$ref`` written out in place (the models have no cycles)."""
    schema = model.model_json_schema(mode="validation")
    inlined: dict[str, Any] = _inline(schema, schema.get("$defs", {}))
    return inlined


def json_body(model: type[BaseModel], *, example: dict[str, Any] | None = None) -> dict[str, Any]:
    """An ``openapi_extra`` request body: JSON in the shape of ``model`` (for routes that read the body raw)."""
    content: dict[str, Any] = {"schema": model_schema(model)}
    if example is not None:
        content["example"] = example
    return {"requestBody": {"required": True, "content": {"application/json": content}}}


def _token_parameter(description: str) -> dict[str, Any]:
    return {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


def _form(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": {"type": "string"}}
    if required:
        schema["required"] = required
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": schema}}}


def _answers_form() -> dict[str, Any]:
    text = {"type": "string"}
    fields = ["nprs_usual", "nprs_worst", "soreness", "bruise", "groc15", "fainted", "ran", "run_pain", "free_text"]
    properties: dict[str, Any] = {name: text for name in fields}
    properties["redflags"] = {"type": "array", "items": text}
    properties.update({"rom_value": text, "rom_measure": text})
    for index in range(3):
        properties[f"psfs_activity_{index}"] = text
        properties[f"psfs_score_{index}"] = text
    return _form(properties)


_REFUSED = {
    "400": {"description": "Path, query or form is not clean UTF-8 text (NUL, control character)"},
    "413": {"description": "Body larger than 64 KiB"},
    "422": {"description": "A value is out of range or cannot be read"},
    "429": {"description": "Too many requests; see Retry-After"},
}


def public_pages() -> dict[str, Any]:
    """Path items for the HTML pages a patient or a staff member reaches without logging in."""
    survey_token = _token_parameter("The signed link from a check-in email or SMS")
    unusable = {
        "404": {"description": "Unknown, malformed or tampered link", "content": _HTML},
        "409": {"description": "This check-in was already answered", "content": _HTML},
        "410": {"description": "The link expired or the check-in is closed", "content": _HTML},
    }
    return {
        "/s/{token}": {
            "get": {
                "tags": ["surveys"],
                "summary": "Survey form",
                "operationId": "survey_form_page",
                "parameters": [survey_token],
                "responses": {"200": {"description": "The check-in form", "content": _HTML}, **unusable, **_REFUSED},
            },
            "post": {
                "tags": ["surveys"],
                "summary": "Submit the survey form",
                "operationId": "survey_form_submit",
                "parameters": [survey_token],
                "requestBody": _answers_form(),
                "responses": {
                    "200": {"description": "Stored: the thank-you page with any advice", "content": _HTML},
                    **unusable,
                    **_REFUSED,
                    "422": {"description": "The form again, with what to correct", "content": _HTML},
                },
            },
        },
        "/login": {
            "get": {
                "tags": ["staff login"],
                "summary": "Staff login form",
                "operationId": "login_form_page",
                "parameters": [{"name": "next", "in": "query", "required": False, "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "The login form", "content": _HTML},
                    "303": {"description": "Already logged in: to `next`"},
                    **_REFUSED,
                },
            },
            "post": {
                "tags": ["staff login"],
                "summary": "Log in",
                "operationId": "login_submit",
                "requestBody": _form(
                    {
                        "email": {"type": "string"},
                        "password": {"type": "string"},
                        "csrf": {"type": "string"},
                        "next": {"type": "string"},
                        "code": {"type": "string"},
                    }
                ),
                "responses": {
                    "200": {"description": "The login form again, with what went wrong", "content": _HTML},
                    "303": {"description": "Logged in: to `next`"},
                    "400": {"description": "Malformed form", "content": _HTML},
                    "403": {"description": "The form's csrf field is missing or stale", "content": _HTML},
                    "413": _REFUSED["413"],
                    "422": _REFUSED["422"],
                    "429": _REFUSED["429"],
                },
            },
        },
    }


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` FastAPI's schema plus :func:`public_pages`."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            for path, item in public_pages().items():
                schema["paths"].setdefault(path, {}).update(item)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
