"""What a request's input must be before the portal acts on it: strict JSON objects
(RFC 8259, no duplicate keys, no NaN), typed and bounded fields, ASCII headers."""

from __future__ import annotations

import json
import re
from typing import Any

import bottle

MAX_TEXT = 2048  # longest string field (tokens are ~250 characters)
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


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({key for key, _ in pairs}) < len(pairs):
        raise ValueError("duplicate key")
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Strict JSON (RFC 8259): duplicate keys and NaN/Infinity refused. Built once.
_JSON = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object from a request body, or ApiError 400 saying what is wrong."""
    try:
        value = _JSON.decode(raw.decode("utf-8"))
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
