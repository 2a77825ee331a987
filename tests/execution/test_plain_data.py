"""The plain-data codec: the only thing that crosses between candidate and judge."""

from __future__ import annotations

import json
import math
import pathlib

import pytest

from codealign.sandbox.plain_data import Caps, Malformed, Unserializable, decode, encode


def roundtrip(value: object) -> object:
    return decode(json.loads(json.dumps(encode(value))))


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -7,
        2**200,
        -(2**64),
        1.5,
        -0.0,
        1e308,
        2 + 3j,
        "",
        "héllo\udc80",
        b"\x00\xff",
        [1, [2, (3, 4)]],
        (),
        {"a": 1, 2: [3]},
        {1, 2},
        frozenset({"x"}),
        {(1, 2): frozenset({3})},
        range(1, 10, 2),
    ],
)
def test_exact_types_roundtrip(value: object) -> None:
    back = roundtrip(value)
    assert back == value and type(back) is type(value)


def test_float_specials_roundtrip() -> None:
    assert math.isnan(roundtrip(float("nan")))  # type: ignore[arg-type]
    assert roundtrip(float("inf")) == float("inf") and roundtrip(-math.inf) == -math.inf
    assert str(roundtrip(-0.0)) == "-0.0"


def test_iterators_are_drained() -> None:
    back = roundtrip(x * x for x in range(4))
    assert not isinstance(back, list) and list(back) == [0, 1, 4, 9]  # type: ignore[call-overload]
    assert list(roundtrip(map(str, [1, 2]))) == ["1", "2"]  # type: ignore[call-overload]


def test_rigged_subclasses_arrive_as_their_plain_value() -> None:
    class Liar(int):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = int.__hash__

    class LyingList(list):  # type: ignore[type-arg]
        def __eq__(self, other: object) -> bool:
            return True

    back = roundtrip(Liar(0))
    assert type(back) is int and back == 0 and back != 5
    back_list = roundtrip(LyingList([1]))
    assert type(back_list) is list and back_list != [2]


def test_objects_are_refused() -> None:
    class AlwaysEqual:
        def __eq__(self, other: object) -> bool:
            return True

    with pytest.raises(Unserializable):
        encode(AlwaysEqual())
    with pytest.raises(Unserializable):
        encode([1, object()])
    with pytest.raises(Unserializable):
        encode(lambda: 1)


def test_size_and_depth_limits() -> None:
    nested: list[object] = []
    cursor = nested
    for _ in range(200):
        cursor.append([])
        cursor = cursor[0]  # type: ignore[assignment]
    with pytest.raises(Unserializable):
        encode(nested)
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises(Unserializable):
        encode(cyclic)
    with pytest.raises(Unserializable):
        encode(iter(int, 1))  # endless


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        ["?"],
        ["i"],
        ["i", 1.5],
        ["b", 1],
        ["s", 3],
        ["l", "x"],
        ["d", [[["l", []], ["N"]]]],
        ["f", "zz"],
        ["r", 1, 2],
    ],
)
def test_malformed_data_is_refused(data: object) -> None:
    with pytest.raises(ValueError):
        decode(data)


# --- the judge decodes what a hostile process wrote: every way to make it slow is capped ---


def test_colliding_keys_are_refused_before_building_the_container() -> None:
    modulus = 2**61 - 1  # ints that are multiples of it all hash to 0
    colliding = [["i", str(k * modulus)] for k in range(1, 40)]
    with pytest.raises(Malformed, match="share one hash"):
        decode(["S", colliding])
    with pytest.raises(Malformed, match="share one hash"):
        decode(["d", [[key, ["N"]] for key in colliding]])
    # 32 collisions are allowed; spread keys of any number are fine.
    assert len(decode(["S", colliding[:32]])) == 32
    assert len(decode(["S", [["i", k] for k in range(5000)]])) == 5000


def test_digits_characters_items_and_depth_are_capped() -> None:
    small = Caps(items=100, depth=5, chars=50, digits=10)
    assert decode(["i", "9" * 10], caps=small) == 9_999_999_999
    with pytest.raises(Malformed, match="digits"):
        decode(["i", "9" * 11], caps=small)
    with pytest.raises(Malformed, match="characters"):
        decode(["l", [["s", "x" * 30], ["s", "y" * 30]]], caps=small)
    with pytest.raises(Malformed, match="items"):
        decode(["l", [["N"]] * 101], caps=small)
    deep: list[object] = ["N"]
    for _ in range(6):
        deep = ["l", [deep]]
    with pytest.raises(Malformed, match="deeply"):
        decode(deep, caps=small)


def test_a_range_costs_the_items_it_describes() -> None:
    assert decode(["r", 0, 10, 1], caps=Caps(items=11)) == range(10)
    with pytest.raises(Malformed, match="items"):
        decode(["r", 0, 10**18, 1])
    with pytest.raises(Malformed):
        decode(["r", 0, 10**40, 1])  # its length does not even fit a machine word


def test_handles_and_paths() -> None:
    seen: list[object] = []

    def maker(value: object) -> int:
        seen.append(value)
        return len(seen)

    thing = object()
    data = encode([thing, pathlib.Path("/tmp/x")], maker)
    assert data == ["l", [["h", 1], ["p", "/tmp/x"]]]
    back = decode(data, lambda n: ("handle", n))
    assert back == [("handle", 1), pathlib.Path("/tmp/x")]
    with pytest.raises(Malformed):
        decode(["h", 1])  # no handles where the judge did not ask for them
