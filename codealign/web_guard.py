"""What every codealign web server refuses before a route runs: the browser-shaped
attacks on a server that listens on this machine.

- A ``Host`` that is not a loopback name or address, the bound host or an allowed name
  (``--allow-host``): 421. A web page whose DNS name was rebound to 127.0.0.1 sends its
  own name as the Host, so this ends DNS rebinding.
- An ``Origin`` other than the server's own, or a browser's ``Sec-Fetch-Site`` of
  ``cross-site`` / ``same-site`` on anything but a plain navigation: 403. Another page
  open in the same browser (another port of 127.0.0.1 included) cannot call the API.
- With a token (``--token-file`` or ``CODEALIGN_TOKEN``), a request without
  ``Authorization: Bearer <token>``: 401 (the routes named open are served without it).
- A POST, PUT or PATCH whose ``Content-Type`` is not ``application/json``: 415. Form
  posts and ``text/plain`` bodies are what a page may send cross-site without asking.

No web framework here: the middleware is plain ASGI, the decision a pure function.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codealign.errors import InputError

TOKEN_ENV = "CODEALIGN_TOKEN"
MIN_TOKEN_CHARS = 16
WILDCARDS = frozenset({"", "0.0.0.0", "::"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_CHECKED = ("host", "origin", "authorization", "content-type", "sec-fetch-site")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 bare or in brackets) is this machine."""
    host = host.strip("[]").rstrip(".").lower()
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def split_host(value: str) -> tuple[str, int | None] | None:
    """``Host`` header ``value`` as (name, port), the name lowercased without brackets
    or a trailing dot; None when it is not a host[:port]."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
        if rest and port is None:
            return None
    elif value.count(":") == 1:
        name, port = value.split(":")
    else:  # a bare IPv6 address, or a name without a port
        name, port = value, None
    if not name or (port is not None and not (port.isdigit() and 0 < int(port) < 65536)):
        return None
    return name.rstrip("."), int(port) if port is not None else None


@dataclass(frozen=True)
class Guard:
    """Who may call: loopback names always, plus ``hosts``; ``token`` when set on every
    path but ``open_paths``."""

    hosts: frozenset[str] = frozenset()
    token: str | None = None
    open_paths: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def for_bind(
        cls,
        bind: str,
        allow_hosts: Iterable[str] = (),
        token: str | None = None,
        open_paths: Iterable[str] = (),
    ) -> Guard:
        """The guard of a server bound to ``bind``: its own address is an allowed Host
        (a wildcard address is not: nobody names it), and so is every ``allow_hosts``."""
        names = {h.strip("[]").rstrip(".").lower() for h in allow_hosts if h.strip()}
        if bind not in WILDCARDS:
            names.add(bind.strip("[]").rstrip(".").lower())
        return cls(frozenset(names), token, frozenset(open_paths))

    def allows_host(self, name: str) -> bool:
        return is_loopback(name) or name in self.hosts


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str


def _origin(value: str) -> tuple[str, str, int] | None:
    scheme, sep, rest = value.partition("://")
    parsed = split_host(rest) if sep and "/" not in rest else None
    if parsed is None or scheme.lower() not in _DEFAULT_PORTS:
        return None
    name, port = parsed
    return scheme.lower(), name, port or _DEFAULT_PORTS[scheme.lower()]


def _cross_site(method: str, headers: Mapping[str, str]) -> str | None:
    """Why a browser's fetch metadata marks this request as another site's; None when it
    is the page's own, typed by the user, a plain navigation, or not from a browser."""
    site = headers.get("sec-fetch-site", "").lower()
    if site in ("", "same-origin", "none"):
        return None
    navigation = headers.get("sec-fetch-mode", "").lower() == "navigate"
    if method in ("GET", "HEAD") and navigation:
        return None  # a link followed to the page: it carries no data of another site
    return f"a {site} request (Sec-Fetch-Site: {site}) is refused"


def check_request(
    guard: Guard, method: str, path: str, scheme: str, headers: Mapping[str, str]
) -> Refusal | None:
    """Why this request is refused, or None. ``headers``: lowercase names."""
    method = method.upper()
    raw_host = headers.get("host")
    host = split_host(raw_host) if raw_host is not None else None
    if host is None:
        return Refusal(400, f"a missing or malformed Host header ({raw_host!r})")
    name, port = host
    if not guard.allows_host(name):
        return Refusal(
            421, f"Host {raw_host!r} is not this server's (allowed: loopback names, "
            f"{', '.join(sorted(guard.hosts)) or 'no others'}; see --allow-host)",
        )  # fmt: skip
    origin = headers.get("origin")
    own = (scheme, name, port or _DEFAULT_PORTS.get(scheme, 0))
    if origin is not None and _origin(origin) != own:
        return Refusal(403, f"a cross-origin request (Origin {origin!r}) is refused")
    cross = _cross_site(method, headers)
    if cross is not None:
        return Refusal(403, cross)
    if guard.token is not None and path not in guard.open_paths:
        kind, _, given = headers.get("authorization", "").partition(" ")
        if kind.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), guard.token.encode()
        ):
            return Refusal(401, "a bearer token is required (Authorization: Bearer <token>)")
    if method in _BODY_METHODS:
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            return Refusal(415, f"the body must be application/json, not {media or 'untyped'}")
    return None


