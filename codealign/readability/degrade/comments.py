"""Lost and misleading documentation: docstrings, comments and type hints removed, and
commented-out code (or comments that say nothing) added."""

from __future__ import annotations

import ast
import random
import tokenize
from typing import Any

from codealign.readability.degrade.dead_code import dead_line
from codealign.readability.degrade.source import (
    FUNCS,
    Edit,
    Src,
    finish,
    functions,
    insert_points,
    is_docstring,
    parse,
    repeat,
    subset,
)

_NOISE_COMMENTS = ("# loop", "# TODO: fix", "# hack", "# check", "# do stuff", "# ???", "# ok")


def strip_docstrings(source: str, rng: random.Random) -> str | None:
    """Delete docstrings (a lone docstring becomes ``pass``)."""
    src = parse(source)
    if src is None:
        return None
    owners: list[Any] = [src.tree, *(n for n in ast.walk(src.tree) if isinstance(n, FUNCS))]
    owners += [n for n in ast.walk(src.tree) if isinstance(n, ast.ClassDef)]
    sites = [o for o in owners if o.body and is_docstring(o.body[0]) and src.alone(o.body[0])]
    edits: list[Edit] = []
    for owner in subset(rng, sites):
        doc = owner.body[0]
        keep = "" if len(owner.body) > 1 else src.indent(doc.lineno) + "pass\n"
        edits.append((src.line_start(doc.lineno), src.after_line(doc.end_lineno), keep))
    return finish(src, edits)


def strip_comments(source: str, rng: random.Random) -> str | None:
    """Delete comments (a comment-only line goes entirely)."""
    src = parse(source)
    if src is None:
        return None
    comments = [tok for tok in src.tokens if tok.type == tokenize.COMMENT]
    edits: list[Edit] = []
    for tok in subset(rng, comments):
        line, col = tok.start
        code = src.lines[line - 1][:col]
        if code.strip():
            start = src.line_start(line) + len(code.rstrip())
            edits.append((start, src.line_start(line) + tok.end[1], ""))
        else:
            edits.append((src.line_start(line), src.after_line(line), ""))
    return finish(src, edits, same_ast=True)


def _annotation_edits(src: Src) -> list[Edit]:
    """One edit per annotation that can be removed on its own."""
    edits: list[Edit] = []
    in_class = {
        id(s)
        for c in ast.walk(src.tree)
        if isinstance(c, ast.ClassDef)
        for s in c.body
        if isinstance(s, ast.AnnAssign)
    }
    for node in ast.walk(src.tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            start = src.pos(node.lineno, node.col_offset) + len(node.arg)
            end = src.end(node.annotation)
            if not src.text[start:end].lstrip().startswith(":"):
                continue
            rest = src.text[end : end + 8]
            default = len(rest) - len(rest.lstrip(" \t"))
            if rest.lstrip(" \t").startswith("=") and not rest.lstrip(" \t").startswith("=="):
                eq = end + default + 1
                after = src.text[eq : eq + 8]
                edits.append((start, eq + len(after) - len(after.lstrip(" \t")), "="))
            else:
                edits.append((start, end, ""))
        elif isinstance(node, FUNCS) and node.returns is not None:
            start = src.start(node.returns)
            arrow = src.text.rfind("->", src.start(node), start)
            if arrow < 0 or src.text[arrow + 2 : start].strip():
                continue
            while src.text[arrow - 1] in " \t":
                arrow -= 1
            edits.append((arrow, src.end(node.returns), ""))
        elif (
            isinstance(node, ast.AnnAssign)
            and node.simple
            and node.value is not None
            and id(node) not in in_class
        ):
            edits.append((src.end(node.target), src.end(node.annotation), ""))
    return edits


def strip_type_hints(source: str, rng: random.Random) -> str | None:
    """Remove annotations of parameters, returns and (valued, non-class) variables."""
    src = parse(source)
    if src is None:
        return None
    return finish(src, subset(rng, _annotation_edits(src)))


def _commented_code_once(src: Src, rng: random.Random) -> str | None:
    """Commented-out code (or a comment that says nothing) on a line of its own."""
    sites = [(fn, p) for fn in functions(src.tree) for p in insert_points(src, fn)]
    if not sites:
        return None
    fn, (at, indent) = rng.choice(sites)
    if rng.random() < 0.7:
        code = dead_line(src, fn, rng)
        text = rng.choice(("#", "# ")) + code
    else:
        text = rng.choice(_NOISE_COMMENTS)
    return finish(src, [(at, at, f"{indent}{text}\n")])


def commented_code(source: str, rng: random.Random) -> str | None:
    return repeat(source, rng, _commented_code_once)
