"""Readability preference pairs: a correct, readable program (chosen) and the same program
made harder to read by semantics-preserving degradations (rejected).

Every degradation is a pure function ``(source, rng) -> source | None`` that works from the
AST but edits the text in place (AST positions become text edits), so everything it does
not touch keeps its original formatting and the reward model cannot tell the sides apart
by an ``ast.unparse`` accent. Each pair is then checked in the sandbox: both sides must
pass the task's tests, or the pair is dropped and counted.
"""

from __future__ import annotations

import ast
import builtins
import io
import itertools
import keyword
import math
import operator
import random
import symtable
import tokenize
import warnings
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from codealign.execution import ExecutionConfig, execute_samples
from codealign.samples import Sample
from codealign.tasks import Task

# Bump whenever generation changes: the default readability model's cache key hashes it.
DATA_VERSION = 1

Degradation = Callable[[str, random.Random], "str | None"]
Edit = tuple[int, int, str]  # (start, end, replacement) as character offsets
T = TypeVar("T")

_FUNCS = ast.FunctionDef | ast.AsyncFunctionDef
_BUILTINS = frozenset(dir(builtins))
_ENDS_BLOCK = ast.Return | ast.Raise | ast.Continue | ast.Break
# fmt: off
_SIMPLE = (
    ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Return, ast.Pass, ast.Break,
    ast.Continue, ast.Raise, ast.Assert, ast.Delete, ast.Import, ast.ImportFrom,
)
_MEANINGLESS = (
    *"abcdefghkmnpqrstuvwxyz",
    "l", "O", "I", "a1", "b1", "b2", "x_", "_x", "x1", "xx", "aa", "zz", "q1", "v2",
    "tmp", "tmp2", "temp", "var", "foo", "bar", "obj", "thing", "stuff", "data2", "val",
)
_TEMP_NAMES = ("tmp", "tmp2", "tmp3", "temp", "t", "x1", "val", "v", "res", "r2", "aux", "tt")
_RESULT_NAMES = ("result", "res", "ret", "out", "r", "answer", "output", "retval", "tmp", "rv")
_FLAG_NAMES = ("flag", "cond", "check", "ok", "b", "f", "test", "is_ok", "flg", "c")
_INDEX_NAMES = ("i", "idx", "j", "k", "n", "ii", "index", "counter", "cnt", "ix")
_UNUSED_NAMES = ("temp", "tmp", "unused", "old", "val", "dummy", "backup", "prev", "x0", "z")
_UNUSED_VALUES = ("0", "None", "[]", "''", "False", "1", "{}", "-1", '""', "0.0")
_IMPORTS = (  # (name bound, import line)
    ("os", "import os"), ("sys", "import sys"), ("re", "import re"), ("math", "import math"),
    ("itertools", "import itertools"), ("collections", "import collections"),
    ("functools", "import functools"), ("string", "import string"),
    ("random", "import random"), ("copy", "import copy"), ("time", "import time"),
    ("Any", "from typing import Any"), ("defaultdict", "from collections import defaultdict"),
)
_NOISE_COMMENTS = ("# loop", "# TODO: fix", "# hack", "# check", "# do stuff", "# ???", "# ok")
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
_BOOL_METHODS = frozenset((
    "startswith", "endswith", "isdigit", "isalpha", "isalnum", "isupper", "islower",
    "isspace", "istitle", "isdecimal", "isnumeric", "isidentifier", "issubset", "issuperset",
    "isdisjoint",
))
_BOOL_FUNCS = frozenset(("isinstance", "issubclass", "callable", "hasattr", "all", "any", "bool"))
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


# --- source positions and text edits -------------------------------------------------


def _quiet_parse(text: str) -> ast.Module:
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


class _Src:
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


def _parse(text: str) -> _Src | None:
    if "\r" in text:
        return None  # AST and text lines would disagree on what a line is
    try:
        tree = _quiet_parse(text)
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (SyntaxError, ValueError, tokenize.TokenError):
        return None
    return _Src(text, tree, tokens)


def _apply(text: str, edits: Sequence[Edit]) -> str | None:
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


def _finish(src: _Src, edits: Sequence[Edit], *, same_ast: bool = False) -> str | None:
    """The edited text when it compiles and differs (and, for pure formatting, has the
    same AST), else None."""
    if not edits:
        return None
    out = _apply(src.text, edits)
    if out is None or out == src.text or not compiles(out):
        return None
    if same_ast and ast.dump(_quiet_parse(out)) != ast.dump(src.tree):
        return None
    return out


def _unit(indent: str) -> str:
    return "\t" if "\t" in indent else "    "


def _subset(rng: random.Random, items: Sequence[T]) -> list[T]:
    """A random subset: usually all, sometimes about half; never empty unless ``items`` is."""
    p = rng.choice((1.0, 1.0, 0.5))
    chosen = [item for item in items if rng.random() < p]
    if not chosen and items:
        chosen = [rng.choice(items)]
    return chosen


def _identifiers(tree: ast.AST) -> set[str]:
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


