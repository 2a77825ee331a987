"""Formatting that hurts: crammed one-liners with no optional spaces (``cram``, built on
``_minify``) and block indentation widths that change from block to block
(``inconsistent_format``). Both keep the AST exactly as it was."""

from __future__ import annotations

import ast
import io
import keyword
import random
import tokenize

from codealign.readability.degrade.source import (
    Edit,
    Src,
    child_blocks,
    finish,
    parse,
    quiet_parse,
)

# Statements that may share a line with ``;``.
# fmt: off
_SIMPLE = (
    ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Return, ast.Pass, ast.Break,
    ast.Continue, ast.Raise, ast.Assert, ast.Delete, ast.Import, ast.ImportFrom,
)
# fmt: on


def _ident_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def _keyword(text: str) -> bool:
    return keyword.iskeyword(text) and text not in ("True", "False", "None")


def _needs_space(out: str, text: str, previous: tokenize.TokenInfo | None) -> bool:
    """Whether two tokens need a space between them (or keep one around a keyword, as
    even crammed code does: ``return ''``, not ``return''``)."""
    if previous is None:
        return False
    if _ident_char(out[-1]) and _ident_char(text[0]):
        return True
    if previous.type == tokenize.NUMBER and text[0] == ".":
        return True
    if _keyword(previous.string) and text[0] not in ":),;]}":
        return True
    return _keyword(text) and out[-1] not in "([{"


