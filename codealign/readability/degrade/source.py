"""The source-editing toolkit every degradation shares.

Degradations read the AST but edit the text: an AST position becomes an ``Edit``, a
(start, end, replacement) triple of character offsets, and ``finish`` applies a set of
them, keeping the result only when it compiles and differs. Everything a degradation does
not touch keeps its original formatting, so the reward model cannot tell the sides of a
pair apart by an ``ast.unparse`` accent.

Also here: where code may be edited (a function's own blocks and statements, insertion
points), fresh names that collide with nothing, small AST predicates (docstrings, pure
expressions) and ``repeat``, which applies a one-site degradation once or twice.
"""

from __future__ import annotations

import ast
import builtins
import io
import keyword
import random
import tokenize
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

Edit = tuple[int, int, str]  # (start, end, replacement) as character offsets
T = TypeVar("T")
FUNCS = ast.FunctionDef | ast.AsyncFunctionDef
BUILTINS = frozenset(dir(builtins))  # never renamed, never chosen as a new name
ENDS_BLOCK = ast.Return | ast.Raise | ast.Continue | ast.Break  # the rest of the block is dead
# Calls without side effects (``pure``): an expression made of them may move.
# fmt: off
_PURE_FUNCS = frozenset((
    "len", "abs", "min", "max", "sum", "sorted", "str", "int", "float", "round", "list",
    "tuple", "set", "bool", "ord", "chr", "range", "divmod", "pow", "repr", "any", "all",
    "reversed", "enumerate", "zip", "dict", "frozenset",
))
_PURE_METHODS = frozenset((
    "lower", "upper", "strip", "lstrip", "rstrip", "split", "rsplit", "join", "replace",
    "startswith", "endswith", "count", "index", "find", "rfind", "isdigit", "isalpha",
    "isalnum", "isupper", "islower", "isspace", "title", "capitalize", "swapcase", "get",
    "items", "keys", "values", "copy", "format", "zfill", "center", "ljust", "rjust",
    "partition", "splitlines",
))
# fmt: on


def quiet_parse(text: str) -> ast.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escapes in old code: not our business
        return ast.parse(text)