class GuardMiddleware:
    """ASGI middleware: ``check_request`` on every HTTP request, a JSON ``{"detail"}``
    refusal in place of the app's answer."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        refusal = None
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.decode("latin-1").lower()
            if name in headers and name in _CHECKED:
                refusal = Refusal(400, f"the {name} header is given twice")
            headers[name] = raw_value.decode("latin-1")
        refusal = refusal or check_request(
            self.guard, scope["method"], scope["path"], scope.get("scheme", "http"), headers
        )
        if refusal is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": refusal.reason}).encode()
        extra = [(b"www-authenticate", b"Bearer")] if refusal.status == 401 else []
        await send({"type": "http.response.start", "status": refusal.status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            *extra]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


def load_token(path: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The bearer token: the file's first line, else ``CODEALIGN_TOKEN``, else None."""
    if path is not None:
        try:
            text = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the token file ({exc})", path=path) from None
        where = str(path)
    else:
        text, where = environ.get(TOKEN_ENV, ""), TOKEN_ENV
        if not text.strip():
            return None
    lines = text.strip().splitlines()
    token = lines[0].strip() if lines else ""
    if len(token) < MIN_TOKEN_CHARS or not all(33 <= ord(c) < 127 for c in token):
        raise InputError(
            f"{where}: the token must be at least {MIN_TOKEN_CHARS} visible ASCII characters "
            "(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return token


@dataclass(frozen=True)
class WebOptions:
    """What the shared flags say: who may call and whether to speak TLS."""

    allow_hosts: tuple[str, ...] = ()
    token: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    def uvicorn_kwargs(self) -> dict[str, Any]:
        return {"ssl_certfile": self.tls_cert, "ssl_keyfile": self.tls_key} if self.tls_cert else {}


def add_web_flags(p: argparse.ArgumentParser) -> None:
    """The access flags both servers take."""
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a Host name clients may use besides loopback and --host "
                   "(repeatable; others get 421: the DNS-rebinding defence)")  # fmt: skip
    p.add_argument("--token-file", metavar="PATH",
                   help=f"require 'Authorization: Bearer <token>', the token this file holds "
                   f"(or ${TOKEN_ENV})")  # fmt: skip
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate")
    p.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    p.add_argument("--allow-no-token", action="store_true",
                   help="serve a non-loopback --host without a token (a trusted network "
                   "only: whoever reaches the port may call it)")  # fmt: skip


def web_options(args: argparse.Namespace, what: str) -> WebOptions:
    """The flags checked: a token off loopback unless --allow-no-token (refused
    otherwise), TLS files given together, a warning for a token sent in clear."""
    token = load_token(args.token_file)
    if (args.tls_cert is None) != (args.tls_key is None):
        raise InputError("--tls-cert and --tls-key go together")
    for pem in (args.tls_cert, args.tls_key):
        if pem is not None and not Path(pem).is_file():
            raise InputError("no such file", path=pem)
    if args.host in WILDCARDS and not args.allow_host:
        print(f"codealign: note: on {args.host or 'every address'}, clients must name this "
              "machine by a loopback name or an --allow-host name (others get 421)",
              file=sys.stderr)  # fmt: skip
    if not is_loopback(args.host):
        if token is None and not args.allow_no_token:
            raise InputError(
                f"--host {args.host} without a token: anyone who reaches it could use {what}. "
                f"Give --token-file (or ${TOKEN_ENV}), or --allow-no-token on a trusted network"
            )
        if token is None:
            print(f"codealign: WARNING: serving on {args.host} without a token: anyone who "
                  f"reaches it can use {what}; keep it on a trusted network",
                  file=sys.stderr)  # fmt: skip
        elif args.tls_cert is None:
            print(f"codealign: warning: the token crosses the network in clear on "
                  f"{args.host} (--tls-cert, --tls-key)", file=sys.stderr)  # fmt: skip
    return WebOptions(tuple(args.allow_host), token, args.tls_cert, args.tls_key)
