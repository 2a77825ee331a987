"""The labelling page's server over loopback: concurrent annotators, malformed posts (a
4xx, nothing written), a label for a pair that does not exist; the page driven by
keyboard alone in headless Chromium (Playwright), reloaded mid-way; and a page of
another origin in the same browser trying to label or to run code (refused), with a
DNS name rebound to 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from codealign.annotate.app import create_app
from codealign.annotate.store import LabelStore, left_side, read_pairs
from codealign.rewards.verifier import Answer, Verdict, Verifier
from codealign.tasks.tiny import tiny_tasks
from tests.annotate.conftest import make_pairs

CHROMIUM = "/usr/bin/chromium"


def serve_app(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port while the generator is open."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def serve(store: LabelStore) -> Iterator[str]:
    yield from serve_app(create_app(store))


@pytest.fixture()
def app_url(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    labels = tmp_path / "labels.jsonl"
    store = LabelStore(read_pairs(make_pairs(tmp_path / "pairs.jsonl", 12)), labels)
    for url in serve(store):
        yield url, labels


def test_concurrent_annotators_and_bad_posts(app_url: tuple[str, Path]) -> None:
    url, labels = app_url

    programs = {p.pair_id: p.a for p in read_pairs(labels.parent / "pairs.jsonl")}

    def annotate(name: str) -> int:
        """Every annotator prefers program a (wherever it is shown), every third a tie."""
        state = requests.get(f"{url}/api/next", params={"annotator": name}, timeout=10).json()
        count = 0
        while state["pair"] is not None:
            shown = state["pair"]
            on_left = shown["left"]["code"] == programs[shown["pair_id"]]
            side = ("left" if on_left else "right") if count % 3 else "tie"
            post = {"annotator": name, "pair_id": state["pair"]["pair_id"], "side": side}
            state = requests.post(f"{url}/api/label", json=post, timeout=10).json()
            count += 1
        return count

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(annotate, ["ann", "bob", "cid", "dee"])) == [12] * 4
    rows = [json.loads(line) for line in labels.read_text().splitlines()]
    assert len(rows) == 48 and len({(r["pair_id"], r["annotator"]) for r in rows}) == 48
    assert {r["choice"] for r in rows} == {"a", "tie"}  # by program, whatever the side
    assert {r["left"] for r in rows} == {"a", "b"}  # and the sides did differ
    for r in rows:
        assert r["left"] == left_side(r["pair_id"], r["annotator"])
    before = labels.read_bytes()
    bad = [
        ("/api/label", b"{oops", 422),
        ("/api/label", {"annotator": "ann", "pair_id": "p00", "side": "up"}, 422),
        ("/api/label", {"annotator": "", "pair_id": "p00", "side": "left"}, 422),
        ("/api/label", {"annotator": "ann", "pair_id": "p00", "side": "left", "x": 1}, 422),
        ("/api/label", {"annotator": "ann", "pair_id": "nope", "side": "left"}, 404),
        ("/api/undo", {"annotator": "<script>"}, 422),
    ]
    for path, body, status in bad:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = requests.post(f"{url}{path}", data=data, timeout=10,
                                 headers={"content-type": "application/json"})  # fmt: skip
        assert response.status_code == status, (body, response.text)
        assert response.json()["detail"]
    assert labels.read_bytes() == before  # nothing written
    report = requests.get(f"{url}/api/agreement", timeout=10).json()
    assert report["pairs_labelled"] == 12 and len(report["between"]) == 6
    assert all(row["agreement"] == 1.0 for row in report["between"])


def browser_missing() -> str | None:
    import importlib.util

    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed"
    if not os.path.exists(CHROMIUM):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def require_browser() -> None:
    """Skip where there is no browser; in CI, which installs one, fail instead."""
    missing = browser_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)


@pytest.mark.browser
def test_the_page_by_keyboard_alone_in_headless_chromium(
    app_url: tuple[str, Path], tmp_path: Path
) -> None:
    """Left, right, tie, skip, undo, a reload mid-way, then on to the end: the labels file
    holds exactly what was chosen, by which program (not which side)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    url, labels = app_url
    keys = ["ArrowLeft", "ArrowRight", "t", "s", "ArrowDown", "u", "ArrowRight"]
    after_reload = ["ArrowLeft"] * 5 + ["Backspace", "ArrowRight", "ArrowLeft", "ArrowRight"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 760})
        page.goto(f"{url}/?annotator=ann")
        page.wait_for_selector("#left .ln")

        def press(key: str) -> None:
            before = page.inner_text("#flash")
            page.keyboard.press(key)
            page.wait_for_function("b => document.querySelector('#flash').textContent !== b"
                                   " || false", arg=before)  # fmt: skip
            page.evaluate("document.querySelector('#flash').textContent = ''")

        for key in keys:
            press(key)
        page.screenshot(path=str(tmp_path / "annotate.png"))
        page.reload()
        page.wait_for_selector("#left .ln")
        assert page.inner_text("#count") == "5 / 12"
        for key in after_reload:
            press(key)
        assert page.inner_text("#count") == "12 / 12" or page.is_visible("#finished")
        browser.close()
    shot = tmp_path / "annotate.png"
    assert shot.stat().st_size > 10_000
    if os.environ.get("CODEALIGN_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["CODEALIGN_KEEP_SCREENSHOT"])
    # What was chosen, pair by pair: undo takes back the latest label (p04's tie, then
    # after the reload p09's left), and the next key labels that pair again.
    chosen = {"p00": "left", "p01": "right", "p02": "tie", "p03": "skip", "p04": "right",
              "p05": "left", "p06": "left", "p07": "left", "p08": "left", "p09": "right",
              "p10": "left", "p11": "right"}  # fmt: skip
    rows = [json.loads(line) for line in labels.read_text().splitlines()]
    assert {r["pair_id"] for r in rows} == set(chosen) and len(rows) == 12
    for r in rows:
        side = chosen[r["pair_id"]]
        left = left_side(r["pair_id"], "ann")
        want = {"left": left, "right": "b" if left == "a" else "a"}.get(side, side)
        assert (r["annotator"], r["choice"], r["left"]) == ("ann", want, left), r


#: The attacker's page: every way a page may send a request to another origin, each
#: outcome noted in ``window.results`` ("blocked": the browser saw an error; "opaque":
#: sent, its answer unreadable), then a form posted into a hidden frame.
EVIL_PAGE = """<!doctype html><meta charset="utf-8">
<iframe name="sink" id="sink"></iframe>
<form id="form" method="POST" action="LABEL/api/label" enctype="text/plain" target="sink">
<input name='{"annotator": "ann", "pair_id": "p00", "side": "left", "x": "' value='"}'></form>
<script>
window.results = {};
async function attempt(name, url, init) {
  try {
    const response = await fetch(url, init);
    window.results[name] = response.type === "opaque" ? "opaque" : String(response.status);
  } catch (error) {
    window.results[name] = "blocked";
  }
}
const json = {"content-type": "application/json"}, plain = {"content-type": "text/plain"};
const label = JSON.stringify({annotator: "ann", pair_id: "p00", side: "left"});
const verify = JSON.stringify({items: [{task_id: "TASK", completion: "    pass\\n"}]});
const reward = JSON.stringify({query: ["x"], labels: ["TASK"]});
(async () => {
  await attempt("label-json", "LABEL/api/label", {method: "POST", headers: json, body: label});
  await attempt("label-simple", "LABEL/api/label",
                {method: "POST", mode: "no-cors", headers: plain, body: label});
  await attempt("undo-simple", "LABEL/api/undo",
                {method: "POST", mode: "no-cors", headers: plain, body: '{"annotator": "ann"}'});
  await attempt("read-next", "LABEL/api/next?annotator=ann", {});
  await attempt("verify-json", "REWARD/verify", {method: "POST", headers: json, body: verify});
  await attempt("verify-simple", "REWARD/verify",
                {method: "POST", mode: "no-cors", headers: plain, body: verify});
  await attempt("reward-simple", "REWARD/get_reward",
                {method: "POST", mode: "no-cors", headers: plain, body: reward});
  await new Promise(resolve => {
    document.getElementById("sink").onload = resolve;
    document.getElementById("form").submit();
  });
  window.done = true;
})();
</script>"""


def serve_dir(folder: Path) -> Iterator[str]:
    """``folder``'s files over plain HTTP on another loopback port: another origin."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.mark.browser
def test_a_page_of_another_origin_cannot_label_or_verify(
    app_url: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page on another port of 127.0.0.1 (same site, another origin) posts to the
    labelling API and to the reward server every way a browser lets it: nothing is
    labelled and nothing verified. A DNS name rebound to 127.0.0.1 gets a 421. The
    labelling page itself still labels, in the same browser."""
    require_browser()
    from playwright.sync_api import sync_playwright

    from codealign.rewards.server import create_app as reward_app

    url, labels = app_url
    task = tiny_tasks("heldout")[0]
    verifier, verified = Verifier([task]), []

    def record(answers: Sequence[Answer], *, score: bool = False) -> list[Verdict]:
        verified.append(answers)
        return []

    monkeypatch.setattr(verifier, "verify", record)
    site = tmp_path / "site"
    site.mkdir()
    for reward_url in serve_app(reward_app(verifier)):
        page_html = EVIL_PAGE.replace("LABEL", url).replace("REWARD", reward_url)
        (site / "evil.html").write_text(page_html.replace("TASK", task.task_id))
        for evil in serve_dir(site):
            with sync_playwright() as p:
                port = url.rsplit(":", 1)[1]
                rebind = "--host-resolver-rules=MAP rebind.test 127.0.0.1"
                browser = p.chromium.launch(
                    executable_path=CHROMIUM, args=["--headless", "--no-sandbox", rebind]
                )
                page = browser.new_page()
                page.goto(f"{evil}/evil.html")
                page.wait_for_function("window.done === true", timeout=20_000)
                results = page.evaluate("window.results")
                rebound = page.goto(f"http://rebind.test:{port}/api/next?annotator=ann")
                assert rebound is not None and rebound.status == 421
                assert not labels.exists() and verified == []
                page.goto(f"{url}/?annotator=ann")  # the page itself, same origin
                page.wait_for_selector("#left .ln")
                page.keyboard.press("ArrowLeft")
                page.wait_for_function("document.querySelector('#count').textContent === '1 / 12'")
                browser.close()
    # Readable answers were never given to the other origin; what was sent was refused.
    assert results == {"label-json": "blocked", "label-simple": "opaque", "undo-simple": "opaque",
                       "read-next": "blocked", "verify-json": "blocked",
                       "verify-simple": "opaque", "reward-simple": "opaque"}  # fmt: skip
    assert verified == []
    rows = [json.loads(line) for line in labels.read_text().splitlines()]
    assert [(r["pair_id"], r["annotator"]) for r in rows] == [("p00", "ann")]


@pytest.mark.browser
def test_hidden_characters_are_shown_marked_under_a_warning(tmp_path: Path) -> None:
    """Trojan Source in one program, a zero-width space in the prompt: the page shows
    each as a marked <U+...> token, never as itself, under a warning naming the line.
    The server asks for a token, which the page takes from its address (#token=)."""
    require_browser()
    from playwright.sync_api import sync_playwright

    from codealign.annotate.store import ProposedPair
    from codealign.web_guard import Guard

    trojan = (
        'def f(user):\n    if user != "admin\u202e \u2066# ok\u2069 \u2066":\n        return 1\n'
    )
    pair = ProposedPair("p00", "t", "Say\u200b hi", "def f(user):\n    return 1\n", trojan)
    store = LabelStore([pair], tmp_path / "labels.jsonl")
    token = "page-token-0123456789abcdef"
    guard = Guard.for_bind("127.0.0.1", token=token, open_paths=("/",))
    for url in serve_app(create_app(store, guard)):
        assert requests.get(f"{url}/api/next?annotator=ann", timeout=5).status_code == 401
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox"]
            )
            page = browser.new_page()
            page.goto(f"{url}/?annotator=ann#token={token}")
            page.wait_for_selector("#hidden-warning:not(.hidden)")
            assert page.evaluate("location.hash") == ""  # the token left the address bar
            warning = page.inner_text("#hidden-warning")
            code = page.inner_text("#left") + page.inner_text("#right")
            marks = page.eval_on_selector_all(".hid", "nodes => nodes.map(n => n.textContent)")
            prompt = page.inner_text("#prompt")
            browser.close()
    assert "line 2: U+202E right-to-left override" in warning and "5 invisible" in warning
    assert marks == ["<U+200B>", "<U+202E>", "<U+2066>", "<U+2069>", "<U+2066>"]
    assert not any(c in code + prompt for c in "\u202e\u2066\u2069\u200b")
    assert 'user != "admin<U+202E> <U+2066># ok<U+2069> <U+2066>":' in code
