"""Needlessly roundabout control flow: ``if True:`` wrappers, ``else`` after a block that
always leaves, ``else: pass``, ``if a and b`` split into nested ifs, ``return cond`` spelt
out as ``if cond: return True``, and ``ok == True`` comparisons."""

from __future__ import annotations

import ast
import itertools
import random

from codealign.readability.degrade.source import (
    ENDS_BLOCK,
    Src,
    finish,
    functions,
    indent_unit,
    is_docstring,
    operand,
    own_blocks,
    own_statements,
    repeat,
)

# Calls that certainly return a bool: only then is ``x == True`` the same test as ``x``.
# fmt: off
_BOOL_METHODS = frozenset((
    "startswith", "endswith", "isdigit", "isalpha", "isalnum", "isupper", "islower",
    "isspace", "istitle", "isdecimal", "isnumeric", "isidentifier", "issubset", "issuperset",
    "isdisjoint",
))
_BOOL_FUNCS = frozenset(("isinstance", "issubclass", "callable", "hasattr", "all", "any", "bool"))
# fmt: on


def _if_true_once(src: Src, rng: random.Random) -> str | None:
    """Wrap a run of statements in ``if True:``."""
    runs: list[list[ast.stmt]] = []
    for fn in functions(src.tree):
        for block in own_blocks(src, fn):
            start = 1 if block is fn.body and is_docstring(block[0]) else 0
            ok = [s for s in block[start:] if src.starts_line(s)]
            runs += [ok[i : i + n] for i in range(len(ok)) for n in (1, 2, 3) if i + n <= len(ok)]
    runs = [r for r in runs if src.ends_line(r[-1]) and _contiguous(r)]
    if not runs:
        return None
    run = rng.choice(runs)
    indent, last = src.indent(run[0].lineno), run[-1].end_lineno
    assert last is not None
    header = indent + rng.choice(("if True:", "if True:", "if 1:", "if not False:")) + "\n"
    at = src.line_start(run[0].lineno)
    return finish(
        src, [(at, at, header), *src.indent_edits(run[0].lineno, last, indent_unit(indent))]
    )


def _contiguous(run: list[ast.stmt]) -> bool:
    """The statements follow each other in their block (no skipped statement between)."""
    return all(
        a.end_lineno is not None and a.end_lineno < b.lineno for a, b in itertools.pairwise(run)
    )


def if_true(source: str, rng: random.Random) -> str | None:
    return repeat(source, rng, _if_true_once)


def _redundant_else_once(src: Src, rng: random.Random) -> str | None:
    """``else:`` around what follows an ``if`` whose body always leaves the block."""
    sites: list[tuple[ast.If, list[ast.stmt]]] = []
    for fn in functions(src.tree):
        for block in own_blocks(src, fn):
            for i, stmt in enumerate(block[:-1]):
                rest = block[i + 1 :]
                if (
                    isinstance(stmt, ast.If)
                    and not stmt.orelse
                    and isinstance(stmt.body[-1], ENDS_BLOCK)
                    and src.starts_line(stmt)
                    and not src.is_elif(stmt)
                    and all(src.starts_line(s) for s in rest)
                    and src.ends_line(rest[-1])
                ):
                    sites.append((stmt, rest))
    if not sites:
        return None
    stmt, rest = rng.choice(sites)
    indent, last = src.indent(stmt.lineno), rest[-1].end_lineno
    assert last is not None
    at = src.line_start(rest[0].lineno)
    return finish(
        src,
        [
            (at, at, indent + "else:\n"),
            *src.indent_edits(rest[0].lineno, last, indent_unit(indent)),
        ],
    )


def redundant_else(source: str, rng: random.Random) -> str | None:
    return repeat(source, rng, _redundant_else_once)


def _else_pass_once(src: Src, rng: random.Random) -> str | None:
    """An ``else: pass`` after an ``if`` that had no ``else``."""
    sites = [
        s
        for fn in functions(src.tree)
        for s in own_statements(src, fn)
        if isinstance(s, ast.If) and not s.orelse and src.alone(s) and not src.is_elif(s)
    ]
    if not sites:
        return None
    stmt = rng.choice(sites)
    indent = src.indent(stmt.lineno)
    assert stmt.end_lineno is not None
    text = f"{indent}else:\n{indent}{indent_unit(indent)}pass\n"
    return finish(src, [src.insert_after(stmt.end_lineno, text)])


def else_pass(source: str, rng: random.Random) -> str | None:
    return repeat(source, rng, _else_pass_once)


