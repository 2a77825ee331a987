"""The guard both web servers share: which requests it refuses, worked by hand (Host,
Origin, fetch metadata, token, content type), the middleware over HTTP, the token's
sources and the off-host rule of the shared flags."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from codealign.errors import InputError
from codealign.web_guard import (
    TOKEN_ENV,
    Guard,
    GuardMiddleware,
    add_web_flags,
    check_request,
    load_token,
    split_host,
    web_options,
)

TOKEN = "s3cret-token-0123456789"
LOCAL = {"host": "127.0.0.1:8765"}


def status(guard: Guard, method: str, headers: dict[str, str], path: str = "/api",
           scheme: str = "http") -> int | None:  # fmt: skip
    refusal = check_request(guard, method, path, scheme, headers)
    return None if refusal is None else refusal.status


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("localhost", ("localhost", None)),
        ("LocalHost.:8765", ("localhost", 8765)),
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("[::1]:8765", ("::1", 8765)),
        ("[::1]", ("::1", None)),
        ("::1", ("::1", None)),  # bare IPv6: no port can be told apart
        ("localhost:", None),
        ("localhost:99999", None),
        ("localhost:8a", None),
        ("[::1]x", None),
        ("", None),
    ],
)
def test_split_host(value: str, parsed: tuple[str, int | None] | None) -> None:
    assert split_host(value) == parsed


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost", True), ("localhost:8765", True), ("127.0.0.1", True),
        ("127.0.0.2:1", True),  # 127/8 is loopback; no DNS name can rebind to a literal
        ("[::1]:8765", True), ("::1", True), ("LOCALHOST.", True),
        ("evil.example", False), ("evil.example:8765", False), ("localhost.evil.example", False),
        ("sub.localhost", False), ("10.0.0.5", False), ("0.0.0.0:8765", False),
    ],
)  # fmt: skip
def test_a_foreign_host_gets_421(host: str, allowed: bool) -> None:
    assert status(Guard(), "GET", {"host": host}) == (None if allowed else 421)


def test_the_bound_host_and_allowed_names_are_hosts_too() -> None:
    guard = Guard.for_bind("10.0.0.5", ["Node0", "[fd00::1]"])
    assert guard.hosts == {"10.0.0.5", "node0", "fd00::1"}
    for host in ("10.0.0.5:8000", "node0", "NODE0:1", "[fd00::1]:5000", "localhost"):
        assert status(guard, "GET", {"host": host}) is None, host
    assert status(guard, "GET", {"host": "node1"}) == 421
    assert Guard.for_bind("0.0.0.0").hosts == frozenset()  # nobody names a wildcard
    assert Guard.for_bind("::", ["x"]).hosts == {"x"}


def test_a_missing_or_malformed_host_gets_400() -> None:
    assert status(Guard(), "GET", {}) == 400
    refusal = check_request(Guard(), "GET", "/", "http", {"host": "a b:x"})
    assert refusal is not None and refusal.status == 400 and "Host" in refusal.reason


@pytest.mark.parametrize(
    ("scheme", "host", "origin", "refused"),
    [
        ("http", "127.0.0.1:8765", "http://127.0.0.1:8765", False),  # the page's own
        ("http", "127.0.0.1:8765", "HTTP://127.0.0.1:8765", False),
        ("http", "127.0.0.1", "http://127.0.0.1:80", False),  # default port either way
        ("http", "127.0.0.1:80", "http://127.0.0.1", False),
        ("https", "localhost", "https://localhost:443", False),
        ("http", "[::1]:8765", "http://[::1]:8765", False),
        ("http", "127.0.0.1:8765", "http://127.0.0.1:9000", True),  # another local app
        ("http", "127.0.0.1:8765", "http://localhost:8765", True),  # another origin
        ("http", "127.0.0.1:8765", "https://127.0.0.1:8765", True),
        ("https", "127.0.0.1:8765", "http://127.0.0.1:8765", True),
        ("http", "127.0.0.1:8765", "http://evil.example", True),
        ("http", "127.0.0.1:8765", "null", True),  # sandboxed frames, file:// pages
        ("http", "127.0.0.1:8765", "http://127.0.0.1:8765/path", True),
        ("http", "127.0.0.1:8765", "", True),
    ],
)  # fmt: skip
def test_an_origin_other_than_the_servers_own_gets_403(
    scheme: str, host: str, origin: str, refused: bool
) -> None:
    for method in ("GET", "POST"):
        headers = {"host": host, "origin": origin, "content-type": "application/json"}
        assert status(Guard(), method, headers, scheme=scheme) == (403 if refused else None)


@pytest.mark.parametrize(
    ("method", "site", "mode", "refused"),
    [
        ("POST", "cross-site", "no-cors", True),
        ("POST", "same-site", "cors", True),  # another port of 127.0.0.1 is same-site
        ("POST", "cross-site", "navigate", True),  # a form posted from another site
        ("POST", "same-origin", "cors", False),
        ("POST", "none", "navigate", False),
        ("GET", "cross-site", "navigate", False),  # a link followed to the page
        ("GET", "cross-site", "no-cors", True),  # an <img> or <script> of another site
        ("GET", "same-site", "cors", True),
        ("PUT", "cross-site", "cors", True),
    ],
)
def test_fetch_metadata_of_another_site_gets_403(
    method: str, site: str, mode: str, refused: bool
) -> None:
    headers = {**LOCAL, "sec-fetch-site": site, "sec-fetch-mode": mode,
               "content-type": "application/json"}  # fmt: skip
    assert status(Guard(), method, headers) == (403 if refused else None)


def test_a_token_is_asked_for_on_every_path_but_the_open_ones() -> None:
    guard = Guard(token=TOKEN, open_paths=frozenset({"/health"}))
    assert status(guard, "GET", LOCAL) == 401
    assert status(guard, "GET", LOCAL, path="/health") is None
    for given, expected in [
        (f"Bearer {TOKEN}", None), (f"bearer {TOKEN}", None), (f"Bearer  {TOKEN} ", None),
        (f"Bearer {TOKEN}x", 401), (f"Bearer {TOKEN[:-1]}", 401), ("Bearer ", 401),
        (f"Basic {TOKEN}", 401), (TOKEN, 401),
    ]:  # fmt: skip
        assert status(guard, "GET", {**LOCAL, "authorization": given}) == expected, given
    # The Host and the origin come first: a token does not let a foreign page in.
    assert status(guard, "GET", {"host": "evil.example", "authorization": f"Bearer {TOKEN}"}) == 421


@pytest.mark.parametrize(
    ("method", "content_type", "refused"),
    [
        ("POST", "application/json", False),
        ("POST", "Application/JSON; charset=utf-8", False),
        ("POST", "text/plain", True),  # what a page may send cross-site without asking
        ("POST", "application/x-www-form-urlencoded", True),
        ("POST", "multipart/form-data; boundary=x", True),
        ("POST", "application/jsonx", True),
        ("POST", None, True),
        ("PATCH", "text/plain", True),
        ("GET", None, False),
        ("GET", "text/plain", False),
    ],
)
def test_a_body_that_is_not_json_gets_415(
    method: str, content_type: str | None, refused: bool
) -> None:
    headers = dict(LOCAL) if content_type is None else {**LOCAL, "content-type": content_type}
    assert status(Guard(), method, headers) == (415 if refused else None)


def guarded_client(guard: Guard) -> TestClient:
    app = FastAPI()
    app.add_middleware(GuardMiddleware, guard=guard)

    @app.post("/echo")
    async def echo() -> dict[str, bool]:
        return {"ok": True}

    return TestClient(app)


def test_the_middleware_answers_each_refusal_with_its_reason() -> None:
    client = guarded_client(Guard(hosts=frozenset({"testserver"}), token=TOKEN))
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert client.post("/echo", json={}, headers=auth).json() == {"ok": True}
    cases = [
        ({"host": "evil.example"}, 421, "Host 'evil.example' is not this server's"),
        ({"origin": "http://evil.example"}, 403, "cross-origin"),
        ({"sec-fetch-site": "cross-site"}, 403, "cross-site"),
        ({"authorization": "Bearer nope"}, 401, "bearer token"),
        ({"content-type": "text/plain"}, 415, "application/json"),
    ]
    for headers, code, reason in cases:
        response = client.post("/echo", content=b"{}", headers={
            **auth, "content-type": "application/json", **headers})  # fmt: skip
        assert response.status_code == code and reason in response.json()["detail"], headers
    assert client.post("/echo", json={}).headers["www-authenticate"] == "Bearer"
    twice = [("host", "testserver"), ("host", "evil.example"), ("content-type", "application/json")]
    response = client.post("/echo", content=b"{}", headers=twice)
    assert response.status_code == 400 and "twice" in response.json()["detail"]


def test_the_token_from_a_file_or_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"{TOKEN}\n")
    assert load_token(str(path), {}) == TOKEN
    assert load_token(None, {TOKEN_ENV: f" {TOKEN} "}) == TOKEN
    assert load_token(None, {}) is None
    assert load_token(None, {TOKEN_ENV: ""}) is None
    for bad in ("short", "x" * 15, "é" * 20, "two words here, long enough"):
        path.write_text(bad)
        with pytest.raises(InputError, match="at least 16 visible ASCII"):
            load_token(str(path), {})
    with pytest.raises(InputError, match="cannot read the token file"):
        load_token(str(tmp_path / "missing"), {})


def flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    add_web_flags(parser)
    return parser.parse_args(argv)


def test_off_loopback_needs_a_token_or_a_flag_that_says_the_network_is_trusted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    token = tmp_path / "token"
    token.write_text(TOKEN)
    assert web_options(flags(), "it").token is None  # loopback: as before
    with pytest.raises(InputError, match=r"--host 0\.0\.0\.0 without a token.*--allow-no-token"):
        web_options(flags("--host", "0.0.0.0"), "it")
    web_options(flags("--host", "0.0.0.0", "--allow-no-token"), "it")
    err = capsys.readouterr().err
    assert "WARNING: serving on 0.0.0.0 without a token" in err
    assert "a loopback name or an --allow-host name" in err  # else every client gets 421
    options = web_options(flags("--host", "10.0.0.5", "--token-file", str(token),
                                "--allow-host", "node0"), "it")  # fmt: skip
    assert (options.token, options.allow_hosts, options.scheme) == (TOKEN, ("node0",), "http")
    assert "in clear" in capsys.readouterr().err
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert web_options(flags("--host", "10.0.0.5"), "it").token == TOKEN
    with pytest.raises(InputError, match="go together"):
        web_options(flags("--tls-cert", str(token)), "it")
    with pytest.raises(InputError, match="no such file"):
        web_options(flags("--tls-cert", str(token), "--tls-key", str(tmp_path / "nope")), "it")
    tls = web_options(flags("--tls-cert", str(token), "--tls-key", str(token)), "it")
    assert tls.scheme == "https"
    assert tls.uvicorn_kwargs() == {"ssl_certfile": str(token), "ssl_keyfile": str(token)}