def _minify(code: str) -> str | None:
    """One line of code with no optional spaces (``x*2+1``); None where unsure."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):
        return None
    out = ""
    previous: tokenize.TokenInfo | None = None
    for tok in tokens:
        if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER):
            continue
        if tok.type not in (tokenize.NAME, tokenize.NUMBER, tokenize.STRING, tokenize.OP):
            return None  # comments, f-string parts (3.12), error tokens
        if _needs_space(out, tok.string, previous):
            out += " "
        out += tok.string
        previous = tok
    return out


def _joinable(src: Src, stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, _SIMPLE)
        and stmt.lineno == stmt.end_lineno
        and src.alone(stmt, comment=False)
        and not any(isinstance(n, ast.JoinedStr) for n in ast.walk(stmt))
    )


def _adjacent(src: Src, a: ast.stmt, b: ast.stmt) -> bool:
    assert a.end_lineno is not None
    return all(not src.lines[line - 1].strip() for line in range(a.end_lineno + 1, b.lineno))


def _runs(src: Src, block: list[ast.stmt]) -> list[list[ast.stmt]]:
    """Maximal runs of joinable statements with nothing but blank lines between them."""
    runs: list[list[ast.stmt]] = []
    for stmt in block:
        if not _joinable(src, stmt):
            runs.append([])
        elif runs and runs[-1] and _adjacent(src, runs[-1][-1], stmt):
            runs[-1].append(stmt)
        else:
            runs.append([stmt])
    return [run for run in runs if run]


def _crammed(src: Src, stmts: list[ast.stmt], sep: str) -> str | None:
    texts = [_minify(src.seg(s)) for s in stmts]
    if any(t is None for t in texts):
        return None
    return sep.join(t for t in texts if t is not None)


def _one_liner(src: Src, stmt: ast.stmt, sep: str) -> Edit | None:
    """``if x: return y`` (also for/while/def) for a header over a short simple body."""
    if not isinstance(stmt, ast.If | ast.For | ast.While | ast.FunctionDef):
        return None
    if getattr(stmt, "orelse", None) or not src.alone(stmt, comment=False):
        return None
    if isinstance(stmt, ast.If) and src.is_elif(stmt):
        return None
    body = stmt.body
    if body[0].lineno == stmt.lineno or len(body) > 3 or len(_runs(src, body)) != 1:
        return None
    if len(_runs(src, body)[0]) != len(body):
        return None
    header = _minify(src.lines[stmt.lineno - 1].strip())
    crammed = _crammed(src, body, sep)
    if header is None or crammed is None or not header.endswith(":"):
        return None
    try:  # the first line must be the whole header
        quiet_parse(header + " pass")
    except SyntaxError:
        return None
    assert stmt.end_lineno is not None
    line = src.indent(stmt.lineno) + header + " " + crammed
    return src.line_start(stmt.lineno), src.line_end(stmt.end_lineno), line


def _cram_edits(
    src: Src, block: list[ast.stmt], rng: random.Random, p: float, sep: str
) -> list[Edit]:
    edits: list[Edit] = []
    for run in _runs(src, block):
        crammed = _crammed(src, run, sep)
        last = run[-1].end_lineno
        assert last is not None
        if crammed is not None and rng.random() < p:
            text = src.indent(run[0].lineno) + crammed
            edits.append((src.line_start(run[0].lineno), src.line_end(last), text))
    for stmt in block:
        if _joinable(src, stmt):
            continue
        one = _one_liner(src, stmt, sep) if rng.random() < p else None
        if one is not None:
            edits.append(one)
            continue
        for child in child_blocks(src, stmt):
            edits += _cram_edits(src, child, rng, p, sep)
    return edits


def cram(source: str, rng: random.Random) -> str | None:
    """Crammed formatting: ``a=1; b=2`` on one line, no spaces around operators, and
    ``if x: return y`` one-liners."""
    src = parse(source)
    if src is None:
        return None
    p = rng.uniform(0.5, 1.0)
    sep = rng.choice(("; ", ";"))
    edits = [
        e for e in _cram_edits(src, src.tree.body, rng, p, sep) if src.text[e[0] : e[1]] != e[2]
    ]
    return finish(src, edits, same_ast=True)


def _new_indents(src: Src, rng: random.Random, p: float) -> dict[int, str]:
    """A new indentation for each line that starts a statement: every block gets its own
    width (valid: Python only needs consistency within a block)."""
    widths = (1, 2, 3, 4, 5, 6, 8)
    original = [""]
    stack = [""]
    indents: dict[int, str] = {}
    at_start = True
    for tok in src.tokens:
        if tok.type == tokenize.INDENT:
            width = len(tok.string) - len(original[-1])
            original.append(tok.string)
            new_width = rng.choice(widths) if rng.random() < p else width
            stack.append(stack[-1] + " " * new_width)
        elif tok.type == tokenize.DEDENT:
            original.pop()
            stack.pop()
        elif tok.type == tokenize.NEWLINE:
            at_start = True
        elif tok.type not in (tokenize.NL, tokenize.COMMENT, tokenize.ENDMARKER) and at_start:
            indents[tok.start[0]] = stack[-1]
            at_start = False
    return indents


def _indent_edits(src: Src, rng: random.Random) -> list[Edit]:
    """Re-indent statement lines; retried with more blocks changed until one changes."""
    for p in (rng.uniform(0.4, 1.0), 1.0, 1.0):
        edits: list[Edit] = []
        for line, indent in _new_indents(src, rng, p).items():
            old = src.indent(line)
            if old != indent:
                edits.append((src.line_start(line), src.line_start(line) + len(old), indent))
        if edits:
            return edits
    return []


def inconsistent_format(source: str, rng: random.Random) -> str | None:
    """Mixed indentation widths across blocks, plus stray blank lines and trailing spaces."""
    src = parse(source)
    if src is None:
        return None
    edits = _indent_edits(src, rng)
    blank_p, trailing_p = rng.choice(((0.0, 0.0), (0.15, 0.0), (0.0, 0.2), (0.1, 0.15)))
    starts = sorted(_new_indents(src, rng, 0.0))
    for line in starts:
        if line > 1 and rng.random() < blank_p:
            edits.append((src.line_start(line), src.line_start(line), "\n"))
    for line, text in enumerate(src.lines, start=1):
        if line in src.ends_in_string or text.endswith("\\") or line == len(src.lines):
            continue
        if rng.random() < trailing_p:
            at = src.line_end(line)
            edits.append((at, at, " " * rng.randint(1, 3)))
    return finish(src, edits, same_ast=True)
