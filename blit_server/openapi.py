"""GET /v1/openapi.json: an OpenAPI 3.1 description of every route, built from the app's own
route table (so a route cannot exist undescribed: tests check each has an entry below)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from blit_shared import __version__

from .http import JSON

JSON_BODY = "application/json"
Q_PATH = {"name": "path", "in": "query", "required": False, "schema": {"type": "string"},
          "description": "Relative POSIX path inside the module (\"\" is its root)."}
ERROR = {"$ref": "#/components/schemas/Error"}

# (method, path) → summary, and optionally request/response notes. One line each: the detail
# lives in docs/api.md, which a test runs against a real daemon.
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/healthz"): {"summary": "Liveness and version; needs no token."},
    ("GET", "/metrics"): {"summary": "Prometheus metrics (text exposition format).",
                          "content": "text/plain"},
    ("GET", "/v1/openapi.json"): {"summary": "This description."},
    ("GET", "/v1/modules"): {"summary": "The exported modules: name, read_only, comment."},
    ("GET", "/v1/modules/{name}/list"): {
        "summary": "List one directory (or describe one file) of a module.",
        "query": [Q_PATH]},
    ("GET", "/v1/modules/{name}/du"): {
        "summary": "Count files, dirs, links and bytes under a path.", "query": [Q_PATH]},
    ("DELETE", "/v1/modules/{name}/entries"): {
        "summary": "Remove a file or link, or a directory with recursive=true.",
        "query": [Q_PATH, {"name": "recursive", "in": "query", "required": False,
                           "schema": {"type": "boolean"}}]},
    ("POST", "/v1/transfers"): {
        "summary": "Open a push (daemon is DESTINATION) or pull (daemon is SOURCE).",
        "body": "{direction, module, path, trailing_slash, options, source (push)}",
        "status": "201"},
    ("GET", "/v1/transfers/{id}"): {"summary": "Status snapshot of a transfer."},
    ("DELETE", "/v1/transfers/{id}"): {"summary": "Abort a transfer; its temp files go."},
    ("POST", "/v1/transfers/{id}/manifest"): {
        "summary": "Push: the SOURCE's manifest, whole or (to a fresh destination) in parts; "
                   "answers with the plan (the part's need, counts so far).",
        "body": "{entries: [[path, kind, size, mtime_ns, mode, target, digest]], errors, "
                "offset, more}, or {same_as: DIGEST} to plan from an identical DESTINATION"},
    ("GET", "/v1/transfers/{id}/manifest"): {
        "summary": "Pull: the SOURCE's manifest, or {same: true} when it matches same_as; "
                   "with offset, the next part while the scan goes on (more: true until the "
                   "last).",
        "query": [{"name": "same_as", "in": "query", "required": False,
                   "schema": {"type": "string"}},
                  {"name": "offset", "in": "query", "required": False,
                   "schema": {"type": "integer", "minimum": 0}}]},
    ("POST", "/v1/transfers/{id}/negotiate"): {
        "summary": "Choose the carrier: a TCP data-plane grant (host, port, one-time tokens) "
                   "or HTTP; {fallback: true} turns an unused TCP grant into HTTP.",
        "body": "{need (pull), more (pull: need parts follow), force_http, name, fallback}"},
    ("POST", "/v1/transfers/{id}/need"): {
        "summary": "Pull, manifest in parts: the DESTINATION's need list for its next part.",
        "body": "{need: [index], more}"},
    ("PUT", "/v1/transfers/{id}/stream"): {
        "summary": "HTTP carrier, push: one record stream as the request body.",
        "content": "application/octet-stream"},
    ("GET", "/v1/transfers/{id}/stream"): {
        "summary": "HTTP carrier, pull: one record stream as the response body.",
        "content": "application/octet-stream"},
    ("GET", "/v1/transfers/{id}/progress"): {
        "summary": "One progress event now (the summary once finished)."},
    ("GET", "/v1/transfers/{id}/events"): {
        "summary": "Progress events until the transfer ends, then its summary: NDJSON, or "
                   "server-sent events with Accept: text/event-stream.",
        "content": "application/x-ndjson",
        "query": [{"name": "interval", "in": "query", "required": False,
                   "schema": {"type": "number", "minimum": 0.05}}]},
    ("POST", "/v1/transfers/{id}/finish"): {
        "summary": "End a transfer: wait for its streams, finish the DESTINATION, summary.",
        "body": "{summary (pull: the client's own)}"},
    ("GET", "/v1/transfers/{id}/summary"): {"summary": "The summary of a finished transfer."},
}


def spec(routes: list[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            doc = OPERATIONS.get((method, route.path), {"summary": route.name})
            paths.setdefault(route.path, {})[method.lower()] = _operation(route, doc)
    return {
        "openapi": "3.1.0",
        "info": {"title": "blitd control plane", "version": __version__,
                 "description": "JSON over HTTP; see docs/api.md for a whole push and pull "
                                "with curl."},
        "paths": paths,
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {
                "error": {"type": "object", "required": ["code", "message"], "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}}}}}},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{}, {"bearer": []}],
    }


def _operation(route: Route, doc: dict[str, Any]) -> dict[str, Any]:
    params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
              for p in route.param_convertors]
    op: dict[str, Any] = {"summary": doc["summary"], "operationId": route.name,
                          "parameters": params + doc.get("query", [])}
    if "body" in doc:
        op["requestBody"] = {"content": {JSON_BODY: {"schema": {
            "type": "object", "description": doc["body"]}}}}
    content = doc.get("content", JSON_BODY)
    op["responses"] = {
        doc.get("status", "200"): {"description": "OK", "content": {content: {}}},
        "default": {"description": "Error", "content": {JSON_BODY: {"schema": ERROR}}},
    }
    return op


async def openapi(request: Request) -> Response:
    # Public like /healthz: it describes the API, not anything the daemon holds.
    return JSON(spec([r for r in request.app.routes if isinstance(r, Route)]))


ROUTES = [Route("/v1/openapi.json", openapi, methods=["GET"])]