def compiles(text: str) -> bool:
    """Whether ``text`` compiles (stricter than parsing: e.g. ``return`` outside a def)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            compile(text, "<readability>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def _string_lines(tokens: list[tokenize.TokenInfo]) -> tuple[set[int], set[int]]:
    """Lines that begin inside a string literal, and lines that end inside one."""
    begins: set[int] = set()
    ends: set[int] = set()
    fstring_start = getattr(tokenize, "FSTRING_START", -1)  # 3.12+ splits f-strings
    fstring_end = getattr(tokenize, "FSTRING_END", -1)
    opened: list[int] = []
    for tok in tokens:
        if tok.type == fstring_start:
            opened.append(tok.start[0])
            continue
        if tok.type == tokenize.STRING:
            first, last = tok.start[0], tok.end[0]
        elif tok.type == fstring_end and opened:
            first, last = opened.pop(), tok.end[0]
        else:
            continue
        begins.update(range(first + 1, last + 1))
        ends.update(range(first, last))
    return begins, ends


class Src:
    """A parsed program and offset helpers (AST columns are UTF-8 byte offsets)."""

    def __init__(self, text: str, tree: ast.Module, tokens: list[tokenize.TokenInfo]) -> None:
        self.text = text
        self.tree = tree
        self.tokens = tokens
        self.lines = text.split("\n")
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line) + 1)
        self.begins_in_string, self.ends_in_string = _string_lines(tokens)

    def pos(self, line: int, byte_col: int) -> int:
        text = self.lines[line - 1]
        if not text.isascii():
            byte_col = len(text.encode("utf-8")[:byte_col].decode("utf-8", "replace"))
        return self.starts[line - 1] + byte_col

    def start(self, node: ast.stmt | ast.expr) -> int:
        return self.pos(node.lineno, node.col_offset)

    def end(self, node: ast.stmt | ast.expr) -> int:
        assert node.end_lineno is not None and node.end_col_offset is not None
        return self.pos(node.end_lineno, node.end_col_offset)

    def seg(self, node: ast.stmt | ast.expr) -> str:
        return self.text[self.start(node) : self.end(node)]

    def line_start(self, line: int) -> int:
        return self.starts[line - 1]

    def line_end(self, line: int) -> int:
        """The offset of the line's newline (or the end of the text)."""
        return self.starts[line - 1] + len(self.lines[line - 1])

    def after_line(self, line: int) -> int:
        return min(self.starts[line], len(self.text))

    def insert_after(self, line: int, text: str) -> Edit:
        """An edit putting the lines ``text`` (ending in a newline) after ``line``."""
        at = self.after_line(line)
        if at == len(self.text) and not self.text.endswith("\n"):
            text = "\n" + text.rstrip("\n")
        return at, at, text

    def indent(self, line: int) -> str:
        text = self.lines[line - 1]
        return text[: len(text) - len(text.lstrip(" \t"))]

    def starts_line(self, node: ast.stmt) -> bool:
        """Nothing but indentation precedes the statement on its line (no decorators)."""
        if getattr(node, "decorator_list", None):
            return False
        return self.text[self.line_start(node.lineno) : self.start(node)].strip() == ""

    def ends_line(self, node: ast.stmt, comment: bool = True) -> bool:
        """Nothing but whitespace (or, with ``comment``, a comment) follows the node."""
        assert node.end_lineno is not None
        rest = self.text[self.end(node) : self.line_end(node.end_lineno)].strip()
        return rest == "" or (comment and rest.startswith("#"))

    def alone(self, node: ast.stmt, comment: bool = True) -> bool:
        return self.starts_line(node) and self.ends_line(node, comment)

    def is_elif(self, node: ast.If) -> bool:
        return self.text.startswith("elif", self.start(node))

    def indent_edits(self, first: int, last: int, unit: str) -> list[Edit]:
        """Indent lines ``first..last`` by ``unit``, leaving string contents alone."""
        return [
            (self.starts[line - 1], self.starts[line - 1], unit)
            for line in range(first, last + 1)
            if line not in self.begins_in_string and self.lines[line - 1].strip()
        ]


def parse(text: str) -> Src | None:
    if "\r" in text:
        return None  # AST and text lines would disagree on what a line is
    try:
        tree = quiet_parse(text)
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (SyntaxError, ValueError, tokenize.TokenError):
        return None
    return Src(text, tree, tokens)


def apply_edits(text: str, edits: Sequence[Edit]) -> str | None:
    """``text`` with non-overlapping edits applied; same-offset insertions keep list order."""
    order = sorted(range(len(edits)), key=lambda i: (edits[i][0], edits[i][1], i))
    pieces: list[str] = []
    cursor = 0
    for i in order:
        start, end, replacement = edits[i]
        if start < cursor:
            return None
        pieces += [text[cursor:start], replacement]
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def finish(src: Src, edits: Sequence[Edit], *, same_ast: bool = False) -> str | None:
    """The edited text when it compiles and differs (and, for pure formatting, has the
    same AST), else None."""
    if not edits:
        return None
    out = apply_edits(src.text, edits)
    if out is None or out == src.text or not compiles(out):
        return None
    if same_ast and ast.dump(quiet_parse(out)) != ast.dump(src.tree):
        return None
    return out


def indent_unit(indent: str) -> str:
    return "\t" if "\t" in indent else "    "


def subset(rng: random.Random, items: Sequence[T]) -> list[T]:
    """A random subset: usually all, sometimes about half; never empty unless ``items`` is."""
    p = rng.choice((1.0, 1.0, 0.5))
    chosen = [item for item in items if rng.random() < p]
    if not chosen and items:
        chosen = [rng.choice(items)]
    return chosen