def _nested_ifs_once(src: Src, rng: random.Random) -> str | None:
    """``if a and b:`` becomes ``if a:`` / ``if b:``."""
    sites = [
        s
        for fn in functions(src.tree)
        for s in own_statements(src, fn)
        if isinstance(s, ast.If)
        and not s.orelse
        and isinstance(s.test, ast.BoolOp)
        and isinstance(s.test.op, ast.And)
        and s.test.end_lineno == s.lineno
        and s.body[0].lineno > s.lineno
        and src.starts_line(s)
        and not src.is_elif(s)
    ]
    if not sites:
        return None
    stmt = rng.choice(sites)
    assert isinstance(stmt.test, ast.BoolOp) and stmt.end_lineno is not None
    first, rest = stmt.test.values[0], stmt.test.values[1:]
    indent = src.indent(stmt.lineno)
    unit = indent_unit(indent)
    inner = f"{indent}{unit}if {' and '.join(operand(src, v) for v in rest)}:\n"
    edits = [
        (src.start(stmt.test), src.end(stmt.test), operand(src, first)),
        src.insert_after(stmt.lineno, inner),
        *src.indent_edits(stmt.lineno + 1, stmt.end_lineno, unit),
    ]
    return finish(src, edits)


def nested_ifs(source: str, rng: random.Random) -> str | None:
    return repeat(source, rng, _nested_ifs_once)


def _bool_names(fn: ast.AST) -> set[str]:
    """Names that only ever hold booleans in ``fn`` (every binding is a plain assignment of
    a boolean expression)."""
    values: dict[str, list[ast.expr | None]] = {}
    plain: set[int] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
            for target in node.targets:
                assert isinstance(target, ast.Name)
                plain.add(id(target))
                values.setdefault(target.id, []).append(node.value)
    for node in ast.walk(fn):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            if id(node) not in plain:  # a loop target, augmented assignment, walrus...
                values.setdefault(node.id, []).append(None)
        elif isinstance(node, ast.arg):
            values.setdefault(node.arg, []).append(None)
    return {
        name
        for name, bound in values.items()
        if all(v is not None and _is_bool(v, set()) for v in bound)
    }


def _is_bool(node: ast.expr, names: set[str]) -> bool:
    """Whether ``node`` certainly evaluates to a bool."""
    if isinstance(node, ast.Compare):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return True
    if isinstance(node, ast.Constant):
        return isinstance(node.value, bool)
    if isinstance(node, ast.BoolOp):
        return all(_is_bool(v, names) for v in node.values)
    if isinstance(node, ast.Name):
        return node.id in names
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name):
            return func.id in _BOOL_FUNCS
        return isinstance(func, ast.Attribute) and func.attr in _BOOL_METHODS
    return False


def _bool_return_once(src: Src, rng: random.Random) -> str | None:
    """``return cond`` becomes ``if cond: return True`` / ``else: return False``."""
    sites: list[ast.Return] = []
    for fn in functions(src.tree):
        names = _bool_names(fn)
        sites += [
            s
            for s in own_statements(src, fn)
            if isinstance(s, ast.Return)
            and s.value is not None
            and _is_bool(s.value, names)
            and src.alone(s)
        ]
    if not sites:
        return None
    stmt = rng.choice(sites)
    assert stmt.value is not None and stmt.end_lineno is not None
    indent = src.indent(stmt.lineno)
    unit = indent_unit(indent)
    cond = src.seg(stmt.value)
    if "\n" in cond or isinstance(stmt.value, ast.NamedExpr):
        cond = f"({cond})"
    lines = [f"{indent}if {cond}:", f"{indent}{unit}return True"]
    if rng.random() < 0.6:
        lines += [f"{indent}else:", f"{indent}{unit}return False"]
    else:
        lines.append(f"{indent}return False")
    edit = (src.line_start(stmt.lineno), src.line_end(stmt.end_lineno), "\n".join(lines))
    return finish(src, [edit])


def bool_return(source: str, rng: random.Random) -> str | None:
    return repeat(source, rng, _bool_return_once)


def _bool_compare_once(src: Src, rng: random.Random) -> str | None:
    """``if ok:`` becomes ``if ok == True:``, ``if not ok:`` becomes ``if ok == False:``."""
    sites: list[tuple[ast.expr, set[str]]] = []
    for fn in functions(src.tree):
        names = _bool_names(fn)
        for stmt in own_statements(src, fn):
            if isinstance(stmt, ast.If | ast.While) and _is_bool(stmt.test, names):
                sites.append((stmt.test, names))
    if not sites:
        return None
    test, names = rng.choice(sites)
    inner, literal = test, "True"
    if (
        isinstance(test, ast.UnaryOp)
        and isinstance(test.op, ast.Not)
        and _is_bool(test.operand, names)
    ):
        inner, literal = test.operand, "False"
    text = src.seg(inner)
    if not isinstance(inner, ast.Name | ast.Call) or "\n" in text:
        text = f"({text})"
    return finish(src, [(src.start(test), src.end(test), f"{text} == {literal}")])


def bool_compare(source: str, rng: random.Random) -> str | None:
    return repeat(source, rng, _bool_compare_once)
