"""Index loops: direct iteration becomes ``for i in range(len(seq))`` or a ``while`` loop
with a manual counter, only where the sequence provably stays the same (``index_loop``)."""

from __future__ import annotations

import ast
import random
from collections.abc import Collection

from codealign.readability.degrade.source import (
    FUNCS,
    Edit,
    Src,
    finish,
    fresh,
    functions,
    identifiers,
    own_statements,
    pure,
    repeat,
)

# Index names; methods that change a sequence; hints that a name is not a sequence.
# fmt: off
_INDEX_NAMES = ("i", "idx", "j", "k", "n", "ii", "index", "counter", "cnt", "ix")
_MUTATORS = frozenset((
    "append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse", "update", "add",
    "discard", "setdefault", "popitem",
))
_NOT_SEQUENCE = ("dict", "set", "mapping", "iterable", "iterator", "generator", "counter")
_NOT_SEQUENCE_CALLS = frozenset((
    "set", "dict", "frozenset", "map", "filter", "zip", "reversed", "iter", "enumerate",
    "Counter", "defaultdict", "OrderedDict", "items", "keys", "values",
))
# fmt: on


def _mutated(loop: ast.stmt, name: str) -> bool:
    """Whether ``loop`` may change the sequence called ``name`` (rebinding it or calling a
    mutating method, or assigning into it)."""
    for node in ast.walk(loop):
        if isinstance(node, ast.Name) and node.id == name and not isinstance(node.ctx, ast.Load):
            return True
        if _is_method_of(node, name, _MUTATORS):
            return True
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id == name
            and not isinstance(node.ctx, ast.Load)
        ):
            return True
    return False


def _is_method_of(node: ast.AST, name: str, methods: Collection[str]) -> bool:
    """Whether ``node`` is ``name.method`` for one of ``methods``."""
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == name
        and node.attr in methods
    )


def _maybe_not_sequence(fn: ast.AST, name: str) -> bool:
    """Heuristics for a name that may hold a dict, set or iterator (no ``seq[i]``)."""
    for node in ast.walk(fn):
        if (
            isinstance(node, ast.arg)
            and node.arg == name
            and node.annotation is not None
            and any(word in ast.dump(node.annotation).lower() for word in _NOT_SEQUENCE)
        ):
            return True
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            value = node.value
            if isinstance(
                value, ast.Dict | ast.Set | ast.DictComp | ast.SetComp | ast.GeneratorExp
            ):
                return True
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name | ast.Attribute):
                func = value.func
                called = func.id if isinstance(func, ast.Name) else func.attr
                if called in _NOT_SEQUENCE_CALLS:
                    return True
        if _is_method_of(node, name, ("items", "keys", "values", "add", "get")):
            return True
    return False


def _own_continue(body: list[ast.stmt]) -> bool:
    """Whether a ``continue`` in ``body`` belongs to the loop that owns ``body``."""
    stack: list[ast.AST] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Continue):
            return True
        if isinstance(node, ast.For | ast.AsyncFor | ast.While):
            stack += node.orelse
            continue
        if isinstance(node, FUNCS | ast.ClassDef | ast.Lambda):
            continue
        stack += ast.iter_child_nodes(node)
    return False


def _loop_edits(
    src: Src,
    fn: ast.FunctionDef | ast.AsyncFunctionDef,
    loop: ast.For,
    index: str,
    rng: random.Random,
) -> list[Edit] | None:
    """Edits that make ``loop`` iterate by index, or None where that is not safe."""
    header_ok = (
        loop.iter.end_lineno == loop.lineno
        and loop.body[0].lineno > loop.lineno
        and src.starts_line(loop)
        and src.starts_line(loop.body[0])
        and src.ends_line(loop.body[-1])
    )
    if not header_ok or any(isinstance(n, FUNCS | ast.Lambda) for n in ast.walk(loop)):
        return None
    indent, body_indent = src.indent(loop.lineno), src.indent(loop.body[0].lineno)
    last = loop.body[-1].end_lineno
    assert last is not None
    target, it = loop.target, loop.iter
    # enumerate(seq): the index already exists
    if (
        isinstance(it, ast.Call)
        and isinstance(it.func, ast.Name)
        and it.func.id == "enumerate"
        and len(it.args) == 1
        and not it.keywords
        and isinstance(it.args[0], ast.Name)
        and isinstance(target, ast.Tuple)
        and len(target.elts) == 2
        and isinstance(target.elts[0], ast.Name)
    ):
        seq = it.args[0].id
        if _mutated(loop, seq) or _maybe_not_sequence(fn, seq):
            return None
        i = target.elts[0].id
        item = src.seg(target.elts[1])
        return [
            (src.start(target), src.end(it), f"{i} in range(len({seq}))"),
            src.insert_after(loop.lineno, f"{body_indent}{item} = {seq}[{i}]\n"),
        ]
    if isinstance(it, ast.Name):
        seq = it.id
        if _mutated(loop, seq) or _maybe_not_sequence(fn, seq):
            return None
        item = src.seg(target)
        edits = [src.insert_after(loop.lineno, f"{body_indent}{item} = {seq}[{index}]\n")]
        if _own_continue(loop.body) or rng.random() < 0.6:
            return [(src.start(target), src.end(it), f"{index} in range(len({seq}))"), *edits]
        header = f"{index} = 0\n{indent}while {index} < len({seq})"
        return [
            (src.start(loop), src.end(it), header),
            *edits,
            src.insert_after(last, f"{body_indent}{index} += 1\n"),
        ]
    return _range_to_while(src, fn, loop, body_indent, last)