def _fresh(rng: random.Random, pool: Sequence[str], taken: set[str]) -> str | None:
    free = [n for n in pool if n not in taken and n not in _BUILTINS and not keyword.iskeyword(n)]
    if not free:
        return None
    name = rng.choice(free)
    taken.add(name)
    return name


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [node for node in ast.walk(tree) if isinstance(node, _FUNCS)]


def _child_blocks(src: _Src, stmt: ast.stmt) -> Iterator[list[ast.stmt]]:
    """The statement lists directly inside ``stmt``; an ``elif`` is not a block of its own
    (nothing may go between it and its ``if``), but its bodies are."""
    if isinstance(stmt, ast.If) and len(stmt.orelse) == 1:
        inner = stmt.orelse[0]
        if isinstance(inner, ast.If) and src.is_elif(inner):
            yield stmt.body
            yield from _child_blocks(src, inner)
            return
    for name in ("body", "orelse", "finalbody"):
        block = getattr(stmt, name, None)
        if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
            yield block
    for handler in getattr(stmt, "handlers", ()):
        yield handler.body
    for case in getattr(stmt, "cases", ()):
        yield case.body


def _own_blocks(src: _Src, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[list[ast.stmt]]:
    """``fn``'s statement lists, not those of functions or classes nested in it."""
    blocks: list[list[ast.stmt]] = []
    stack = [fn.body]
    while stack:
        block = stack.pop()
        blocks.append(block)
        for stmt in block:
            if not isinstance(stmt, _FUNCS | ast.ClassDef):
                stack.extend(_child_blocks(src, stmt))
    return blocks


def _own_statements(src: _Src, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.stmt]:
    return [stmt for block in _own_blocks(src, fn) for stmt in block]


def _insert_points(src: _Src, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[tuple[int, str]]:
    """Offsets where a new line of ``fn``'s code may go, with its indentation."""
    points: list[tuple[int, str]] = []
    for block in _own_blocks(src, fn):
        for i, stmt in enumerate(block):
            if (i == 0 and block is fn.body and _is_docstring(stmt)) or not src.starts_line(stmt):
                continue
            points.append((src.line_start(stmt.lineno), src.indent(stmt.lineno)))
        last = block[-1]
        if src.alone(last) and not (last is fn.body[0] and _is_docstring(last)):
            assert last.end_lineno is not None
            at = src.after_line(last.end_lineno)
            if at < len(src.text) or src.text.endswith("\n"):
                points.append((at, src.indent(last.lineno)))
    return points


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    args = [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]
    return [a.arg for a in args if a.arg not in ("self", "cls")]


def _has_scope_decls(fn: ast.AST) -> bool:
    """``global``/``nonlocal`` make inserted assignments risky (declaration order)."""
    return any(isinstance(n, ast.Global | ast.Nonlocal) for n in ast.walk(fn))


def _copyable(src: _Src, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """One-line simple statements of ``fn`` that may be repeated in dead code."""
    texts = []
    for stmt in _own_statements(src, fn):
        if not isinstance(stmt, ast.Assign | ast.AugAssign | ast.Return | ast.Expr):
            continue
        if _is_docstring(stmt) or stmt.lineno != stmt.end_lineno:
            continue
        if any(isinstance(n, ast.Await | ast.Yield | ast.YieldFrom) for n in ast.walk(stmt)):
            continue
        texts.append(src.seg(stmt))
    return texts


def _repeat(
    source: str, rng: random.Random, once: Callable[[_Src, random.Random], str | None]
) -> str | None:
    """Apply a one-site degradation once or twice (re-parsing in between)."""
    src = _parse(source)
    out = once(src, rng) if src is not None else None
    if out is not None and rng.random() < 0.35:
        again = _parse(out)
        out = (once(again, rng) if again is not None else None) or out
    return out


# --- names ---------------------------------------------------------------------------


def _module_names(source: str) -> set[str] | None:
    """Names bound or referenced at module level: never renamed (tests may use them)."""
    try:
        table = symtable.symtable(source, "<readability>", "exec")
    except SyntaxError:  # parses but does not compile (``return`` outside a function...)
        return None
    return {symbol.get_name() for symbol in table.get_symbols()}


def _def_name_span(src: _Src, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[int, int] | None:
    start = src.start(fn)
    header = src.text[start : src.line_end(fn.lineno)]
    prefix = "async def " if isinstance(fn, ast.AsyncFunctionDef) else "def "
    if not header.startswith(prefix):
        return None
    at = start + len(prefix) + (len(header[len(prefix) :]) - len(header[len(prefix) :].lstrip()))
    return at, at + len(fn.name)


def _rename_sites(
    src: _Src, unit: ast.FunctionDef | ast.AsyncFunctionDef
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
        elif isinstance(node, _FUNCS) and node is not unit:
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
        if isinstance(stmt, _FUNCS):
            units.append(stmt)
        elif isinstance(stmt, ast.ClassDef):
            units += [s for s in stmt.body if isinstance(s, _FUNCS)]
    return units


def rename(source: str, rng: random.Random) -> str | None:
    """Rename parameters, locals and inner functions to meaningless names, consistently.

    Module-level names (the entry point, helpers the tests call), builtins, attributes and
    every name used as a keyword argument somewhere stay as they are.
    """
    src = _parse(source)
    module_names = _module_names(source)
    if src is None or module_names is None:
        return None
    keywords = {k.arg for k in ast.walk(src.tree) if isinstance(k, ast.keyword) and k.arg}
    keep = module_names | keywords | _BUILTINS | {"self", "cls", "_"}
    taken = _identifiers(src.tree) | _BUILTINS
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
        new = _fresh(rng, _MEANINGLESS, taken | used)
        if new is None:
            continue
        used.add(new)
        edits += [(s, e, new) for s, e in spans]
    return _finish(src, edits)


# --- docstrings, comments, type hints ------------------------------------------------


def strip_docstrings(source: str, rng: random.Random) -> str | None:
    """Delete docstrings (a lone docstring becomes ``pass``)."""
    src = _parse(source)
    if src is None:
        return None
    owners: list[Any] = [src.tree, *(n for n in ast.walk(src.tree) if isinstance(n, _FUNCS))]
    owners += [n for n in ast.walk(src.tree) if isinstance(n, ast.ClassDef)]
    sites = [o for o in owners if o.body and _is_docstring(o.body[0]) and src.alone(o.body[0])]
    edits: list[Edit] = []
    for owner in _subset(rng, sites):
        doc = owner.body[0]
        keep = "" if len(owner.body) > 1 else src.indent(doc.lineno) + "pass\n"
        edits.append((src.line_start(doc.lineno), src.after_line(doc.end_lineno), keep))
    return _finish(src, edits)


def strip_comments(source: str, rng: random.Random) -> str | None:
    """Delete comments (a comment-only line goes entirely)."""
    src = _parse(source)
    if src is None:
        return None
    comments = [tok for tok in src.tokens if tok.type == tokenize.COMMENT]
    edits: list[Edit] = []
    for tok in _subset(rng, comments):
        line, col = tok.start
        code = src.lines[line - 1][:col]
        if code.strip():
            start = src.line_start(line) + len(code.rstrip())
            edits.append((start, src.line_start(line) + tok.end[1], ""))
        else:
            edits.append((src.line_start(line), src.after_line(line), ""))
    return _finish(src, edits, same_ast=True)


def _annotation_edits(src: _Src) -> list[Edit]:
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
        elif isinstance(node, _FUNCS) and node.returns is not None:
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
    src = _parse(source)
    if src is None:
        return None
    return _finish(src, _subset(rng, _annotation_edits(src)))


# --- formatting ------------------------------------------------------------------------


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


def _joinable(src: _Src, stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, _SIMPLE)
        and stmt.lineno == stmt.end_lineno
        and src.alone(stmt, comment=False)
        and not any(isinstance(n, ast.JoinedStr) for n in ast.walk(stmt))
    )


def _adjacent(src: _Src, a: ast.stmt, b: ast.stmt) -> bool:
    assert a.end_lineno is not None
    return all(not src.lines[line - 1].strip() for line in range(a.end_lineno + 1, b.lineno))


def _runs(src: _Src, block: list[ast.stmt]) -> list[list[ast.stmt]]:
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


def _crammed(src: _Src, stmts: list[ast.stmt], sep: str) -> str | None:
    texts = [_minify(src.seg(s)) for s in stmts]
    if any(t is None for t in texts):
        return None
    return sep.join(t for t in texts if t is not None)


def _one_liner(src: _Src, stmt: ast.stmt, sep: str) -> Edit | None:
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
        _quiet_parse(header + " pass")
    except SyntaxError:
        return None
    assert stmt.end_lineno is not None
    line = src.indent(stmt.lineno) + header + " " + crammed
    return src.line_start(stmt.lineno), src.line_end(stmt.end_lineno), line


def _cram_edits(
    src: _Src, block: list[ast.stmt], rng: random.Random, p: float, sep: str
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
        for child in _child_blocks(src, stmt):
            edits += _cram_edits(src, child, rng, p, sep)
    return edits


def cram(source: str, rng: random.Random) -> str | None:
    """Crammed formatting: ``a=1; b=2`` on one line, no spaces around operators, and
    ``if x: return y`` one-liners."""
    src = _parse(source)
    if src is None:
        return None
    p = rng.uniform(0.5, 1.0)
    sep = rng.choice(("; ", ";"))
    edits = [
        e for e in _cram_edits(src, src.tree.body, rng, p, sep) if src.text[e[0] : e[1]] != e[2]
    ]
    return _finish(src, edits, same_ast=True)


def _new_indents(src: _Src, rng: random.Random, p: float) -> dict[int, str]:
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


def _indent_edits(src: _Src, rng: random.Random) -> list[Edit]:
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
    src = _parse(source)
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
    return _finish(src, edits, same_ast=True)


# --- needless nesting ------------------------------------------------------------------


def _if_true_once(src: _Src, rng: random.Random) -> str | None:
    """Wrap a run of statements in ``if True:``."""
    runs: list[list[ast.stmt]] = []
    for fn in _functions(src.tree):
        for block in _own_blocks(src, fn):
            start = 1 if block is fn.body and _is_docstring(block[0]) else 0
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
    return _finish(src, [(at, at, header), *src.indent_edits(run[0].lineno, last, _unit(indent))])


def _contiguous(run: list[ast.stmt]) -> bool:
    """The statements follow each other in their block (no skipped statement between)."""
    return all(
        a.end_lineno is not None and a.end_lineno < b.lineno for a, b in itertools.pairwise(run)
    )


def if_true(source: str, rng: random.Random) -> str | None:
    return _repeat(source, rng, _if_true_once)


def _redundant_else_once(src: _Src, rng: random.Random) -> str | None:
    """``else:`` around what follows an ``if`` whose body always leaves the block."""
    sites: list[tuple[ast.If, list[ast.stmt]]] = []
    for fn in _functions(src.tree):
        for block in _own_blocks(src, fn):
            for i, stmt in enumerate(block[:-1]):
                rest = block[i + 1 :]
                if (
                    isinstance(stmt, ast.If)
                    and not stmt.orelse
                    and isinstance(stmt.body[-1], _ENDS_BLOCK)
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
    return _finish(
        src, [(at, at, indent + "else:\n"), *src.indent_edits(rest[0].lineno, last, _unit(indent))]
    )


def redundant_else(source: str, rng: random.Random) -> str | None:
    return _repeat(source, rng, _redundant_else_once)


def _else_pass_once(src: _Src, rng: random.Random) -> str | None:
    """An ``else: pass`` after an ``if`` that had no ``else``."""
    sites = [
        s
        for fn in _functions(src.tree)
        for s in _own_statements(src, fn)
        if isinstance(s, ast.If) and not s.orelse and src.alone(s) and not src.is_elif(s)
    ]
    if not sites:
        return None
    stmt = rng.choice(sites)
    indent = src.indent(stmt.lineno)
    assert stmt.end_lineno is not None
    text = f"{indent}else:\n{indent}{_unit(indent)}pass\n"
    return _finish(src, [src.insert_after(stmt.end_lineno, text)])


def else_pass(source: str, rng: random.Random) -> str | None:
    return _repeat(source, rng, _else_pass_once)


def _operand(src: _Src, node: ast.expr) -> str:
    """Source of an operand of ``and`` that stays correct on its own line or joined again."""
    text = src.seg(node)
    if isinstance(node, ast.BoolOp | ast.IfExp | ast.Lambda | ast.NamedExpr) or "\n" in text:
        return f"({text})"
    return text


def _nested_ifs_once(src: _Src, rng: random.Random) -> str | None:
    """``if a and b:`` becomes ``if a:`` / ``if b:``."""
    sites = [
        s
        for fn in _functions(src.tree)
        for s in _own_statements(src, fn)
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
    unit = _unit(indent)
    inner = f"{indent}{unit}if {' and '.join(_operand(src, v) for v in rest)}:\n"
    edits = [
        (src.start(stmt.test), src.end(stmt.test), _operand(src, first)),
        src.insert_after(stmt.lineno, inner),
        *src.indent_edits(stmt.lineno + 1, stmt.end_lineno, unit),
    ]
    return _finish(src, edits)


def nested_ifs(source: str, rng: random.Random) -> str | None:
    return _repeat(source, rng, _nested_ifs_once)


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


def _bool_return_once(src: _Src, rng: random.Random) -> str | None:
    """``return cond`` becomes ``if cond: return True`` / ``else: return False``."""
    sites: list[ast.Return] = []
    for fn in _functions(src.tree):
        names = _bool_names(fn)
        sites += [
            s
            for s in _own_statements(src, fn)
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
    unit = _unit(indent)
    cond = src.seg(stmt.value)
    if "\n" in cond or isinstance(stmt.value, ast.NamedExpr):
        cond = f"({cond})"
    lines = [f"{indent}if {cond}:", f"{indent}{unit}return True"]
    if rng.random() < 0.6:
        lines += [f"{indent}else:", f"{indent}{unit}return False"]
    else:
        lines.append(f"{indent}return False")
    edit = (src.line_start(stmt.lineno), src.line_end(stmt.end_lineno), "\n".join(lines))
    return _finish(src, [edit])


def bool_return(source: str, rng: random.Random) -> str | None:
    return _repeat(source, rng, _bool_return_once)


# --- needless state --------------------------------------------------------------------


def _temp_return_once(src: _Src, rng: random.Random) -> str | None:
    """``return expr`` becomes ``result = expr`` / ``return result``."""
    sites = [
        s
        for fn in _functions(src.tree)
        for s in _own_statements(src, fn)
        if isinstance(s, ast.Return)
        and s.value is not None
        and not (isinstance(s.value, ast.Constant) and s.value.value is None)
        and src.alone(s)
    ]
    if not sites:
        return None
    stmt = rng.choice(sites)
    assert stmt.value is not None and stmt.end_lineno is not None
    taken = _identifiers(src.tree)
    name = _fresh(rng, _RESULT_NAMES, taken)
    if name is None:
        return None
    start = src.start(stmt)
    gap = src.text[start + len("return") : src.start(stmt.value)]
    skip = len("return") + len(gap) - len(gap.lstrip(" \t"))
    indent = src.indent(stmt.lineno)
    tail = [f"{indent}return {name}\n"]
    chained = _fresh(rng, _RESULT_NAMES, taken) if rng.random() < 0.3 else None
    if chained is not None:
        tail = [f"{indent}{chained} = {name}\n", f"{indent}return {chained}\n"]
    edits = [(start, start + skip, f"{name} = "), src.insert_after(stmt.end_lineno, "".join(tail))]
    return _finish(src, edits)


def temp_return(source: str, rng: random.Random) -> str | None:
    return _repeat(source, rng, _temp_return_once)


def _pure(node: ast.expr) -> bool:
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


def _temp_vars_once(src: _Src, rng: random.Random) -> str | None:
    """Pull a sub-expression out into a needless temporary variable."""
    sites: list[tuple[ast.stmt, ast.expr]] = []
    for fn in _functions(src.tree):
        for stmt in _own_statements(src, fn):
            value = getattr(stmt, "value", None)
            if not isinstance(stmt, ast.Return | ast.Assign | ast.AugAssign):
                continue
            if not isinstance(value, ast.expr) or not _pure(value) or not src.starts_line(stmt):
                continue
            if isinstance(stmt, ast.Assign) and len(stmt.targets) != 1:
                continue
            sites += [(stmt, sub) for sub in _extractable(value)]
    if not sites:
        return None
    stmt, sub = rng.choice(sites)
    name = _fresh(rng, _TEMP_NAMES, _identifiers(src.tree))
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
    return _finish(src, edits)


def temp_vars(source: str, rng: random.Random) -> str | None:
    return _repeat(source, rng, _temp_vars_once)


def _flag_var_once(src: _Src, rng: random.Random) -> str | None:
    """``if cond:`` becomes ``flag = cond`` / ``if flag:``."""
    sites = [
        s
        for fn in _functions(src.tree)
        for s in _own_statements(src, fn)
        if isinstance(s, ast.If) and src.starts_line(s) and not src.is_elif(s)
    ]
    if not sites:
        return None
    stmt = rng.choice(sites)
    name = _fresh(rng, _FLAG_NAMES, _identifiers(src.tree))
    if name is None:
        return None
    value = (
        _operand(src, stmt.test) if not isinstance(stmt.test, ast.BoolOp) else src.seg(stmt.test)
    )
    if "\n" in value and not value.startswith("("):
        value = f"({value})"
    at = src.line_start(stmt.lineno)
    edits = [
        (at, at, f"{src.indent(stmt.lineno)}{name} = {value}\n"),
        (src.start(stmt.test), src.end(stmt.test), name),
    ]
    return _finish(src, edits)


def flag_var(source: str, rng: random.Random) -> str | None:
    return _repeat(source, rng, _flag_var_once)


def _bool_compare_once(src: _Src, rng: random.Random) -> str | None:
    """``if ok:`` becomes ``if ok == True:``, ``if not ok:`` becomes ``if ok == False:``."""
    sites: list[tuple[ast.expr, set[str]]] = []
    for fn in _functions(src.tree):
        names = _bool_names(fn)
        for stmt in _own_statements(src, fn):
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
    return _finish(src, [(src.start(test), src.end(test), f"{text} == {literal}")])


def bool_compare(source: str, rng: random.Random) -> str | None:
    return _repeat(source, rng, _bool_compare_once)


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
        if isinstance(node, _FUNCS | ast.ClassDef | ast.Lambda):
            continue
        stack += ast.iter_child_nodes(node)
    return False


def _loop_edits(
    src: _Src,
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
    if not header_ok or any(isinstance(n, _FUNCS | ast.Lambda) for n in ast.walk(loop)):
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
    src: _Src, fn: ast.AST, loop: ast.For, body_indent: str, last: int
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
    if not _stable_bound(loop, stop) or not all(_pure(a) for a in args):
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


def _index_loop_once(src: _Src, rng: random.Random) -> str | None:
    """Direct iteration becomes ``range(len(seq))`` or a ``while`` with a manual counter."""
    sites = [
        (fn, s)
        for fn in _functions(src.tree)
        for s in _own_statements(src, fn)
        if isinstance(s, ast.For)
    ]
    rng.shuffle(sites)
    taken = _identifiers(src.tree)
    for fn, loop in sites:
        index = _fresh(rng, _INDEX_NAMES, set(taken))
        if index is None:
            return None
        edits = _loop_edits(src, fn, loop, index, rng)
        out = _finish(src, edits) if edits else None
        if out is not None:
            return out
    return None


def index_loop(source: str, rng: random.Random) -> str | None:
    return _repeat(source, rng, _index_loop_once)


# --- magic numbers ---------------------------------------------------------------------

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


def _literal_text(src: _Src, node: ast.expr) -> str | None:
    """Source text that can replace a name bound to ``node``, or None if not a literal."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str):
        if isinstance(node.value, bool):
            return None
        text = src.seg(node)
        return text if "\n" not in text else f"({text})"
    if _number(node) is not None and src.start(node) < src.end(node):
        return f"({src.seg(node)})"
    return None


def _constant_sites(src: _Src) -> list[tuple[ast.Assign, str, list[ast.Name]]]:
    """Module UPPER_CASE constants and function locals bound once to a literal, with the
    literal and every use to replace."""
    sites: list[tuple[ast.Assign, str, list[ast.Name]]] = []
    scopes: list[tuple[ast.AST, list[ast.stmt], bool]] = [(src.tree, src.tree.body, True)]
    scopes += [(fn, fn.body, False) for fn in _functions(src.tree)]
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
    if isinstance(node, _FUNCS | ast.ClassDef):
        return {node.name}
    return set()


def _fold_sites(src: _Src) -> list[tuple[ast.expr, str]]:
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
    src = _parse(source)
    if src is None:
        return None
    edits: list[Edit] = []
    for stmt, literal, uses in _subset(rng, _constant_sites(src)):
        assert stmt.end_lineno is not None
        edits.append((src.line_start(stmt.lineno), src.after_line(stmt.end_lineno), ""))
        edits += [(src.start(n), src.end(n), literal) for n in uses]
    replaced = [(s, e) for s, e, _ in edits]
    for node, text in _subset(rng, _fold_sites(src)):
        start, end = src.start(node), src.end(node)
        if not any(s < end and start < e for s, e in replaced):
            edits.append((start, end, text))
    return _finish(src, edits)


# --- dead code -------------------------------------------------------------------------


def _dead_line(
    src: _Src, fn: ast.FunctionDef | ast.AsyncFunctionDef, rng: random.Random, avoid: str = ""
) -> str:
    """A plausible statement for code that never runs: a copy of one of ``fn``'s own."""
    options = [*_copyable(src, fn), "return None"]
    options += [f"print({p})" for p in _params(fn)]
    return rng.choice([o for o in options if o != avoid])


def _dead_branch_once(src: _Src, rng: random.Random) -> str | None:
    """An ``if False:`` block."""
    sites = [
        (fn, point)
        for fn in _functions(src.tree)
        if not _has_scope_decls(fn)
        for point in _insert_points(src, fn)
    ]
    if not sites:
        return None
    fn, (at, indent) = rng.choice(sites)
    guard = rng.choice(("if False:", "if False:", "if 0:", "while False:"))
    text = f"{indent}{guard}\n{indent}{_unit(indent)}{_dead_line(src, fn, rng)}\n"
    return _finish(src, [(at, at, text)])


def dead_branch(source: str, rng: random.Random) -> str | None:
    return _repeat(source, rng, _dead_branch_once)


def _unreachable_once(src: _Src, rng: random.Random) -> str | None:
    """A statement after a ``return`` (or raise/break/continue) that ends its block."""
    sites: list[tuple[ast.FunctionDef | ast.AsyncFunctionDef, ast.stmt]] = []
    for fn in _functions(src.tree):
        if _has_scope_decls(fn):
            continue
        for block in _own_blocks(src, fn):
            if isinstance(block[-1], _ENDS_BLOCK) and src.alone(block[-1]):
                sites.append((fn, block[-1]))
    if not sites:
        return None
    fn, stmt = rng.choice(sites)
    assert stmt.end_lineno is not None
    text = f"{src.indent(stmt.lineno)}{_dead_line(src, fn, rng, avoid=src.seg(stmt))}\n"
    return _finish(src, [src.insert_after(stmt.end_lineno, text)])


def unreachable_code(source: str, rng: random.Random) -> str | None:
    return _repeat(source, rng, _unreachable_once)


def _unused_assign_once(src: _Src, rng: random.Random) -> str | None:
    """An assignment to a variable nobody reads."""
    sites = [(fn, p) for fn in _functions(src.tree) for p in _insert_points(src, fn)]
    if not sites:
        return None
    fn, (at, indent) = rng.choice(sites)
    name = _fresh(rng, _UNUSED_NAMES, _identifiers(src.tree))
    if name is None:
        return None
    value = rng.choice([*_UNUSED_VALUES, *_params(fn)[:1]])
    return _finish(src, [(at, at, f"{indent}{name} = {value}\n")])


def unused_assign(source: str, rng: random.Random) -> str | None:
    return _repeat(source, rng, _unused_assign_once)


def _preamble(body: list[ast.stmt]) -> int:
    """How many statements (docstring, ``__future__`` imports) must stay first."""
    skip = 1 if body and _is_docstring(body[0]) else 0
    while (
        skip < len(body)
        and isinstance(body[skip], ast.ImportFrom)
        and getattr(body[skip], "module", None) == "__future__"
    ):
        skip += 1
    return skip


def unused_import(source: str, rng: random.Random) -> str | None:
    """One or two imports nothing uses, among the existing imports or at the top."""
    src = _parse(source)
    if src is None:
        return None
    body = src.tree.body
    skip = _preamble(body)
    if skip >= len(body) or not src.starts_line(body[skip]):
        return None
    taken = _identifiers(src.tree)
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
    spacer = "\n\n" if isinstance(body[skip], _FUNCS | ast.ClassDef) else ""
    points.append((first, first, lines + spacer))
    return _finish(src, [rng.choice(points)])


def _commented_code_once(src: _Src, rng: random.Random) -> str | None:
    """Commented-out code (or a comment that says nothing) on a line of its own."""
    sites = [(fn, p) for fn in _functions(src.tree) for p in _insert_points(src, fn)]
    if not sites:
        return None
    fn, (at, indent) = rng.choice(sites)
    if rng.random() < 0.7:
        code = _dead_line(src, fn, rng)
        text = rng.choice(("#", "# ")) + code
    else:
        text = rng.choice(_NOISE_COMMENTS)
    return _finish(src, [(at, at, f"{indent}{text}\n")])


def commented_code(source: str, rng: random.Random) -> str | None:
    return _repeat(source, rng, _commented_code_once)


# --- composition -----------------------------------------------------------------------

# Name -> degradation; ``degrade`` reads it at call time (tests swap it).
DEGRADATIONS: dict[str, Degradation] = {
    "rename": rename,
    "strip_docstrings": strip_docstrings,
    "strip_comments": strip_comments,
    "strip_type_hints": strip_type_hints,
    "cram": cram,
    "inconsistent_format": inconsistent_format,
    "if_true": if_true,
    "redundant_else": redundant_else,
    "else_pass": else_pass,
    "nested_ifs": nested_ifs,
    "bool_return": bool_return,
    "temp_return": temp_return,
    "temp_vars": temp_vars,
    "flag_var": flag_var,
    "bool_compare": bool_compare,
    "index_loop": index_loop,
    "magic_numbers": magic_numbers,
    "dead_branch": dead_branch,
    "unreachable_code": unreachable_code,
    "unused_assign": unused_assign,
    "unused_import": unused_import,
    "commented_code": commented_code,
}
# The smells every hand-written unreadable program has come up more often.
_WEIGHTS = {"rename": 3.0, "strip_docstrings": 2.0, "strip_type_hints": 2.0, "cram": 2.0}


def degrade(
    source: str, rng: random.Random, k: int | None = None
) -> tuple[str, tuple[str, ...]] | None:
    """``source`` after ``k`` (default: 1 to 4, at random) degradations that apply, in a
    random weighted order, with their names; None when none applies."""
    if k is None:
        k = rng.randint(1, 4)
    # Weighted order without replacement: sort by u ** (1 / weight).
    names = sorted(DEGRADATIONS, key=lambda n: rng.random() ** (1 / _WEIGHTS.get(n, 1.0)))
    names.reverse()
    applied: list[str] = []
    current = source
    for name in names:
        if len(applied) >= k:
            break
        out = DEGRADATIONS[name](current, rng)
        if out is not None and out != current:
            current = out
            applied.append(name)
    return (current, tuple(applied)) if applied else None


# --- pairs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadabilityPair:
    prompt: str  # the task prompt (what the reward model is conditioned on)
    chosen: str  # the readable program (whole program text)
    rejected: str  # the degraded program
    source: str  # "tiny" | "humaneval" | ...
    family: str  # template or task id, for holding out families
    degradations: tuple[str, ...]
    task_id: str


def source_label(task: Task) -> str:
    """Where a task comes from: ``tiny``, ``humaneval``, or its id's prefix."""
    if task.task_id.startswith("tiny/"):
        return "tiny"
    if task.task_id.startswith("HumanEval/"):
        return "humaneval"
    label = task.metadata.get("source")
    return str(label) if label else task.task_id.split("/")[0].lower()


def family_label(task: Task) -> str:
    """The unit to hold out together: a tiny task's template, otherwise the task itself."""
    template = task.metadata.get("template")
    if source_label(task) == "tiny" and template:
        return str(template)
    return task.task_id


_COUNT_KEYS = (
    "tasks",
    "generated",
    "kept",
    "dropped_not_equivalent",
    "dropped_identical",
    "dropped_syntax",
    "dropped_duplicate",
    "dropped_chosen_failed",
    "not_degradable",
    "no_solution",
)


@dataclass(frozen=True)
class _Candidate:
    task: Task
    chosen: str
    rejected: str
    degradations: tuple[str, ...]


def _candidates(
    plan: Sequence[tuple[Task, int]], seed: int, counts: Counter[str]
) -> list[_Candidate]:
    """Degraded versions of each task's canonical program, filtered by text alone."""
    out: list[_Candidate] = []
    for task, n in plan:
        chosen = task.canonical_program()
        counts["tasks"] += 1
        if chosen is None:
            counts["no_solution"] += 1
            continue
        seen: set[str] = set()
        for j in range(n):
            rng = random.Random(f"readability:{DATA_VERSION}:{seed}:{task.task_id}:{j}")
            degraded = degrade(chosen, rng)
            if degraded is None:
                counts["not_degradable"] += 1
                continue
            rejected, names = degraded
            counts["generated"] += 1
            if rejected == chosen:
                counts["dropped_identical"] += 1
            elif not compiles(rejected):
                counts["dropped_syntax"] += 1
            elif rejected in seen:
                counts["dropped_duplicate"] += 1
            else:
                seen.add(rejected)
                out.append(_Candidate(task, chosen, rejected, names))
    return out


def _firsts(candidates: Sequence[_Candidate]) -> list[tuple[str, _Candidate]]:
    """One candidate per task, in order of first appearance."""
    firsts: dict[str, _Candidate] = {}
    for c in candidates:
        firsts.setdefault(c.task.task_id, c)
    return list(firsts.items())


def _generate(
    plan: Sequence[tuple[Task, int]], seed: int, config: ExecutionConfig | None, progress: bool
) -> tuple[list[ReadabilityPair], dict[str, int]]:
    ids = [task.task_id for task, _ in plan]
    if len(set(ids)) != len(ids):
        raise ValueError("task ids must be unique")
    counts: Counter[str] = Counter(dict.fromkeys(_COUNT_KEYS, 0))
    candidates = _candidates(plan, seed, counts)
    tasks = {c.task.task_id: c.task for c in candidates}
    # One batch: each task's chosen program once, then every rejected one.
    chosen = [
        Sample(tid, i, 0, solution=c.chosen) for i, (tid, c) in enumerate(_firsts(candidates))
    ]
    rejected = [
        Sample(c.task.task_id, len(chosen) + i, 0, solution=c.rejected)
        for i, c in enumerate(candidates)
    ]
    samples = chosen + rejected
    results = (
        execute_samples(tasks, samples, config or ExecutionConfig(), progress=progress)
        if samples
        else []
    )
    chosen_ok = {s.task_id: r.passed for s, r in zip(chosen, results, strict=False)}
    pairs: list[ReadabilityPair] = []
    for c, result in zip(candidates, results[len(chosen) :], strict=True):
        if not chosen_ok[c.task.task_id]:
            counts["dropped_chosen_failed"] += 1
        elif not result.passed:
            counts["dropped_not_equivalent"] += 1
        else:
            pairs.append(
                ReadabilityPair(
                    prompt=c.task.prompt,
                    chosen=c.chosen,
                    rejected=c.rejected,
                    source=source_label(c.task),
                    family=family_label(c.task),
                    degradations=c.degradations,
                    task_id=c.task.task_id,
                )
            )
    counts["kept"] = len(pairs)
    return pairs, dict(counts)


def generate_pairs(
    tasks: Sequence[Task],
    *,
    per_task: int = 2,
    seed: int = 0,
    config: ExecutionConfig | None = None,
    progress: bool = False,
) -> tuple[list[ReadabilityPair], dict[str, int]]:
    """Up to ``per_task`` pairs per task with a canonical solution, each checked in the
    sandbox: both sides must pass the task's tests.

    Counts: ``generated`` degraded programs = ``kept`` + the ``dropped_*`` ones
    (``not_equivalent``: the rejected side failed; ``identical``; ``syntax``: it does not
    compile; ``duplicate`` of another pair of the same task; ``chosen_failed``).
    Deterministic for a seed (up to sandbox flakiness such as timeouts).
    """
    return _generate([(task, per_task) for task in tasks], seed, config, progress)


_BUILTIN_PER_TASK = {"tiny": 2, "humaneval": 4}


def builtin_pairs(
    seed: int = 0, config: ExecutionConfig | None = None
) -> tuple[list[ReadabilityPair], dict[str, int]]:
    """Pairs from the tiny family (train and held-out splits, 2 per task) and HumanEval's
    canonical solutions (4 per task): about 1,600 pairs."""
    from codealign.tasks import load_tasks
    from codealign.tasks.tiny import tiny_tasks

    tasks = [*tiny_tasks("train"), *tiny_tasks("heldout"), *load_tasks("humaneval")]
    plan = [(task, _BUILTIN_PER_TASK[source_label(task)]) for task in tasks]
    return _generate(plan, seed, config, progress=False)


def pair_records(pairs: Sequence[ReadabilityPair]) -> list[dict[str, Any]]:
    """JSONL-ready records (``write_jsonl``)."""
    return [
        {
            "prompt": p.prompt,
            "chosen": p.chosen,
            "rejected": p.rejected,
            "source": p.source,
            "family": p.family,
            "degradations": list(p.degradations),
            "task_id": p.task_id,
        }
        for p in pairs
    ]
