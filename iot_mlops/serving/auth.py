"""API keys with roles (reader < operator < admin), configured as SHA-256 hashes in the environment.

`IOT_MLOPS_API_KEYS="<sha256hex>:admin:ops-team,<sha256hex>:reader"`: hash, role and an optional name that
the decision log records as the actor. Keys themselves are never stored; `iot-mlops keys hash` prints a hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

HEADER = "X-API-Key"
_PRINCIPAL = "iot_mlops.principal"  # the request scope's key: the key is looked up once per request
_HEX = re.compile(r"^[0-9a-f]{64}$")


class Role(IntEnum):
    reader = 1  # predictions, models
    operator = 2  # feedback, batch predictions
    admin = 3  # rollback


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role


class AuthError(Exception):
    """Missing or unknown key (401), or a role too low for the endpoint (403)."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return secrets.token_urlsafe(32)


def parse_keys(spec: str) -> list[tuple[str, Principal]]:
    """`hash:role[:name]` entries, comma-separated; a bad entry is an error naming its position, never its hash."""
    out = []
    for position, entry in enumerate((e.strip() for e in spec.split(",")), start=1):
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"IOT_MLOPS_API_KEYS entry {position}: expected <sha256hex>:<role>[:<name>]")
        digest, role = parts[0].lower(), parts[1]
        if not _HEX.match(digest):
            raise ValueError(f"IOT_MLOPS_API_KEYS entry {position}: the hash must be 64 hex digits (SHA-256 of the key)")
        if role not in Role.__members__:
            raise ValueError(f"IOT_MLOPS_API_KEYS entry {position}: unknown role {role!r}; expected one of {list(Role.__members__)}")
        name = parts[2] if len(parts) == 3 and parts[2] else f"key-{digest[:8]}"
        out.append((digest, Principal(name, Role[role])))
    return out


class KeyRing:
    """Looks a presented key up by its hash, comparing in constant time against every configured hash."""

    def __init__(self, keys: list[tuple[str, Principal]]):
        self.keys = keys

    def identify(self, key: str | None) -> Principal:
        if not key:
            raise AuthError(401, f"missing API key: send it in the {HEADER} header")
        digest = hash_key(key)
        found = None
        for configured, principal in self.keys:
            if hmac.compare_digest(digest, configured):
                found = principal
        if found is None:
            raise AuthError(401, "unknown API key")
        return found


SCHEME = "APIKeyHeader"


def require(role: Role):
    """A FastAPI dependency: the caller's principal, if its role is at least `role`."""

    # The header is read here, not through a Security() sub-dependency: FastAPI resolves every dependency on every
    # request, and this one guards the prediction hot path. `document_keys` states the scheme in the OpenAPI schema.
    async def dependency(request: Request) -> Principal:
        principal = request.scope.get(_PRINCIPAL)  # set when KeyFirstRoute checked the key already
        if principal is None:
            principal = request.scope[_PRINCIPAL] = request.app.state.keys.identify(request.headers.get(HEADER))
        if principal.role < role:
            raise AuthError(403, f"this endpoint needs role {role.name}; key {principal.name!r} has role {principal.role.name}")
        return principal

    dependency.__name__ = f"require_{role.name}"
    dependency.role = role  # type: ignore[attr-defined]  # how KeyFirstRoute finds its key checks
    return dependency


class KeyFirstRoute(APIRoute):
    """An APIRoute that checks the key and role before anything else: 401/403 before a body is read (413) or
    validated (422); FastAPI itself reads and parses the body before it resolves any dependency."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        guards = [sub.call for sub in self.dependant.dependencies if getattr(sub.call, "role", None) is not None]
        if not guards:
            return handler

        async def checked(request: Request) -> Response:
            for guard in guards:
                await guard(request)
            return await handler(request)

        return checked


def document_keys(schema: dict) -> dict:
    """The API key scheme in an OpenAPI schema, required by every /api operation."""
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[SCHEME] = {"type": "apiKey", "in": "header", "name": HEADER,
                       "description": "API key; roles reader < operator < admin."}
    for path, operations in schema.get("paths", {}).items():
        if path.startswith("/api/"):
            for operation in operations.values():
                operation["security"] = [{SCHEME: []}]
    return schema
