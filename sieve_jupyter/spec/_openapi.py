"""The OpenAPI document of a served bundle, from its specs alone (pure data).

The shape follows Cog's: ``components.schemas.Input`` / ``Output`` describe the default
function, ``PredictionRequest`` / ``PredictionResponse`` the envelope, so tools written for Cog
read it. Each function of a bundle also gets ``<Name>Input`` / ``<Name>Output`` and its own
``/functions/{name}/predictions`` routes. Properties carry Cog's ``x-order``; an input schema
carries the function's docstring (``description``), signature and title (``x-sieve-...``).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sieve_jupyter.spec._model import FunctionSpec

__all__ = ["PREDICTION_STATUSES", "WEBHOOK_EVENTS", "openapi_document"]

#: Statuses a prediction goes through, as Cog names them.
PREDICTION_STATUSES = ("starting", "processing", "succeeded", "canceled", "failed")
#: Events a webhook may ask for, as Cog names them.
WEBHOOK_EVENTS = ("start", "output", "logs", "completed")
_HEALTH = ("STARTING", "READY", "BUSY", "SETUP_FAILED", "DEFUNCT")


def _component_name(name: str) -> str:
    parts = re.split(r"[^A-Za-z0-9]+", name)
    return "".join(p[:1].upper() + p[1:] for p in parts if p) or "Function"


def _move_defs(schema: dict[str, Any], prefix: str, components: dict[str, Any]) -> dict[str, Any]:
    """Put a schema's ``$defs`` (recursive types) into the components, rewriting the refs."""
    schema = copy.deepcopy(schema)
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                node = {**node, "$ref": f"#/components/schemas/{prefix}{ref[len('#/$defs/') :]}"}
            return {k: walk(v) for k, v in node.items()}
        return node

    for key, value in defs.items():
        components[f"{prefix}{key}"] = walk(value)
    result: dict[str, Any] = walk(schema)
    return result


def _input_schema(spec: FunctionSpec, title: str, components: dict[str, Any]) -> dict[str, Any]:
    schema = _move_defs(spec.inputs, f"{title}_", components)
    schema["title"] = title
    for order, prop in enumerate(schema.get("properties", {}).values()):
        if isinstance(prop, dict):
            prop["x-order"] = order
    # What the HTTP client shows of the function (its repr, a form's header), as a local
    # handle shows it from the spec.
    if spec.doc:
        schema["description"] = spec.doc
    schema["x-sieve-signature"] = spec.signature
    if spec.metadata.title:
        schema["x-sieve-title"] = spec.metadata.title
    return schema


def _output_schema(spec: FunctionSpec, title: str, components: dict[str, Any]) -> dict[str, Any]:
    item = _move_defs(spec.output, f"{title}_", components)
    if spec.is_generator:
        # Cog's convention for iterators: an array of the items, marked as streamed.
        return {"title": title, "type": "array", "items": item, "x-cog-array-type": "iterator"}
    return {"title": title, **item}


def _envelope(input_ref: str, output_ref: str) -> tuple[dict[str, Any], dict[str, Any]]:
    request = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "description": "Your own id (to cancel or poll it)."},
            "input": {"$ref": input_ref},
            "webhook": {"type": "string", "format": "uri"},
            "webhook_events_filter": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/WebhookEvent"},
                "default": list(WEBHOOK_EVENTS),
            },
        },
    }
    date = {"type": ["string", "null"], "format": "date-time"}
    response = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "input": {"$ref": input_ref},
            "output": {"$ref": output_ref},
            "status": {"$ref": "#/components/schemas/Status"},
            "error": {"type": ["string", "null"]},
            "logs": {"type": "string", "default": ""},
            "metrics": {
                "type": "object",
                "properties": {"predict_time": {"type": "number"}},
                "additionalProperties": True,
            },
            "created_at": date,
            "started_at": date,
            "completed_at": date,
        },
    }
    return request, response


