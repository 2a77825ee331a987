"""The built-in tiny task family: one-line Python functions for the embedded tiny model.

Every instance is a template plus constants stated in its docstring, so a small model can
learn to copy them from the prompt. Two fixed splits (``tiny-train``, ``tiny-heldout``)
never share an instance (template + constants), and ``sft_examples`` draws supervised
data that never touches a held-out instance, deliberately mixing correct, sloppy and
buggy completions. Generation is trusted code: it executes the reference and bug
variants on the host to pick asserts that tell them apart.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from codealign.tasks.model import AssertsSuite, Task

# Bump whenever generation changes: the tiny model's cache key hashes it.
RECIPE_VERSION = 1

Split = Literal["train", "heldout"]
Kind = Literal["correct", "sloppy", "buggy"]
Consts = tuple[Any, ...]
Args = tuple[str, ...]
Text = Callable[[Consts, Args], str]

_SEED = 1729
_TRAIN_PER_TEMPLATE = 34
_HELDOUT_PER_TEMPLATE = 8
_POOL = 40  # candidate inputs per instance, from which 3-5 asserts are picked
_FROM_TRAIN = 0.5  # share of SFT examples on train tasks; the rest on fresh instances
# Exact SFT mix: 45% behave correctly (a third of them sloppily), 55% are buggy.
_MIX: tuple[tuple[Kind, float], ...] = (("correct", 0.30), ("sloppy", 0.15))
_SLOPPY_BUG = 1 / 3  # buggy completions written in a sloppy style, so style is no tell

_TYPES = {"int": "int", "str": "str", "list": "list[int]", "dict": "dict[str, int]", "key": "str"}
# Parameter names vary per instance so the model must read the signature.
_ARG_NAMES = {
    "int": ("x", "n"),
    "str": ("s", "text"),
    "list": ("xs", "nums"),
    "dict": ("d", "table"),
    "key": ("key", "name"),
}
_VERBS = ("get", "make", "compute", "find", "build", "apply", "calc", "turn", "map", "pick")
_NOUNS = ("value", "result", "item", "total", "answer", "output", "number", "entry", "score")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_DICT_KEYS = ("a", "b", "c", "x", "y", "z")


@dataclass(frozen=True)
class _Template:
    name: str
    family: str
    params: tuple[str, ...]  # parameter roles, keys of _TYPES
    returns: str
    draw: Callable[[random.Random], Consts]
    doc: Text
    body: Text  # the returned expression
    bugs: Callable[[Consts, Args], tuple[str, ...]]  # plausible wrong expressions
    inputs: Callable[[random.Random, Consts], tuple[Any, ...]]
    none_check: Text | None = None  # a natural ``== None`` body, where the template has one


def _word(r: random.Random, lo: int, hi: int, letters: str = _LETTERS) -> str:
    return "".join(r.choice(letters) for _ in range(r.randint(lo, hi)))


def _mixed_case(r: random.Random) -> str:
    return "".join(c.upper() if r.random() < 0.5 else c for c in _word(r, 1, 5))


def _ints(r: random.Random, lo: int, hi: int, n_max: int = 4) -> list[int]:
    return [r.randint(lo, hi) for _ in range(r.randint(1, n_max))]


def _shifted(text: str) -> str:
    """``text`` with its last letter moved one along the alphabet: a wrong-letter bug."""
    return text[:-1] + _LETTERS[(_LETTERS.index(text[-1]) + 1) % 26]


def _affixed(r: random.Random, prefix: str) -> tuple[Any, ...]:
    """Strings that start with, end with, contain or lack ``prefix``."""
    w = _word(r, 0, 3)
    return (r.choice((prefix + w, w + prefix, _word(r, 1, 2) + prefix + w, w)),)


def _lookup(r: random.Random) -> tuple[Any, ...]:
    keys = r.sample(_DICT_KEYS, r.randint(1, 3))
    table = {k: r.randint(0, 20) for k in keys}
    return table, r.choice(keys) if r.random() < 0.5 else r.choice(("q", "w"))


def _table(r: random.Random) -> tuple[Any, ...]:
    return ({k: r.randint(0, 9) for k in r.sample(_DICT_KEYS, r.randint(1, 3))},)


def _clamp_bounds(r: random.Random) -> Consts:
    lo = r.randint(0, 9)
    return lo, r.randint(lo + 2, lo + 15)


def _pick_consts(r: random.Random) -> Consts:
    a, b = r.sample(range(10), 2)
    return r.randint(0, 9), a, b


# fmt: off
_TEMPLATE_LIST = (
    _Template(
        "affine", "arithmetic", ("int",), "int",
        lambda r: (r.randint(2, 9), r.randint(1, 29)),
        lambda c, a: f"Return {a[0]} times {c[0]} plus {c[1]}.",
        lambda c, a: f"{a[0]} * {c[0]} + {c[1]}",
        lambda c, a: (f"{a[0]} * {c[0]} + {c[1] + 1}", f"{a[0]} * {c[0]} - {c[1]}",
                      f"{a[0]} + {c[0]} + {c[1]}", f"{a[0]} * {c[0] + 1} + {c[1]}"),
        lambda r, c: (r.randint(-9, 20),),
    ),
    _Template(
        "shift_scale", "arithmetic", ("int",), "int",
        lambda r: (r.randint(1, 19), r.randint(2, 9)),
        lambda c, a: f"Return {a[0]} minus {c[0]}, times {c[1]}.",
        lambda c, a: f"({a[0]} - {c[0]}) * {c[1]}",
        lambda c, a: (f"{a[0]} - {c[0]} * {c[1]}", f"({a[0]} + {c[0]}) * {c[1]}",
                      f"({a[0]} - {c[0] + 1}) * {c[1]}", f"({a[0]} - {c[0]}) * {c[1] + 1}"),
        lambda r, c: (r.randint(-9, 25),),
    ),
    _Template(
        "suffix", "strings", ("str",), "str",
        lambda r: (_word(r, 2, 3),),
        lambda c, a: f'Return {a[0]} followed by "{c[0]}".',
        lambda c, a: f'{a[0]} + "{c[0]}"',
        lambda c, a: (f'"{c[0]}" + {a[0]}', f'{a[0]} + "{c[0][:-1]}"',
                      f'{a[0]} + "{_shifted(c[0])}"'),
        lambda r, c: (_word(r, 0, 5),),
    ),
    _Template(
        "case_suffix", "strings", ("str",), "str",
        lambda r: (r.choice(("upper", "lower")), _word(r, 1, 2)),
        lambda c, a: f'Return {a[0]} in {c[0]} case followed by "{c[1]}".',
        lambda c, a: f'{a[0]}.{c[0]}() + "{c[1]}"',
        lambda c, a: (f'{a[0]}.{"lower" if c[0] == "upper" else "upper"}() + "{c[1]}"',
                      f'{a[0]} + "{c[1]}"', f"{a[0]}.{c[0]}()"),
        lambda r, c: (_mixed_case(r),),
    ),
    _Template(
        "starts_with", "strings", ("str",), "bool",
        lambda r: (_word(r, 1, 2),),
        lambda c, a: f'Return whether {a[0]} starts with "{c[0]}".',
        lambda c, a: f'{a[0]}.startswith("{c[0]}")',
        lambda c, a: (f'{a[0]}.endswith("{c[0]}")', f'"{c[0]}" in {a[0]}',
                      f'not {a[0]}.startswith("{c[0]}")'),
        lambda r, c: _affixed(r, c[0]),
    ),
    _Template(
        "add_each", "lists", ("list",), "list[int]",
        lambda r: (r.randint(1, 99),),
        lambda c, a: f"Return {a[0]} with {c[0]} added to each element.",
        lambda c, a: f"[v + {c[0]} for v in {a[0]}]",
        lambda c, a: (f"[v - {c[0]} for v in {a[0]}]", f"[v + {c[0] + 1} for v in {a[0]}]",
                      f"[v * {c[0]} for v in {a[0]}]"),
        lambda r, c: (_ints(r, 0, 20),),
    ),
    _Template(
        "keep_greater", "lists", ("list",), "list[int]",
        lambda r: (r.randint(0, 99),),
        lambda c, a: f"Return the elements of {a[0]} that are greater than {c[0]}.",
        lambda c, a: f"[v for v in {a[0]} if v > {c[0]}]",
        lambda c, a: (f"[v for v in {a[0]} if v >= {c[0]}]", f"[v for v in {a[0]} if v < {c[0]}]",
                      f"[v for v in {a[0]} if v > {c[0] + 1}]"),
        lambda r, c: (_ints(r, c[0] - 3, c[0] + 3, 5),),
    ),
    _Template(
        "sum_times", "lists", ("list",), "int",
        lambda r: (r.randint(2, 99),),
        lambda c, a: f"Return the sum of {a[0]} times {c[0]}.",
        lambda c, a: f"sum({a[0]}) * {c[0]}",
        lambda c, a: (f"sum({a[0]}) + {c[0]}", f"sum({a[0]}) * {c[0] + 1}",
                      f"len({a[0]}) * {c[0]}"),
        lambda r, c: (_ints(r, 0, 9),),
    ),
    _Template(
        "get_default", "dicts", ("dict", "key"), "int",
        lambda r: (r.randint(0, 99),),
        lambda c, a: f"Return the value of {a[1]} in {a[0]}, or {c[0]} if it is missing.",
        lambda c, a: f"{a[0]}.get({a[1]}, {c[0]})",
        lambda c, a: (f"{a[0]}.get({a[1]}, {c[0] + 1})", f"{a[0]}.get({a[1]})",
                      f"{a[0]}[{a[1]}]"),
        lambda r, c: _lookup(r),
        lambda c, a: f"    value = {a[0]}.get({a[1]})\n"
                     f"    return {c[0]} if value == None else value\n",
    ),
    _Template(
        "scale_values", "dicts", ("dict",), "dict[str, int]",
        lambda r: (r.randint(2, 99),),
        lambda c, a: f"Return {a[0]} with each value multiplied by {c[0]}.",
        lambda c, a: f"{{k: v * {c[0]} for k, v in {a[0]}.items()}}",
        lambda c, a: (f"{{k: v + {c[0]} for k, v in {a[0]}.items()}}",
                      f"{{k: v * {c[0] + 1} for k, v in {a[0]}.items()}}",
                      f"{{k: v - {c[0]} for k, v in {a[0]}.items()}}"),
        lambda r, c: _table(r),
    ),
    _Template(
        "pick", "conditionals", ("int",), "int",
        _pick_consts,
        lambda c, a: f"Return {c[1]} if {a[0]} is greater than {c[0]}, otherwise {c[2]}.",
        lambda c, a: f"{c[1]} if {a[0]} > {c[0]} else {c[2]}",
        lambda c, a: (f"{c[2]} if {a[0]} > {c[0]} else {c[1]}",
                      f"{c[1]} if {a[0]} >= {c[0]} else {c[2]}",
                      f"{c[1]} if {a[0]} < {c[0]} else {c[2]}",
                      f"{c[1]} if {a[0]} > {c[0] + 1} else {c[2]}"),
        lambda r, c: (r.randint(c[0] - 3, c[0] + 3),),
    ),
    _Template(
        "clamp", "conditionals", ("int",), "int",
        _clamp_bounds,
        lambda c, a: f"Return {a[0]} limited to the range {c[0]} to {c[1]}.",
        lambda c, a: f"min(max({a[0]}, {c[0]}), {c[1]})",
        lambda c, a: (f"max(min({a[0]}, {c[0]}), {c[1]})", f"min(max({a[0]}, {c[0]}), {c[1] + 1})",
                      f"min(max({a[0]}, {c[0] + 1}), {c[1]})", f"max({a[0]}, {c[0]})"),
        lambda r, c: (r.randint(c[0] - 4, c[1] + 4),),
    ),
)
# fmt: on
_BY_NAME = {t.name: t for t in _TEMPLATE_LIST}
TEMPLATES: tuple[str, ...] = tuple(_BY_NAME)
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(t.family for t in _TEMPLATE_LIST))


@dataclass(frozen=True)
class SFTExample:
    """One supervised example: ``prompt + completion`` is a whole program.

    ``kind`` is checked on the host: "correct" and "sloppy" pass the task's asserts,
    "buggy" fails at least one. ``task_id`` names the train task, or is None for a fresh
    instance (never a held-out one).
    """

    prompt: str
    completion: str
    kind: Kind
    template: str
    constants: tuple[int | str, ...]
    task_id: str | None = None


@dataclass(frozen=True)
class _Built:
    task: Task
    template: _Template
    consts: Consts
    args: Args
    expr: str
    bugs: tuple[str, ...]  # bug expressions that the asserts catch

    @property
    def key(self) -> tuple[str, Consts]:
        return self.template.name, self.consts


def _compiled(program: str, entry_point: str) -> Callable[..., Any]:
    namespace: dict[str, Any] = {}
    exec(compile(program, "<tiny>", "exec"), namespace)
    fn: Callable[..., Any] = namespace[entry_point]
    return fn


def _passes(task: Task, completion: str) -> bool:
    """Whether the completion passes every assert, run here on the host (trusted code)."""
    assert isinstance(task.tests, AssertsSuite)
    namespace: dict[str, Any] = {}
    try:
        exec(compile(task.prompt + completion, "<tiny>", "exec"), namespace)
        for line in task.tests.asserts:
            exec(line, namespace)
    except Exception:
        return False
    return True


def _kills(fn: Callable[..., Any], args: tuple[Any, ...], expected: Any) -> bool:
    """Whether an assert on ``args`` with ``expected`` fails for ``fn``."""
    try:
        return bool(fn(*copy.deepcopy(args)) != expected)
    except Exception:
        return True


def _choose_inputs(
    r: random.Random, size: int, bugs: list[set[int]], more: list[set[int]]
) -> list[int]:
    """3-5 of ``size`` pool indices, each set of killing indices hit: a random cover, padded.

    ``bugs`` (at most four) come first; the ``more`` sets, whatever their order, need at
    most one more index, since two inputs with different outputs hit them all.
    """
    chosen: list[int] = []
    for killed in r.sample(bugs, len(bugs)) + more:
        if killed and not killed & set(chosen):
            chosen.append(r.choice(sorted(killed)))
    rest = [i for i in range(size) if i not in chosen]
    r.shuffle(rest)
    chosen += rest[: max(0, r.randint(3, 5) - len(chosen))]
    r.shuffle(chosen)
    return chosen


def _signature(tpl: _Template, name: str, args: Args) -> str:
    params = ", ".join(f"{a}: {_TYPES[role]}" for a, role in zip(args, tpl.params, strict=True))
    return f"def {name}({params}) -> {tpl.returns}:\n"


def _build(r: random.Random, tpl: _Template, consts: Consts, task_id: str) -> _Built:
    """A task for one instance, with asserts that catch every bug that is not equivalent."""
    name = f"{r.choice(_VERBS)}_{r.choice(_NOUNS)}"
    args = tuple(r.choice(_ARG_NAMES[role]) for role in tpl.params)
    prompt = _signature(tpl, name, args) + f'    """{tpl.doc(consts, args)}"""\n'
    expr = tpl.body(consts, args)
    correct = _compiled(prompt + f"    return {expr}\n", name)
    pool = list({repr(a): a for a in (tpl.inputs(r, consts) for _ in range(_POOL))}.values())
    expected = [correct(*copy.deepcopy(a)) for a in pool]
    variants = tpl.bugs(consts, args)
    fns = [_compiled(prompt + f"    return {b}\n", name) for b in variants]
    kills = [{i for i, a in enumerate(pool) if _kills(fn, a, expected[i])} for fn in fns]
    # Returning any one constant must fail too, so the asserts pin down real behaviour.
    constant = [
        {i for i, e in enumerate(expected) if repr(e) != v} for v in set(map(repr, expected))
    ]
    chosen = _choose_inputs(r, len(pool), kills, sorted(constant, key=sorted))
    asserts = tuple(
        f"assert {name}({', '.join(map(repr, pool[i]))}) == {expected[i]!r}" for i in chosen
    )
    bugs = tuple(b for b, killed in zip(variants, kills, strict=True) if killed)
    task = Task(
        task_id=task_id,
        prompt=prompt,
        entry_point=name,
        tests=AssertsSuite(asserts),
        canonical_solution=f"    return {expr}\n",
        metadata={
            "family": tpl.family,
            "template": tpl.name,
            "constants": list(consts),
            "bugs": [f"    return {b}\n" for b in bugs],
        },
    )
    # The asserts as written are the ground truth: check them, not just the pool.
    if not _passes(task, task.canonical_solution or "") or any(
        _passes(task, f"    return {b}\n") for b in bugs
    ):
        raise RuntimeError(f"tiny task generation is inconsistent for {tpl.name} {consts}")
    return _Built(task, tpl, consts, args, expr, bugs)


def _distinct_consts(r: random.Random, tpl: _Template, n: int) -> list[Consts]:
    seen: dict[Consts, None] = {}
    while len(seen) < n:
        seen[tpl.draw(r)] = None
    return list(seen)


@functools.cache
def _splits() -> dict[Split, tuple[_Built, ...]]:
    """Both splits: per template, the first constants drawn are held out, the next train."""
    instances: dict[Split, list[tuple[_Template, Consts]]] = {"train": [], "heldout": []}
    for tpl in _TEMPLATE_LIST:
        r = random.Random(f"{_SEED}:{tpl.name}")
        consts = _distinct_consts(r, tpl, _HELDOUT_PER_TEMPLATE + _TRAIN_PER_TEMPLATE)
        instances["heldout"] += [(tpl, c) for c in consts[:_HELDOUT_PER_TEMPLATE]]
        instances["train"] += [(tpl, c) for c in consts[_HELDOUT_PER_TEMPLATE:]]
    r = random.Random(f"{_SEED}:build")
    splits: dict[Split, tuple[_Built, ...]] = {}
    offset = 0
    for split in ("train", "heldout"):
        chosen = instances[split]
        r.shuffle(chosen)  # interleave templates, so any prefix of a split is mixed
        splits[split] = tuple(
            _build(r, tpl, c, f"tiny/{offset + i:04d}") for i, (tpl, c) in enumerate(chosen)
        )
        offset += len(chosen)
    return splits


def tiny_tasks(split: Split) -> list[Task]:
    """The fixed "train" (408 tasks) or "heldout" (96 tasks) split, 12 templates in each."""
    if split not in ("train", "heldout"):
        raise ValueError(f"unknown tiny split {split!r}; expected 'train' or 'heldout'")
    # Copies, so that a caller editing metadata cannot change the cached split.
    return [
        dataclasses.replace(b.task, metadata=copy.deepcopy(b.task.metadata))
        for b in _splits()[split]
    ]


def _sloppy(expr: str, arg: str, returns: str, r: random.Random) -> str:
    """``expr`` returned with lint or typing sloppiness but the same behaviour."""
    wrong = "int" if returns == "str" else "str"
    forms = (
        f"    {r.choice(('tmp', 'unused', 'temp'))} = {arg}\n    return {expr}\n",
        f"    result: {wrong} = {expr}\n    return result\n",
        f"    return ({expr})\n",
        f"    if {arg} == None:\n        return None\n    return {expr}\n",
    )
    return r.choice(forms)


def _completion(r: random.Random, built: _Built, kind: Kind) -> str:
    tpl, arg = built.template, built.args[0]
    if kind == "correct":
        return f"    return {built.expr}\n"
    if kind == "buggy":
        bug = r.choice(built.bugs)
        if r.random() < _SLOPPY_BUG:
            return _sloppy(bug, arg, tpl.returns, r)
        return f"    return {bug}\n"
    if tpl.none_check is not None and r.random() < 0.5:
        return tpl.none_check(built.consts, built.args)
    return _sloppy(built.expr, arg, tpl.returns, r)


def _fresh(r: random.Random, held: set[tuple[str, Consts]], index: int) -> _Built:
    """A new instance of a random template that is not a held-out instance."""
    tpl = r.choice(_TEMPLATE_LIST)
    consts = tpl.draw(r)
    while (tpl.name, consts) in held:
        consts = tpl.draw(r)
    return _build(r, tpl, consts, f"tiny/fresh-{index:05d}")


def _kinds(n: int, r: random.Random) -> list[Kind]:
    kinds: list[Kind] = []
    for kind, share in _MIX:
        kinds += [kind] * round(n * share)
    kinds += ["buggy"] * (n - len(kinds))
    r.shuffle(kinds)
    return kinds


def sft_examples(n: int, seed: int = 0) -> list[SFTExample]:
    """``n`` supervised examples, ~45% correct (a third of those sloppy), ~55% buggy.

    Drawn from train tasks and fresh instances, never from held-out instances; the same
    ``n`` and ``seed`` give the same examples.
    """
    r = random.Random(f"{_SEED}:sft:{seed}")
    splits = _splits()
    held = {b.key for b in splits["heldout"]}
    examples: list[SFTExample] = []
    for index, kind in enumerate(_kinds(n, r)):
        from_train = r.random() < _FROM_TRAIN
        built = r.choice(splits["train"]) if from_train else _fresh(r, held, index)
        completion = _completion(r, built, kind)
        if _passes(built.task, completion) != (kind != "buggy"):
            raise RuntimeError(f"tiny SFT example {index} is not {kind}: {completion!r}")
        examples.append(
            SFTExample(
                prompt=built.task.prompt,
                completion=completion,
                kind=kind,
                template=built.template.name,
                constants=built.consts,
                task_id=built.task.task_id if from_train else None,
            )
        )
    return examples
