"""The labelling API against browser-shaped misuse: other sites and foreign Hosts
refused before anything is written, the token, strictly typed posts, whole annotator
names, hidden characters warned about, and a huge pair that never holds up the others."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from fastapi.testclient import TestClient

from codealign.annotate.app import create_app
from codealign.annotate.store import LabelStore, ProposedPair, read_pairs
from codealign.cli import main
from codealign.web_guard import Guard
from tests.annotate.test_app import serve

TOKEN = "label-token-0123456789abcdef"
JSON = {"content-type": "application/json"}
LABEL = {"annotator": "ann", "pair_id": "p00", "side": "left"}


def client(store: LabelStore, token: str | None = None) -> TestClient:
    """The app as TestClient reaches it (Host: testserver, named here, never by default)."""
    guard = Guard(hosts=frozenset({"testserver"}), token=token, open_paths=frozenset({"/"}))
    return TestClient(create_app(store, guard))


@pytest.fixture()
def store(pairs_file: Path, tmp_path: Path) -> LabelStore:
    return LabelStore(read_pairs(pairs_file), tmp_path / "labels.jsonl")


def test_other_sites_foreign_hosts_and_bodies_not_json_are_refused(store: LabelStore) -> None:
    assert TestClient(create_app(store)).get("/").status_code == 421  # the default guard
    app = client(store)
    body = json.dumps(LABEL)
    cases = [
        ({"content-type": "text/plain"}, 415),  # fetch(..., {mode: "no-cors"}) from a page
        ({"content-type": "application/x-www-form-urlencoded"}, 415),  # a <form> post
        ({"content-type": "multipart/form-data; boundary=x"}, 415),
        ({**JSON, "origin": "http://evil.example"}, 403),
        ({**JSON, "origin": "http://127.0.0.1:9999"}, 403),
        ({**JSON, "sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors"}, 403),
        ({**JSON, "sec-fetch-site": "same-site", "sec-fetch-mode": "cors"}, 403),
        ({**JSON, "host": "attacker.example"}, 421),  # DNS rebinding
    ]
    for headers, code in cases:
        for path in ("/api/label", "/api/undo"):
            response = app.post(path, content=body, headers=headers)
            assert response.status_code == code and response.json()["detail"], (path, headers)
    assert app.get("/api/next?annotator=ann", headers={"host": "evil.example"}).status_code == 421
    assert not store.path.exists() and store.labels() == []  # nothing written
    own = {**JSON, "origin": "http://testserver", "sec-fetch-site": "same-origin"}
    assert app.post("/api/label", content=body, headers=own).status_code == 200
    assert len(store.labels()) == 1


def test_the_page_is_never_framed_and_sends_json(store: LabelStore) -> None:
    response = client(store).get("/")
    assert response.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert '"content-type": "application/json"' in response.text


def test_a_token_guards_the_api_but_not_the_page(store: LabelStore) -> None:
    app = client(store, TOKEN)
    assert app.get("/").status_code == 200  # the page holds no data; its calls need the token
    assert app.get("/api/next?annotator=ann").status_code == 401
    assert (
        app.post("/api/label", json=LABEL, headers={"authorization": "Bearer x"}).status_code == 401
    )
    assert not store.path.exists()
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert app.get("/api/next?annotator=ann", headers=auth).json()["pair"]["pair_id"] == "p00"
    assert app.post("/api/label", json=LABEL, headers=auth).status_code == 200


@pytest.mark.parametrize(
    "post",
    [
        {**LABEL, "side": 1},
        {**LABEL, "side": True},
        {**LABEL, "side": ["left"]},
        {**LABEL, "pair_id": 0},
        {**LABEL, "pair_id": False},
        {**LABEL, "pair_id": None},
        {**LABEL, "annotator": 7},
        {**LABEL, "annotator": True},
        {**LABEL, "extra": 1},
        {"annotator": "ann", "pair_id": "p00"},
        [LABEL],
        "p00",
    ],
)
def test_posts_of_the_wrong_types_get_422(store: LabelStore, post: object) -> None:
    response = client(store).post("/api/label", json=post)
    assert response.status_code == 422 and response.json()["detail"]
    for undo in ({"annotator": 1}, {"annotator": None}, {"annotator": "ann", "x": 1}):
        assert client(store).post("/api/undo", json=undo).status_code == 422
    assert not store.path.exists()


@pytest.mark.parametrize("name", ["alice\n", " alice", "alice ", "al\nice", "", "a" * 65, "<b>"])
def test_annotator_names_are_matched_whole(store: LabelStore, name: str) -> None:
    """``re.match`` with ``$`` let "alice\\n" by: a second annotator who looks like alice."""
    app = client(store)
    assert app.post("/api/label", json={**LABEL, "annotator": name}).status_code == 422
    assert app.get("/api/next", params={"annotator": name}).status_code == 422
    assert app.post("/api/undo", json={"annotator": name}).status_code == 422
    assert not store.path.exists()


def test_alice_and_alice2_are_two_annotators(store: LabelStore) -> None:
    app = client(store)
    for pair in ("p00", "p01"):
        assert app.post(
            "/api/label", json={**LABEL, "annotator": "alice2", "pair_id": pair}
        ).is_success
    state = app.get("/api/next", params={"annotator": "alice"}).json()
    assert (state["done"], state["pair"]["pair_id"]) == (0, "p00")
    assert app.post("/api/undo", json={"annotator": "alice"}).json()["undone"] is None
    assert app.get("/api/next", params={"annotator": "alice2"}).json()["done"] == 2


def test_hidden_characters_come_with_a_warning(tmp_path: Path) -> None:
    """Trojan Source's early return: an RLO and a PDI hide where the string ends."""
    trojan = (
        'def f(user):\n    if user != "admin\u202e \u2066# check\u2069 \u2066":\n        return 1\n'
    )
    pair = ProposedPair("p00", "t\u200b1", "doc\u00ad", "def f(user):\n    return 1\n", trojan)
    store = LabelStore([pair], tmp_path / "labels.jsonl")
    shown = client(store).get("/api/next", params={"annotator": "ann"}).json()["pair"]
    side = "left" if shown["left"]["code"] == trojan else "right"
    assert set(shown["hidden"]) == {side, "prompt", "task_id"}
    found = shown["hidden"][side]
    assert found["count"] == 4
    assert [(c["line"], c["char"]) for c in found["chars"]] == [
        (2, "U+202E"), (2, "U+2066"), (2, "U+2069"), (2, "U+2066")]  # fmt: skip
    assert shown["hidden"]["prompt"]["chars"][0]["name"] == "SOFT HYPHEN"
    plain = LabelStore([ProposedPair("q", "t", "", "a\n", "b\n")], tmp_path / "other.jsonl")
    assert (
        client(plain).get("/api/next", params={"annotator": "ann"}).json()["pair"]["hidden"] == {}
    )


