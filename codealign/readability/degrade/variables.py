"""Needless variables: a temporary for the value returned (``temp_return``), for a
sub-expression (``temp_vars``) or for an ``if`` condition (``flag_var``)."""

from __future__ import annotations

import ast
import random
from collections.abc import Iterator

from codealign.readability.degrade.source import (
    Src,
    finish,
    fresh,
    functions,
    identifiers,
    operand,
    own_statements,
    pure,
    repeat,
)

# Names for the new variables: the ones people reach for when they don't name things.
_TEMP_NAMES = ("tmp", "tmp2", "tmp3", "temp", "t", "x1", "val", "v", "res", "r2", "aux", "tt")
_RESULT_NAMES = ("result", "res", "ret", "out", "r", "answer", "output", "retval", "tmp", "rv")
_FLAG_NAMES = ("flag", "cond", "check", "ok", "b", "f", "test", "is_ok", "flg", "c")


def _temp_return_once(src: Src, rng: random.Random) -> str | None:
    """``return expr`` becomes ``result = expr`` / ``return result``."""
    sites = [
        s
        for fn in functions(src.tree)
        for s in own_statements(src, fn)
        if isinstance(s, ast.Return)
        and s.value is not None
        and not (isinstance(s.value, ast.Constant) and s.value.value is None)
        and src.alone(s)
    ]
    if not sites:
        return None
    stmt = rng.choice(sites)
    assert stmt.value is not None and stmt.end_lineno is not None
    taken = identifiers(src.tree)
    name = fresh(rng, _RESULT_NAMES, taken)
    if name is None:
        return None
    start = src.start(stmt)
    gap = src.text[start + len("return") : src.start(stmt.value)]
    skip = len("return") + len(gap) - len(gap.lstrip(" \t"))
    indent = src.indent(stmt.lineno)
    tail = [f"{indent}return {name}\n"]
    chained = fresh(rng, _RESULT_NAMES, taken) if rng.random() < 0.3 else None
    if chained is not None:
        tail = [f"{indent}{chained} = {name}\n", f"{indent}return {chained}\n"]
    edits = [(start, start + skip, f"{name} = "), src.insert_after(stmt.end_lineno, "".join(tail))]
    return finish(src, edits)


def temp_return(source: str, rng: random.Random) -> str | None:
    return repeat(source, rng, _temp_return_once)


def _extractable(node: ast.expr, root: bool = True) -> Iterator[ast.expr]:
    """Sub-expressions always evaluated when ``node`` is (not under short-circuits, not
    inside comprehensions or f-strings), that are worth a temporary variable."""
    if not root and isinstance(node, ast.BinOp | ast.Call | ast.Subscript | ast.Compare):
        yield node
    if isinstance(node, ast.BoolOp | ast.IfExp | ast.Lambda | ast.JoinedStr | ast.Starred):
        return
    if isinstance(node, ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
        return
    if isinstance(node, ast.Compare) and len(node.ops) > 1:
        return  # chained comparisons short-circuit
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.expr) and not isinstance(child, ast.Slice):
            yield from _extractable(child, root=False)
        elif isinstance(child, ast.Slice):
            for bound in (child.lower, child.upper, child.step):
                if bound is not None:
                    yield from _extractable(bound, root=False)


def _temp_vars_once(src: Src, rng: random.Random) -> str | None:
    """Pull a sub-expression out into a needless temporary variable."""
    sites: list[tuple[ast.stmt, ast.expr]] = []
    for fn in functions(src.tree):
        for stmt in own_statements(src, fn):
            value = getattr(stmt, "value", None)
            if not isinstance(stmt, ast.Return | ast.Assign | ast.AugAssign):
                continue
            if not isinstance(value, ast.expr) or not pure(value) or not src.starts_line(stmt):
                continue
            if isinstance(stmt, ast.Assign) and len(stmt.targets) != 1:
                continue
            sites += [(stmt, sub) for sub in _extractable(value)]
    if not sites:
        return None
    stmt, sub = rng.choice(sites)
    name = fresh(rng, _TEMP_NAMES, identifiers(src.tree))
    if name is None:
        return None
    text = src.seg(sub)
    if "\n" in text:
        text = f"({text})"
    at = src.line_start(stmt.lineno)
    edits = [
        (at, at, f"{src.indent(stmt.lineno)}{name} = {text}\n"),
        (src.start(sub), src.end(sub), name),
    ]
    return finish(src, edits)


def temp_vars(source: str, rng: random.Random) -> str | None:
    return repeat(source, rng, _temp_vars_once)


def _flag_var_once(src: Src, rng: random.Random) -> str | None:
    """``if cond:`` becomes ``flag = cond`` / ``if flag:``."""
    sites = [
        s
        for fn in functions(src.tree)
        for s in own_statements(src, fn)
        if isinstance(s, ast.If) and src.starts_line(s) and not src.is_elif(s)
    ]
    if not sites:
        return None
    stmt = rng.choice(sites)
    name = fresh(rng, _FLAG_NAMES, identifiers(src.tree))
    if name is None:
        return None
    value = operand(src, stmt.test) if not isinstance(stmt.test, ast.BoolOp) else src.seg(stmt.test)
    if "\n" in value and not value.startswith("("):
        value = f"({value})"
    at = src.line_start(stmt.lineno)
    edits = [
        (at, at, f"{src.indent(stmt.lineno)}{name} = {value}\n"),
        (src.start(stmt.test), src.end(stmt.test), name),
    ]
    return finish(src, edits)


def flag_var(source: str, rng: random.Random) -> str | None:
    return repeat(source, rng, _flag_var_once)
