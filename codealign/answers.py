"""From an instruct model's answer to the program that is run: pure functions, no torch.

A chat answer is prose around code, or code alone; it may be cut at the token limit. The
rules, in order (what evalplus's ``sanitize`` and the usual instruct harnesses do, written
for the standard library's ``ast``):

1. **Code**: the fenced blocks (the longest one that defines the entry point, else the
   longest), or, with no fence, the longest span of lines starting at a top-level
   ``def``/``class``/``import``/``from``/``@`` that parses.
2. **Complete statements only**: code that does not parse (an answer cut mid-line) is cut
   back to its longest prefix of lines that does.
3. **Definitions only**: top-level statements other than imports, functions, classes and
   assignments, or ``if``/``try`` blocks of them (``print(...)`` demos, the model's own
   ``assert`` examples, an ``if __name__ == "__main__":`` block) are dropped: a wrong
   example of the model's own must not fail a right function, and a demo's output is not
   the task's.
4. **The task's imports**: the import lines of a code prompt (``from typing import List``)
   are put in front, as the prompt already declared them to the model.

What the answer looked like is kept beside the program (``AnswerReport``): where the code
came from, whether it defines the entry point under its name, whether it was cut.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Literal

from codealign.tasks.model import defines

_FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_CODE_START = re.compile(r"^(?:def |class |import |from \S+ import |@|async def )")
_KEPT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_ASSIGNMENTS = (ast.Assign, ast.AnnAssign)

_ANY_DEF = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]+\w", re.MULTILINE)

CodeSource = Literal["fence", "text", "none"]
EntryPoint = Literal["defined", "body", "other_name"]


@dataclass(frozen=True)
class AnswerReport:
    """What the answer was, beside the program made of it."""

    code_from: CodeSource  # a fenced block, lines of plain text, or nothing code-like
    entry_point: EntryPoint  # defined by its name, a body, or only other functions defined
    cut_to_parse: bool  # the code did not parse and was cut back to what does
    dropped_statements: int  # top-level statements other than definitions, dropped


def fenced_blocks(text: str) -> list[str]:
    """The contents of ``text``'s python (or untagged) markdown fences; an unclosed last
    fence runs to the end of the text."""
    return list(_FENCE.findall(text))


def _parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return True


def longest_parsing_prefix(source: str) -> str:
    """``source`` cut back to its longest prefix of whole lines that parses ('' if none)."""
    if _parses(source):
        return source
    lines = source.splitlines(keepends=True)
    for end in range(len(lines) - 1, 0, -1):
        candidate = "".join(lines[:end])
        if _parses(candidate):
            return candidate
    return ""


def code_in_text(text: str) -> str:
    """Unfenced code in prose: the longest run of lines, starting at a top-level
    definition or import, that parses ('' if there is none)."""
    lines = text.splitlines(keepends=True)
    best = ""
    for start, line in enumerate(lines):
        if not _CODE_START.match(line):
            continue
        found = longest_parsing_prefix("".join(lines[start:]))
        if len(found) > len(best):
            best = found
    return best


def pick_code(text: str, entry_point: str) -> tuple[str, CodeSource]:
    """Rule 1: the code of an answer, and where it came from."""
    blocks = fenced_blocks(text)
    if blocks:
        defining = [b for b in blocks if defines(b, entry_point)]
        return max(defining or blocks, key=len), "fence"
    if _parses(text):
        return text, "text"  # code alone (a body, or whole functions)
    found = code_in_text(text)
    return (found, "text") if found else (text, "none")


def definitions_only(source: str) -> tuple[str, int]:
    """Rule 3: ``source`` (which parses) with its top-level statements other than imports,
    definitions and assignments removed, and how many were removed. Lines are kept as
    written (comments inside definitions included)."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    dropped = [
        node for node in tree.body if not _is_definition(node) and not _is_docstring(node, tree)
    ]
    if not dropped:
        return source, 0
    removed: set[int] = set()
    for node in dropped:
        end = node.end_lineno or node.lineno
        removed.update(range(node.lineno - 1, end))
    kept = "".join(line for i, line in enumerate(lines) if i not in removed)
    return kept, len(dropped)


def _is_definition(node: ast.stmt) -> bool:
    """Imports, definitions, assignments, and ``if``/``try`` blocks made only of them
    (``try: from math import comb`` ... ``except ImportError:``); never a ``__main__``
    block."""
    if isinstance(node, _KEPT + _ASSIGNMENTS + (ast.AugAssign, ast.Pass)):
        return True
    if isinstance(node, ast.If):
        return not _is_main_guard(node) and all(map(_is_definition, node.body + node.orelse))
    if isinstance(node, ast.Try):
        blocks = [node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)]
        return all(_is_definition(n) for block in blocks for n in block)
    return False


def _is_main_guard(node: ast.If) -> bool:
    return "__main__" in ast.unparse(node.test)


def _is_docstring(node: ast.stmt, tree: ast.Module) -> bool:
    return (
        node is tree.body[0]
        and isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def prompt_imports(prompt: str) -> str:
    """Rule 4: the import lines at the top level of a code prompt, in order."""
    lines = prompt.splitlines(keepends=True)
    imports = [line for line in lines if line.startswith(("import ", "from "))]
    return "".join(line if line.endswith("\n") else line + "\n" for line in imports)


def program_from_answer(
    text: str, entry_point: str, *, prompt: str = "", code_prompt: bool = True
) -> tuple[str, AnswerReport]:
    """The program an answer contributes, and what the answer was (rules 1-4).

    For a code prompt, code that defines no function at all is the body that continues
    the prompt (``prompt + code``), as a completion would be.
    """
    code, source = pick_code(text, entry_point)
    if defines(code, entry_point):
        shape: EntryPoint = "defined"
    elif code_prompt and not _ANY_DEF.search(code):
        shape = "body"
    else:
        shape = "other_name"
    program = prompt + code if code_prompt and shape != "defined" else code
    # Nothing code-like is left as it is: its syntax error is the honest verdict.
    kept = longest_parsing_prefix(program) if source != "none" else ""
    cut, dropped = bool(kept) and kept != program, 0
    if kept:
        program, dropped = definitions_only(kept)
    if code_prompt and shape == "defined":
        program = _with_imports(program, prompt_imports(prompt))
    return program, AnswerReport(source, shape, cut, dropped)


def _with_imports(program: str, imports: str) -> str:
    """``imports`` before ``program``, unless each is already there."""
    missing = [line for line in imports.splitlines(keepends=True) if line not in program]
    return "".join(missing) + program
