"""Dead code: ``if False:`` blocks, statements after a ``return``, assignments nobody reads
and imports nothing uses. ``dead_line`` (a plausible line for code that never runs) is
shared with commented-out code in ``comments``."""

from __future__ import annotations

import ast
import random

from codealign.readability.degrade.source import (
    ENDS_BLOCK,
    FUNCS,
    Edit,
    Src,
    finish,
    fresh,
    functions,
    identifiers,
    indent_unit,
    insert_points,
    is_docstring,
    own_blocks,
    own_statements,
    parse,
    repeat,
)

# What leftover code looks like: throwaway names and values, and everyday imports.
# fmt: off
_UNUSED_NAMES = ("temp", "tmp", "unused", "old", "val", "dummy", "backup", "prev", "x0", "z")
_UNUSED_VALUES = ("0", "None", "[]", "''", "False", "1", "{}", "-1", '""', "0.0")
_IMPORTS = (  # (name bound, import line)
    ("os", "import os"), ("sys", "import sys"), ("re", "import re"), ("math", "import math"),
    ("itertools", "import itertools"), ("collections", "import collections"),
    ("functools", "import functools"), ("string", "import string"),
    ("random", "import random"), ("copy", "import copy"), ("time", "import time"),
    ("Any", "from typing import Any"), ("defaultdict", "from collections import defaultdict"),
)
# fmt: on


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    args = [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]
    return [a.arg for a in args if a.arg not in ("self", "cls")]


def _has_scope_decls(fn: ast.AST) -> bool:
    """``global``/``nonlocal`` make inserted assignments risky (declaration order)."""
    return any(isinstance(n, ast.Global | ast.Nonlocal) for n in ast.walk(fn))


def _copyable(src: Src, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """One-line simple statements of ``fn`` that may be repeated in dead code."""
    texts = []
    for stmt in own_statements(src, fn):
        if not isinstance(stmt, ast.Assign | ast.AugAssign | ast.Return | ast.Expr):
            continue
        if is_docstring(stmt) or stmt.lineno != stmt.end_lineno:
            continue
        if any(isinstance(n, ast.Await | ast.Yield | ast.YieldFrom) for n in ast.walk(stmt)):
            continue
        texts.append(src.seg(stmt))
    return texts


def dead_line(
    src: Src, fn: ast.FunctionDef | ast.AsyncFunctionDef, rng: random.Random, avoid: str = ""
) -> str:
    """A plausible statement for code that never runs: a copy of one of ``fn``'s own."""
    options = [*_copyable(src, fn), "return None"]
    options += [f"print({p})" for p in _params(fn)]
    return rng.choice([o for o in options if o != avoid])


def _dead_branch_once(src: Src, rng: random.Random) -> str | None:
    """An ``if False:`` block."""
    sites = [
        (fn, point)
        for fn in functions(src.tree)
        if not _has_scope_decls(fn)
        for point in insert_points(src, fn)
    ]
    if not sites:
        return None
    fn, (at, indent) = rng.choice(sites)
    guard = rng.choice(("if False:", "if False:", "if 0:", "while False:"))
    text = f"{indent}{guard}\n{indent}{indent_unit(indent)}{dead_line(src, fn, rng)}\n"
    return finish(src, [(at, at, text)])


def dead_branch(source: str, rng: random.Random) -> str | None:
    return repeat(source, rng, _dead_branch_once)


def _unreachable_once(src: Src, rng: random.Random) -> str | None:
    """A statement after a ``return`` (or raise/break/continue) that ends its block."""
    sites: list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, ast.stmt]] = []
    for fn in functions(src.tree):
        if _has_scope_decls(fn):
            continue
        for block in own_blocks(src, fn):
            if isinstance(block[-1], ENDS_BLOCK) and src.alone(block[-1]):
                sites.append((fn, block[-1]))
    if not sites:
        return None
    fn, stmt = rng.choice(sites)
    assert stmt.end_lineno is not None
    text = f"{src.indent(stmt.lineno)}{dead_line(src, fn, rng, avoid=src.seg(stmt))}\n"
    return finish(src, [src.insert_after(stmt.end_lineno, text)])


def unreachable_code(source: str, rng: random.Random) -> str | None:
    return repeat(source, rng, _unreachable_once)


def _unused_assign_once(src: Src, rng: random.Random) -> str | None:
    """An assignment to a variable nobody reads."""
    sites = [(fn, p) for fn in functions(src.tree) for p in insert_points(src, fn)]
    if not sites:
        return None
    fn, (at, indent) = rng.choice(sites)
    name = fresh(rng, _UNUSED_NAMES, identifiers(src.tree))
    if name is None:
        return None
    value = rng.choice([*_UNUSED_VALUES, *_params(fn)[:1]])
    return finish(src, [(at, at, f"{indent}{name} = {value}\n")])


def unused_assign(source: str, rng: random.Random) -> str | None:
    return repeat(source, rng, _unused_assign_once)


def _preamble(body: list[ast.stmt]) -> int:
    """How many statements (docstring, ``__future__`` imports) must stay first."""
    skip = 1 if body and is_docstring(body[0]) else 0
    while (
        skip < len(body)
        and isinstance(body[skip], ast.ImportFrom)
        and getattr(body[skip], "module", None) == "__future__"
    ):
        skip += 1
    return skip


def unused_import(source: str, rng: random.Random) -> str | None:
    """One or two imports nothing uses, among the existing imports or at the top."""
    src = parse(source)
    if src is None:
        return None
    body = src.tree.body
    skip = _preamble(body)
    if skip >= len(body) or not src.starts_line(body[skip]):
        return None
    taken = identifiers(src.tree)
    free = [line for name, line in _IMPORTS if name not in taken]
    if not free:
        return None
    lines = "".join(line + "\n" for line in rng.sample(free, min(len(free), rng.randint(1, 2))))
    points: list[Edit] = []
    for stmt in body[skip:]:
        if (
            isinstance(stmt, ast.Import | ast.ImportFrom)
            and src.alone(stmt)
            and not src.indent(stmt.lineno)
        ):
            assert stmt.end_lineno is not None
            points.append(src.insert_after(stmt.end_lineno, lines))
    first = src.line_start(body[skip].lineno)
    spacer = "\n\n" if isinstance(body[skip], FUNCS | ast.ClassDef) else ""
    points.append((first, first, lines + spacer))
    return finish(src, [rng.choice(points)])
