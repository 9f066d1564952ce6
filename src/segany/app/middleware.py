"""ASGI guards in front of the app: allowed host names, security headers, an access token, requests
only the app's own page can send, and a limit on request body size.

Each refusal is JSON ``{"detail": "one sentence"}``, sent before the application sees the request.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, quote, unquote

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_COOKIE = "segany_token"


async def send_json(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """Answer a request with ``{"detail": detail}`` and ``status``."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class TokenAuth:
    """Every HTTP request needs the token: ``Authorization: Bearer TOKEN``, ``?token=TOKEN`` or the cookie.

    A request authorised by ``?token=`` gets the token as an HttpOnly, SameSite=Strict cookie, so the
    page's own scripts and styles (loaded without the query) are authorised too.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    def _matches(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorization = _header(scope, b"authorization") or ""
        bearer = authorization[7:].strip() if authorization.lower().startswith("bearer ") else None
        query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [None])[0]
        cookie = _cookie(_header(scope, b"cookie") or "", TOKEN_COOKIE)
        if self._matches(bearer) or self._matches(cookie):
            await self.app(scope, receive, send)
        elif self._matches(query):
            await self.app(scope, receive, self._with_cookie(send))
        else:
            detail = (
                "Wrong access token; use the token the server printed."
                if bearer or query or cookie
                else "An access token is needed; send 'Authorization: Bearer TOKEN' or add ?token=TOKEN."
            )
            await send_json(send, 401, detail, [(b"www-authenticate", b"Bearer")])

    def _with_cookie(self, send: Send) -> Send:
        cookie = f"{TOKEN_COOKIE}={quote(self.token, safe='')}; HttpOnly; SameSite=Strict; Path=/"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"set-cookie", cookie.encode())],
                }
            await send(message)

        return send_with_cookie


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return unquote(value)
    return None


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, without reading past the limit.

    A declared ``Content-Length`` over the limit is refused at once; otherwise (e.g. chunked uploads)
    the body is read up to the limit, then handed to the app unchanged.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return f"Request body is larger than the limit of {self.max_bytes:,} bytes; send less."

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await send_json(send, 400, "Content-Length must be a number of bytes.")
                return
            if int(declared) > self.max_bytes:
                await send_json(send, 413, self._too_large())
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its body: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_json(send, 413, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class HostCheck:
    """Answer only requests whose ``Host`` names this server: an IP address, ``localhost`` or one of
    ``names``. A page on another site that re-points its own DNS name at this machine (DNS rebinding)
    sends its own name, and is refused with 400."""

    def __init__(self, app: ASGIApp, names: Iterable[str] = ()) -> None:
        self.app = app
        self.names = {"localhost", *(name.lower().rstrip(".") for name in names)}

    def allowed(self, host_header: str) -> bool:
        host = host_header.strip().lower()
        if host.startswith("["):  # [IPv6]:port
            host = host[1 : host.find("]")] if "]" in host else host
        elif host.count(":") == 1:
            host = host.split(":")[0]
        host = host.rstrip(".")
        if host in self.names:
            return True
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host") or ""
        if self.allowed(host):
            await self.app(scope, receive, send)
            return
        detail = (
            f"Host {host!r} is not a name this server was started for; open it by its address "
            "(e.g. http://127.0.0.1:PORT/) or start it with --allow-host NAME."
        )
        await send_json(send, 400, detail)


STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REQUESTED_WITH = b"x-requested-with"


class SameOriginWrites:
    """State-changing requests (POST, PUT, PATCH, DELETE) need ``Content-Type: application/json`` or an
    ``X-Requested-With`` header. A form on another site can send neither (either one makes the browser
    ask this server first, which does not allow other origins), so it cannot change annotations even
    where no token is set. Refused with 415."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method", "GET") not in STATE_CHANGING:
            await self.app(scope, receive, send)
            return
        media_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if media_type == "application/json" or _header(scope, REQUESTED_WITH) is not None:
            await self.app(scope, receive, send)
            return
        detail = (
            f"A {scope['method']} request needs Content-Type: application/json or an X-Requested-With "
            "header (a cross-site form can send neither)."
        )
        await send_json(send, 415, detail)


# The UI loads its own scripts, styles and images only; the API docs page (/docs, /redoc) loads
# FastAPI's Swagger UI / ReDoc from their CDN with one inline script.
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: "
    "https://fastapi.tiangolo.com https://cdn.redoc.ly; worker-src blob:; frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")


class SecurityHeaders:
    """Adds to every response: no framing by other pages (clickjacking), no MIME sniffing, no referrer
    (page URLs may carry ``?token=``), and a Content-Security-Policy."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = DOCS_POLICY if scope.get("path", "").startswith(DOCS_PATHS) else PAGE_POLICY
        extra = [
            (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"content-security-policy", policy.encode()),
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