def _prediction_paths(base: str, title: str, summary: str) -> dict[str, Any]:
    request_ref = f"#/components/schemas/{title}PredictionRequest"
    response_ref = f"#/components/schemas/{title}PredictionResponse"
    json_body = {"application/json": {"schema": {"$ref": request_ref}}}
    answer = {"application/json": {"schema": {"$ref": response_ref}}}
    errors = {
        "401": {"description": "Missing or wrong bearer token."},
        "413": {"description": "The request body is larger than the server accepts."},
        "422": {"description": "The input does not fit the schema; `detail` names the field."},
        "429": {"description": "The queue is full; retry after `Retry-After` seconds."},
        "503": {"description": "Not ready (setup running or failed)."},
    }
    prefer = {
        "name": "Prefer",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "enum": ["respond-async"]},
        "description": "`respond-async`: answer 202 at once, then poll or use a webhook.",
    }
    created = {
        "parameters": [prefer],
        "requestBody": {
            "content": {
                **json_body,
                "multipart/form-data": {"schema": {"type": "object"}},
            }
        },
        "responses": {
            "200": {
                "description": "The finished prediction (or an SSE stream with "
                "`Accept: text/event-stream`).",
                "content": answer,
            },
            "202": {"description": "Accepted (`Prefer: respond-async`).", "content": answer},
            **errors,
        },
    }
    identified = {
        "name": "prediction_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    return {
        f"{base}": {"post": {"summary": summary, **created}},
        f"{base}/{{prediction_id}}": {
            "put": {
                "summary": f"{summary} (idempotent: the id is yours)",
                **created,
                "parameters": [identified, prefer],
            },
            "get": {
                "summary": "A prediction's current state",
                "parameters": [identified],
                "responses": {
                    "200": {"description": "The prediction.", "content": answer},
                    "404": {"description": "No such prediction."},
                },
            },
        },
        f"{base}/{{prediction_id}}/cancel": {
            "post": {
                "summary": "Cancel a prediction",
                "parameters": [identified],
                "responses": {
                    "200": {"description": "Cancelled (or already done)."},
                    "404": {"description": "No such prediction."},
                },
            },
        },
    }


def openapi_document(
    specs: Sequence[FunctionSpec], *, default: str, title: str = "", version: str = "1"
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a server for `specs`, whose `default` answers /predictions.

    Raises:
        ValueError: `specs` is empty or `default` is not one of them.
    """
    by_name = {spec.name: spec for spec in specs}
    if default not in by_name:
        raise ValueError(f"default {default!r} is not one of {sorted(by_name)}")
    main = by_name[default]
    components: dict[str, Any] = {
        "Status": {"type": "string", "enum": list(PREDICTION_STATUSES)},
        "WebhookEvent": {"type": "string", "enum": list(WEBHOOK_EVENTS)},
        "HealthCheck": {
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": list(_HEALTH)},
                "setup": {"type": "object"},
                "functions": {"type": "object"},
            },
        },
    }
    paths: dict[str, Any] = {
        "/": {
            "get": {
                "summary": "Where everything is",
                "responses": {"200": {"description": "The index document."}},
            }
        },
        "/health-check": {
            "get": {
                "summary": "Health and setup state",
                "responses": {
                    "200": {
                        "description": "Always 200; read `status`.",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/HealthCheck"}
                            }
                        },
                    }
                },
            }
        },
        "/files/{file_id}": {
            "get": {
                "summary": "A file output too large to inline",
                "parameters": [
                    {
                        "name": "file_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {"description": "The file's bytes."},
                    "404": {"description": "No such file (or it expired)."},
                },
            }
        },
    }
    for spec in specs:
        name = _component_name(spec.name)
        components[f"{name}Input"] = _input_schema(spec, f"{name}Input", components)
        components[f"{name}Output"] = _output_schema(spec, f"{name}Output", components)
        request, response = _envelope(
            f"#/components/schemas/{name}Input", f"#/components/schemas/{name}Output"
        )
        components[f"{name}PredictionRequest"] = request
        components[f"{name}PredictionResponse"] = response
        summary = spec.metadata.title or spec.doc.split("\n", 1)[0] or f"Run {spec.name}"
        paths.update(_prediction_paths(f"/functions/{spec.name}/predictions", name, summary))
    components["Input"] = _input_schema(main, "Input", components)
    components["Output"] = _output_schema(main, "Output", components)
    request, response = _envelope("#/components/schemas/Input", "#/components/schemas/Output")
    components["PredictionRequest"] = request
    components["PredictionResponse"] = response
    paths.update(_prediction_paths("/predictions", "", f"Run {main.name} (the default function)"))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title or main.metadata.title or main.name,
            "version": version,
            "description": main.metadata.description or main.doc,
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Needed when the server has SIEVE_SERVE_TOKEN set.",
                },
            },
        },
        "security": [{}, {"bearer": []}],
    }
