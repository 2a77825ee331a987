"""The registry: every degradation registered once, with the weights and the order that
``degrade`` uses (both are part of the generated data)."""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable

import pytest

from codealign.readability.degrade import registry
from codealign.readability.degrade.registry import (
    DEGRADATIONS,
    MODULES,
    Degradation,
    degrade,
    table,
)
from codealign.readability.pairs import DATA_VERSION

# What DATA_VERSION 1 was generated with: changing either changes every pair, so it must
# come with a new DATA_VERSION (and these tables updated).
ORDER_V1 = (
    "rename",
    "strip_docstrings",
    "strip_comments",
    "strip_type_hints",
    "cram",
    "inconsistent_format",
    "if_true",
    "redundant_else",
    "else_pass",
    "nested_ifs",
    "bool_return",
    "temp_return",
    "temp_vars",
    "flag_var",
    "bool_compare",
    "index_loop",
    "magic_numbers",
    "dead_branch",
    "unreachable_code",
    "unused_assign",
    "unused_import",
    "commented_code",
)
WEIGHTS_V1 = {"rename": 3.0, "strip_docstrings": 2.0, "strip_type_hints": 2.0, "cram": 2.0}

PROGRAM = 'def f(values: list[int]) -> int:\n    """Sum."""\n    return sum(values)\n'


def _degradations_defined_in(module: object) -> list[Callable[..., object]]:
    """The module's own public functions shaped like a degradation: (source, rng)."""
    return [
        fn
        for name, fn in inspect.getmembers(module, inspect.isfunction)
        if not name.startswith("_")
        and fn.__module__ == getattr(module, "__name__", None)
        and list(inspect.signature(fn).parameters) == ["source", "rng"]
    ]


def test_every_degradation_is_registered_exactly_once() -> None:
    defined = [fn for module in MODULES for fn in _degradations_defined_in(module)]
    registered = [entry.apply for entry in DEGRADATIONS.values()]
    assert len(set(registered)) == len(registered), "a function is registered twice"
    assert sorted(fn.__name__ for fn in defined) == sorted(fn.__name__ for fn in registered)
    assert set(defined) == set(registered)
    for name, entry in DEGRADATIONS.items():
        assert entry.name == name == entry.apply.__name__  # no entry points at another one


def test_each_registered_function_is_reachable_from_its_module() -> None:
    modules = {module.__name__: module for module in MODULES}
    for entry in DEGRADATIONS.values():
        module = modules[entry.apply.__module__]
        assert getattr(module, entry.apply.__name__) is entry.apply


def test_the_table_refuses_duplicates_and_bad_weights() -> None:
    entry = Degradation("x", lambda source, rng: None)
    with pytest.raises(ValueError, match="registered twice"):
        table([entry, Degradation("x", lambda source, rng: source)])
    with pytest.raises(ValueError, match="positive weight"):
        table([Degradation("y", entry.apply, weight=0.0)])


def test_order_and_weights_are_those_the_data_was_made_with() -> None:
    assert DATA_VERSION == 1, "new data version: update ORDER_V1 and WEIGHTS_V1 here"
    assert tuple(DEGRADATIONS) == ORDER_V1
    assert registry.weights() == {name: WEIGHTS_V1.get(name, 1.0) for name in ORDER_V1}


def _tried(monkeypatch: pytest.MonkeyPatch, seed: int) -> list[str]:
    """The order ``degrade`` tries the registered degradations in, none applying."""
    tried: list[str] = []

    def spy(name: str) -> Callable[[str, random.Random], str | None]:
        def apply(source: str, rng: random.Random) -> str | None:
            tried.append(name)
            return None

        return apply

    spies = [Degradation(e.name, spy(e.name), e.weight) for e in DEGRADATIONS.values()]
    with monkeypatch.context() as patch:
        patch.setattr(registry, "DEGRADATIONS", table(spies))
        assert degrade(PROGRAM, random.Random(seed)) is None
    return tried


def _expected_order(seed: int, weights: dict[str, float]) -> list[str]:
    """Weighted order without replacement, drawn as ``degrade`` draws it."""
    rng = random.Random(seed)
    rng.randint(1, 4)  # k
    keys = {name: rng.random() ** (1 / weight) for name, weight in weights.items()}
    return sorted(weights, key=lambda name: keys[name], reverse=True)


def test_degrade_uses_the_registered_weights_in_the_registered_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for seed in range(50):
        tried = _tried(monkeypatch, seed)
        assert tried == _expected_order(seed, registry.weights()), seed
    # and the weights matter: unweighted, some of these orders would differ
    unweighted = dict.fromkeys(registry.weights(), 1.0)
    assert any(_tried(monkeypatch, s) != _expected_order(s, unweighted) for s in range(50))


def test_degrade_reads_the_table_when_called(monkeypatch: pytest.MonkeyPatch) -> None:
    only = Degradation("upper", lambda source, rng: source.upper())
    monkeypatch.setattr(registry, "DEGRADATIONS", table([only]))
    assert degrade("x = 1\n", random.Random(0)) == ("X = 1\n", ("upper",))
