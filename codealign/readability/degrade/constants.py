"""Magic numbers: named constants inlined into their uses and constant arithmetic
(``24 * 60 * 60``) folded to its value (``86400``)."""

from __future__ import annotations

import ast
import math
import operator
import random
from collections.abc import Callable
from typing import Any

from codealign.readability.degrade.source import (
    FUNCS,
    Edit,
    Src,
    finish,
    functions,
    parse,
    subset,
)

# The operators constant folding evaluates (``_number``).
_FOLD: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def _number(node: ast.expr) -> int | float | None:
    """The value of a constant arithmetic expression, or None."""
    if isinstance(node, ast.Constant):
        value = node.value
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _number(node.operand)
        return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
    if isinstance(node, ast.BinOp) and type(node.op) in _FOLD:
        left, right = _number(node.left), _number(node.right)
        if left is None or right is None:
            return None
        if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 10**6):
            return None
        try:
            value = _FOLD[type(node.op)](left, right)
        except (ArithmeticError, ValueError):
            return None
        if not isinstance(value, int | float) or isinstance(value, complex):
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value if abs(value) < 10**18 else None
    return None


def _literal_text(src: Src, node: ast.expr) -> str | None:
    """Source text that can replace a name bound to ``node``, or None if not a literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str):
        if isinstance(node.value, bool):
            return None
        text = src.seg(node)
        return text if "\n" not in text else f"({text})"
    if _number(node) is not None and src.start(node) < src.end(node):
        return f"({src.seg(node)})"
    return None


def _constant_sites(src: Src) -> list[tuple[ast.Assign, str, list[ast.Name]]]:
    """Module UPPER_CASE constants and function locals bound once to a literal, with the
    literal and every use to replace."""
    sites: list[tuple[ast.Assign, str, list[ast.Name]]] = []
    scopes: list[tuple[ast.AST, list[ast.stmt], bool]] = [(src.tree, src.tree.body, True)]
    scopes += [(fn, fn.body, False) for fn in functions(src.tree)]
    in_fstring = {
        n.id
        for j in ast.walk(src.tree)
        if isinstance(j, ast.JoinedStr)
        for n in ast.walk(j)
        if isinstance(n, ast.Name)
    }
    for scope, body, module in scopes:
        for stmt in body:
            if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1):
                continue
            target = stmt.targets[0]
            if not isinstance(target, ast.Name) or target.id in in_fstring:
                continue
            if module and not (target.id.isupper() and target.id.isidentifier()):
                continue
            literal = _literal_text(src, stmt.value)
            uses = _single_binding_uses(scope, target.id, stmt)
            if literal is not None and uses and src.alone(stmt):
                sites.append((stmt, literal, uses))
    return sites


def _single_binding_uses(scope: ast.AST, name: str, stmt: ast.Assign) -> list[ast.Name]:
    """The loads of ``name`` after ``stmt`` when ``stmt`` is its only binding, else []."""
    loads: list[ast.Name] = []
    for node in ast.walk(scope):
        if isinstance(node, ast.Name) and node.id == name:
            if isinstance(node.ctx, ast.Load):
                loads.append(node)
            elif node is not stmt.targets[0]:
                return []
        elif name in _bound_names(node):
            return []
    assert stmt.end_lineno is not None
    after = stmt.end_lineno
    return loads if all(n.lineno > after for n in loads) else []


def _bound_names(node: ast.AST) -> set[str]:
    """Names ``node`` binds other than by assignment: parameters, declarations, imports,
    definitions."""
    if isinstance(node, ast.arg):
        return {node.arg}
    if isinstance(node, ast.Global | ast.Nonlocal):
        return set(node.names)
    if isinstance(node, ast.alias):
        return {node.asname or node.name}
    if isinstance(node, FUNCS | ast.ClassDef):
        return {node.name}
    return set()


def _fold_sites(src: Src) -> list[tuple[ast.expr, str]]:
    """Maximal constant arithmetic (``24 * 60 * 60``) and its value (``86400``)."""
    sites: list[tuple[ast.expr, str]] = []
    stack: list[ast.AST] = [src.tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.JoinedStr):
            continue
        if isinstance(node, ast.BinOp) and (value := _number(node)) is not None:
            text = repr(value)
            sites.append((node, f"({text})" if value < 0 else text))
            continue
        stack += ast.iter_child_nodes(node)
    return sites


def magic_numbers(source: str, rng: random.Random) -> str | None:
    """Inline named constants into their uses and fold constant arithmetic to its value."""
    src = parse(source)
    if src is None:
        return None
    edits: list[Edit] = []
    for stmt, literal, uses in subset(rng, _constant_sites(src)):
        assert stmt.end_lineno is not None
        edits.append((src.line_start(stmt.lineno), src.after_line(stmt.end_lineno), ""))
        edits += [(src.start(n), src.end(n), literal) for n in uses]
    replaced = [(s, e) for s, e, _ in edits]
    for node, text in subset(rng, _fold_sites(src)):
        start, end = src.start(node), src.end(node)
        if not any(s < end and start < e for s, e in replaced):
            edits.append((start, end, text))
    return finish(src, edits)
