"""Request parsing, errors, field selection and cursor paging shared by the sandbox routes."""
from __future__ import annotations

import base64
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

VERSION_RE = re.compile(r"^/(v\d+\.\d+)(/.*)?$")
DEFAULT_LIMIT = 25
MAX_LIMIT = 500


class GraphFault(Exception):
    """A Meta-shaped error; raised by routes, rendered by the server."""

    def __init__(self, message: str, *, code: int, status: int = 400, subcode: int | None = None,
                 is_transient: bool = False, headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.status, self.subcode = message, code, status, subcode
        self.is_transient = is_transient
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": "OAuthException", "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["is_transient"] = self.is_transient
        error.update(self.extra)
        error["fbtrace_id"] = "SBX" + secrets.token_hex(6)
        return {"error": error}


def not_found(object_id: str) -> GraphFault:
    return GraphFault(
        f"Unsupported get request. Object with ID '{object_id}' does not exist, cannot be loaded due "
        "to missing permissions, or does not support this operation.", code=100, subcode=33)


def invalid_param(name: str) -> GraphFault:
    return GraphFault(f"(#100) Param {name} is invalid", code=100)


@dataclass
class GraphRequest:
    method: str
    path: str  # without the version prefix, leading slash, no query
    version: str | None
    query: dict[str, str]
    body: Any
    headers: dict[str, str]
    base_url: str
    token: str | None = None
    segments: list[str] = field(default_factory=list)

    @classmethod
    def parse_path(cls, raw_path: str) -> tuple[str | None, str]:
        match = VERSION_RE.match(raw_path)
        if match:
            return match.group(1), match.group(2) or "/"
        return None, raw_path or "/"

    @property
    def params(self) -> dict[str, Any]:
        """Query and form/JSON body merged, as Graph treats them alike."""
        merged: dict[str, Any] = dict(self.query)
        if isinstance(self.body, dict):
            merged.update(self.body)
        return merged

    def param(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)

    def json_param(self, name: str, default: Any = None) -> Any:
        """A param Graph expects as JSON (time_range, filtering...), given as a string or already parsed."""
        value = self.param(name)
        if value is None or value == "":
            return default
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise invalid_param(name) from None
        return value

    def fields(self) -> dict[str, Any] | None:
        """``fields`` as Graph takes it: "id,name,adset{id}" or a JSON array such as ["id","name"]."""
        raw = self.param("fields")
        if isinstance(raw, str) and raw.lstrip().startswith("["):
            raw = self.json_param("fields")
        if isinstance(raw, list):
            raw = ",".join(str(name) for name in raw)
        return parse_fields(raw) if raw else None

    def limit(self, default: int = DEFAULT_LIMIT) -> int:
        try:
            return max(1, min(int(self.param("limit", default)), MAX_LIMIT))
        except (TypeError, ValueError):
            raise invalid_param("limit") from None

    def page(self, items: list[dict[str, Any]], *, default_limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
        """Cursor paging like Graph: cursors are base64 offsets, `next` is absolute and
        (as real Meta does) carries access_token when there is a next page."""
        limit = self.limit(default_limit)
        after = self.param("after")
        start = decode_cursor(after) + 1 if after else 0
        chunk = items[start:start + limit]
        result: dict[str, Any] = {"data": chunk}
        if not chunk:
            return result
        end = start + len(chunk) - 1
        paging: dict[str, Any] = {"cursors": {"before": encode_cursor(start), "after": encode_cursor(end)}}
        if end + 1 < len(items):
            query = {k: v for k, v in self.query.items() if k not in ("after", "before", "access_token")}
            if isinstance(self.body, dict):  # POSTed params travel on in the next link
                query.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in self.body.items()
                              if k not in ("after", "access_token")})
            query["limit"] = str(limit)
            query["after"] = encode_cursor(end)
            if self.token:
                query["access_token"] = self.token
            paging["next"] = f"{self.base_url}/{self.version or 'v26.0'}{self.path}?{urlencode(query)}"
        result["paging"] = paging
        return result


def encode_cursor(index: int) -> str:
    return base64.urlsafe_b64encode(str(index).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except ValueError:
        raise invalid_param("after") from None


def parse_fields(raw: str) -> dict[str, Any]:
    """'id,name,adset{id,name}' -> {'id': None, 'name': None, 'adset': {'id': None, 'name': None}}."""
    pos = 0

    def parse_level() -> dict[str, Any]:
        nonlocal pos
        out: dict[str, Any] = {}
        name = ""
        while pos < len(raw):
            char = raw[pos]
            pos += 1
            if char == "{":
                out[name.strip()] = parse_level()
                name = ""
            elif char == "}":
                break
            elif char == ",":
                if name.strip():
                    out[name.strip()] = None
                name = ""
            else:
                name += char
        if name.strip():
            out[name.strip()] = None
        return out

    return parse_level()


def select(obj: dict[str, Any], fields: dict[str, Any] | None, *, always: tuple[str, ...] = ("id",)) -> dict[str, Any]:
    """Keep requested fields (nested selections recurse); no selection returns everything public."""
    if fields is None:
        return {k: v for k, v in obj.items() if not k.startswith("_")}
    out = {k: obj[k] for k in always if k in obj}
    for name, sub in fields.items():
        if name not in obj:
            continue
        value = obj[name]
        if sub is not None and isinstance(value, dict):
            value = select(value, sub)
        out[name] = value
    return out
