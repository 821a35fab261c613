"""What every request to the portal goes through: the limits of what it serves, strict JSON
objects (RFC 8259: no duplicate keys, no NaN) with typed, bounded fields, the JSON form of
a refusal, and the security headers of every answer."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import bottle

from rtsp_resume.portal.store import StorageError

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024  # every request the portal takes is far smaller
MAX_TEXT = 2048  # longest string field (tokens are ~250 characters)
_METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class ApiError(Exception):
    """A refusal: ``status`` with ``{"error": error, "detail": detail}`` (and ``headers``)."""

    def __init__(self, status: int, error: str, detail: str, **headers: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.headers = status, error, detail, headers


def request_header(name: str) -> str:
    """A request header as the server gave it ('' if absent). Not through Bottle, which
    decodes as UTF-8 and raises on other bytes; a non-ASCII value just fails its check."""
    return bottle.request.environ.get("HTTP_" + name.upper().replace("-", "_"), "")


def before_request() -> None:
    """Refuse what the HTTP server lets through but the portal does not serve: other methods
    (RFC 9110 15.6.2), chunked bodies (RFC 9112 6.1; no client sends one), large bodies."""
    if bottle.request.method not in _METHODS:
        raise bottle.HTTPError(501, f"method {bottle.request.method} not supported")
    if request_header("Transfer-Encoding"):
        raise bottle.HTTPError(411, "send the body with a Content-Length")
    if bottle.request.content_length > MAX_BODY:
        raise bottle.HTTPError(413, f"the body is larger than {MAX_BODY} bytes")


def after_request() -> None:
    headers = bottle.response.headers
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    headers.setdefault("Cache-Control", "no-store")  # tokens are in most answers
    if not bottle.request.path.startswith("/api/"):
        headers["Content-Security-Policy"] = (
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'")


def json_route(handler: Callable[[], Any]) -> Callable[[], Any]:
    """An API route: its answer as JSON, an ApiError or a failed database as a JSON refusal."""

    def route() -> Any:
        try:
            result = handler()
        except ApiError as exc:
            bottle.response.status = exc.status
            for name, value in exc.headers.items():
                bottle.response.set_header(name.replace("_", "-"), value)
            result = {"error": exc.error, "detail": exc.detail}
        except StorageError as exc:
            log.error("portal: storage failed: %s", exc)
            bottle.response.status = 503
            result = {"error": "storage_error", "detail": "the database failed; retry"}
        if isinstance(result, list):
            bottle.response.content_type = "application/json"
            return json.dumps(result)
        return result

    return route


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({key for key, _ in pairs}) < len(pairs):
        raise ValueError("duplicate key")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object from a request body, or ApiError 400 saying what is wrong."""
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys,
                           parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise ApiError(400, "bad_json", "the body is not UTF-8") from exc
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    return value


def check_fields(obj: dict[str, Any], required: dict[str, str],
                 optional: dict[str, str] | None = None) -> dict[str, Any]:
    """Check fields against ``{"name": "text" | "number"}``; unknown ones are refused."""
    optional = optional or {}
    if unknown := sorted(obj.keys() - required.keys() - optional.keys()):
        raise ApiError(400, "unknown_field", f"unknown field(s): {', '.join(unknown)}")
    if missing := sorted(required.keys() - obj.keys()):
        raise ApiError(400, "missing_field", f"missing field(s): {', '.join(missing)}")
    for name, value in obj.items():
        if (required.get(name) or optional[name]) == "text":
            if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
                raise ApiError(400, "bad_field", f"{name} must be a non-empty string of at "
                               f"most {MAX_TEXT} characters")
            if _CONTROL_CHARS.search(value):
                raise ApiError(400, "bad_field", f"{name} contains control characters")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ApiError(400, "bad_field", f"{name} must be a number")
        elif not -1e300 < value < 1e300:  # NaN, the infinities, and ints no float holds
            raise ApiError(400, "bad_field", f"{name} must be finite")
    return obj