def test_a_pair_read_from_text_that_is_not_unicode_is_labelled(tmp_path: Path) -> None:
    """The label is written and the answer is JSON: no 500 once the label is in."""
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_bytes(b'{"pair_id": "p\\ud800", "task_id": "t", "prompt": "\xff", "a": "x\\udc00",'
                      b' "b": "y"}\n')  # fmt: skip
    store = LabelStore(read_pairs(pairs), tmp_path / "labels.jsonl")
    app = client(store)
    shown = app.get("/api/next", params={"annotator": "ann"}).json()["pair"]
    assert (shown["pair_id"], shown["prompt"]) == ("p\ufffd", "\ufffd")
    response = app.post("/api/label", json={**LABEL, "pair_id": "p\ufffd"})
    assert response.status_code == 200 and response.json()["label"]["pair_id"] == "p\ufffd"
    assert json.loads(store.path.read_text("utf-8"))["pair_id"] == "p\ufffd"


def test_a_huge_pair_never_holds_up_the_other_annotators(tmp_path: Path) -> None:
    """100,000 repeated lines on either side: its diff is worked out off the event loop
    and within the budget, and another client's request is answered meanwhile."""
    many = "x = 1\n" * 100_000
    huge = ProposedPair("big", "t", "", "y\n" + many, many + "z\n")
    store = LabelStore([huge], tmp_path / "labels.jsonl")
    for url in serve(store):
        started = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            params = {"annotator": "ann"}
            waiting = pool.submit(requests.get, f"{url}/api/next", params=params, timeout=30)
            for _ in range(5):
                asked = time.monotonic()
                assert requests.get(f"{url}/api/agreement", timeout=5).status_code == 200
                assert time.monotonic() - asked < 1
            pair = waiting.result().json()["pair"]
        assert time.monotonic() - started < 10
        assert len(pair["left"]["marks"]) == len(pair["right"]["marks"]) == 100_001


def test_annotate_off_loopback_without_a_token_is_refused(
    pairs_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("CODEALIGN_TOKEN", raising=False)
    labels = tmp_path / "labels.jsonl"
    argv = ["annotate", "--pairs", str(pairs_file), "--labels", str(labels), "--host", "0.0.0.0"]
    assert main(argv) == 2
    assert "--allow-no-token" in capsys.readouterr().err and not labels.exists()
