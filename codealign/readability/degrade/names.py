"""Meaningless names: ``rename`` gives parameters, locals and inner functions names that
say nothing (``a``, ``tmp2``, ``foo``), consistently within each function."""

from __future__ import annotations

import ast
import random
import symtable

from codealign.readability.degrade.source import (
    BUILTINS,
    FUNCS,
    Edit,
    Src,
    finish,
    fresh,
    identifiers,
    parse,
)

# Names that say nothing about what they hold (``fresh`` skips builtins and keywords).
# fmt: off
_MEANINGLESS = (
    *"abcdefghkmnpqrstuvwxyz",
    "l", "O", "I", "a1", "b1", "b2", "x_", "_x", "x1", "xx", "aa", "zz", "q1", "v2",
    "tmp", "tmp2", "temp", "var", "foo", "bar", "obj", "thing", "stuff", "data2", "val",
)
# fmt: on


def _module_names(source: str) -> set[str] | None:
    """Names bound or referenced at module level: never renamed (tests may use them)."""
    try:
        table = symtable.symtable(source, "<readability>", "exec")
    except SyntaxError:  # parses but does not compile (``return`` outside a function...)
        return None
    return {symbol.get_name() for symbol in table.get_symbols()}


def _def_name_span(src: Src, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[int, int] | None:
    start = src.start(fn)
    header = src.text[start : src.line_end(fn.lineno)]
    prefix = "async def " if isinstance(fn, ast.AsyncFunctionDef) else "def "
    if not header.startswith(prefix):
        return None
    at = start + len(prefix) + (len(header[len(prefix) :]) - len(header[len(prefix) :].lstrip()))
    return at, at + len(fn.name)


def _rename_sites(
    src: Src, unit: ast.FunctionDef | ast.AsyncFunctionDef
) -> dict[str, list[tuple[int, int]]]:
    """Local names of ``unit`` (its nested scopes included) and every span naming them."""
    sites: dict[str, list[tuple[int, int]]] = {}
    bound: set[str] = set()
    blocked: set[str] = set()
    for node in ast.walk(unit):
        span: tuple[int, int] | None = None
        name = ""
        if isinstance(node, ast.ClassDef | ast.Match):
            return {}  # class bodies and patterns bind names we cannot follow
        if isinstance(node, ast.Name):
            name, span = node.id, (src.start(node), src.end(node))
            if node.id in ("locals", "vars", "eval", "exec", "globals"):
                return {}
            if not isinstance(node.ctx, ast.Load):
                bound.add(name)
        elif isinstance(node, ast.arg):
            at = src.pos(node.lineno, node.col_offset)
            name, span = node.arg, (at, at + len(node.arg))
            bound.add(name)
        elif isinstance(node, FUNCS) and node is not unit:
            name, span = node.name, _def_name_span(src, node)
            bound.add(name)
            if span is None:
                blocked.add(name)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            blocked.update(node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            blocked.add(node.name)
        elif isinstance(node, ast.alias):
            blocked.add((node.asname or node.name).split(".")[0])
        if span is not None:
            sites.setdefault(name, []).append(span)
    return {
        name: spans
        for name, spans in sites.items()
        if name in bound and name not in blocked and all(src.text[s:e] == name for s, e in spans)
    }


def _units(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Top-level functions and methods of top-level classes: independent naming scopes."""
    units: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
    for stmt in tree.body:
        if isinstance(stmt, FUNCS):
            units.append(stmt)
        elif isinstance(stmt, ast.ClassDef):
            units += [s for s in stmt.body if isinstance(s, FUNCS)]
    return units


def rename(source: str, rng: random.Random) -> str | None:
    """Rename parameters, locals and inner functions to meaningless names, consistently.

    Module-level names (the entry point, helpers the tests call), builtins, attributes and
    every name used as a keyword argument somewhere stay as they are.
    """
    src = parse(source)
    module_names = _module_names(source)
    if src is None or module_names is None:
        return None
    keywords = {k.arg for k in ast.walk(src.tree) if isinstance(k, ast.keyword) and k.arg}
    keep = module_names | keywords | BUILTINS | {"self", "cls", "_"}
    taken = identifiers(src.tree) | BUILTINS
    candidates: list[tuple[int, str, list[tuple[int, int]]]] = []
    for index, unit in enumerate(_units(src.tree)):
        for name, spans in sorted(_rename_sites(src, unit).items()):
            if name not in keep and not name.startswith("__"):
                candidates.append((index, name, spans))
    p = rng.uniform(0.4, 1.0)  # from a few names to all of them
    chosen = [c for c in candidates if rng.random() < p]
    if not chosen and candidates:
        chosen = [rng.choice(candidates)]
    edits: list[Edit] = []
    new_names: dict[int, set[str]] = {}
    for index, _, spans in chosen:
        used = new_names.setdefault(index, set())
        new = fresh(rng, _MEANINGLESS, taken | used)
        if new is None:
            continue
        used.add(new)
        edits += [(s, e, new) for s, e in spans]
    return finish(src, edits)