def identifiers(tree: ast.AST) -> set[str]:
    """Every identifier the program mentions, so that new names never collide."""
    names: set[str] = set()
    for node in ast.walk(tree):
        for field in ("id", "arg", "name", "asname", "attr"):
            value = getattr(node, field, None)
            if isinstance(value, str):
                names.add(value)
        if isinstance(node, ast.Global | ast.Nonlocal):
            names.update(node.names)
        if isinstance(node, ast.alias):
            names.add(node.name.split(".")[0])
    return names


def fresh(rng: random.Random, pool: Sequence[str], taken: set[str]) -> str | None:
    free = [n for n in pool if n not in taken and n not in BUILTINS and not keyword.iskeyword(n)]
    if not free:
        return None
    name = rng.choice(free)
    taken.add(name)
    return name


def is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [node for node in ast.walk(tree) if isinstance(node, FUNCS)]


def child_blocks(src: Src, stmt: ast.stmt) -> Iterator[list[ast.stmt]]:
    """The statement lists directly inside ``stmt``; an ``elif`` is not a block of its own
    (nothing may go between it and its ``if``), but its bodies are."""
    if isinstance(stmt, ast.If) and len(stmt.orelse) == 1:
        inner = stmt.orelse[0]
        if isinstance(inner, ast.If) and src.is_elif(inner):
            yield stmt.body
            yield from child_blocks(src, inner)
            return
    for name in ("body", "orelse", "finalbody"):
        block = getattr(stmt, name, None)
        if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
            yield block
    for handler in getattr(stmt, "handlers", ()):
        yield handler.body
    for case in getattr(stmt, "cases", ()):
        yield case.body


def own_blocks(src: Src, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[list[ast.stmt]]:
    """``fn``'s statement lists, not those of functions or classes nested in it."""
    blocks: list[list[ast.stmt]] = []
    stack = [fn.body]
    while stack:
        block = stack.pop()
        blocks.append(block)
        for stmt in block:
            if not isinstance(stmt, FUNCS | ast.ClassDef):
                stack.extend(child_blocks(src, stmt))
    return blocks


def own_statements(src: Src, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.stmt]:
    return [stmt for block in own_blocks(src, fn) for stmt in block]


def insert_points(src: Src, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[tuple[int, str]]:
    """Offsets where a new line of ``fn``'s code may go, with its indentation."""
    points: list[tuple[int, str]] = []
    for block in own_blocks(src, fn):
        for i, stmt in enumerate(block):
            if (i == 0 and block is fn.body and is_docstring(stmt)) or not src.starts_line(stmt):
                continue
            points.append((src.line_start(stmt.lineno), src.indent(stmt.lineno)))
        last = block[-1]
        if src.alone(last) and not (last is fn.body[0] and is_docstring(last)):
            assert last.end_lineno is not None
            at = src.after_line(last.end_lineno)
            if at < len(src.text) or src.text.endswith("\n"):
                points.append((at, src.indent(last.lineno)))
    return points


def operand(src: Src, node: ast.expr) -> str:
    """Source of an operand of ``and`` that stays correct on its own line or joined again."""
    text = src.seg(node)
    if isinstance(node, ast.BoolOp | ast.IfExp | ast.Lambda | ast.NamedExpr) or "\n" in text:
        return f"({text})"
    return text


def pure(node: ast.expr) -> bool:
    """No side effects: only operators, subscripts and calls of known pure functions."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.NamedExpr | ast.Await | ast.Yield | ast.YieldFrom | ast.Lambda):
            return False
        if isinstance(sub, ast.Call):
            func = sub.func
            if isinstance(func, ast.Name) and func.id in _PURE_FUNCS:
                continue
            if isinstance(func, ast.Attribute) and func.attr in _PURE_METHODS:
                continue
            return False
    return True


def repeat(
    source: str, rng: random.Random, once: Callable[[Src, random.Random], str | None]
) -> str | None:
    """Apply a one-site degradation once or twice (re-parsing in between)."""
    src = parse(source)
    out = once(src, rng) if src is not None else None
    if out is not None and rng.random() < 0.35:
        again = parse(out)
        out = (once(again, rng) if again is not None else None) or out
    return out