def _range_to_while(
    src: Src, fn: ast.AST, loop: ast.For, body_indent: str, last: int
) -> list[Edit] | None:
    """``for i in range(a, b)`` becomes a ``while`` loop with a manual counter."""
    it, target = loop.iter, loop.target
    if not (
        isinstance(it, ast.Call)
        and isinstance(it.func, ast.Name)
        and it.func.id == "range"
        and 1 <= len(it.args) <= 3
        and not it.keywords
        and isinstance(target, ast.Name)
    ):
        return None
    args = it.args
    start = src.seg(args[0]) if len(args) > 1 else "0"
    stop = args[1] if len(args) > 1 else args[0]
    step = "1"
    if len(args) == 3:
        if not (isinstance(args[2], ast.Constant) and isinstance(args[2].value, int)):
            return None
        if isinstance(args[2].value, bool) or args[2].value <= 0:
            return None
        step = str(args[2].value)
    if not _stable_bound(loop, stop) or not all(pure(a) for a in args):
        return None
    i = target.id
    inside = {id(n) for n in ast.walk(loop)}
    uses = [n for n in ast.walk(fn) if isinstance(n, ast.Name) and n.id == i]
    if any(id(n) not in inside for n in uses) or _own_continue(loop.body) or _mutated_name(loop, i):
        return None
    stop_text = src.seg(stop)
    if isinstance(stop, ast.BoolOp | ast.IfExp | ast.Compare | ast.NamedExpr):
        stop_text = f"({stop_text})"
    header = f"{i} = {start}\n{src.indent(loop.lineno)}while {i} < {stop_text}"
    return [
        (src.start(loop), src.end(it), header),
        src.insert_after(last, f"{body_indent}{i} += {step}\n"),
    ]


def _mutated_name(loop: ast.For, name: str) -> bool:
    """Whether the loop's body rebinds ``name``."""
    return any(
        isinstance(n, ast.Name) and n.id == name and not isinstance(n.ctx, ast.Load)
        for stmt in loop.body
        for n in ast.walk(stmt)
    )


def _stable_bound(loop: ast.For, stop: ast.expr) -> bool:
    """A ``while`` re-evaluates its bound each time: it must not change in the loop."""
    if isinstance(stop, ast.Constant):
        return True
    if isinstance(stop, ast.Name):
        return not _mutated_name(loop, stop.id)
    if (
        isinstance(stop, ast.Call)
        and isinstance(stop.func, ast.Name)
        and stop.func.id == "len"
        and len(stop.args) == 1
        and isinstance(stop.args[0], ast.Name)
    ):
        return not _mutated(loop, stop.args[0].id)
    return False


def _index_loop_once(src: Src, rng: random.Random) -> str | None:
    """Direct iteration becomes ``range(len(seq))`` or a ``while`` with a manual counter."""
    sites = [
        (fn, s)
        for fn in functions(src.tree)
        for s in own_statements(src, fn)
        if isinstance(s, ast.For)
    ]
    rng.shuffle(sites)
    taken = identifiers(src.tree)
    for fn, loop in sites:
        index = fresh(rng, _INDEX_NAMES, set(taken))
        if index is None:
            return None
        edits = _loop_edits(src, fn, loop, index, rng)
        out = finish(src, edits) if edits else None
        if out is not None:
            return out
    return None


def index_loop(source: str, rng: random.Random) -> str | None:
    return repeat(source, rng, _index_loop_once)
