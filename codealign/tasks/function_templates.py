"""The templates of the pyfuncs task family (``codealign.tasks.functions``) and the kinds
of parameters they take.

A template is one problem shape; every combination of its constants that ``ok`` allows is
an instance. Its texts are ``str.format`` templates, so a template reads like the function
it makes: ``{a}`` and ``{b}`` are the parameter names (drawn per instance), a constant
appears by its name (``{c}``, ``{op[1]}``), and ``{<name>_1}`` is an int constant plus
one, for off-by-one bugs. A string constant may itself be a template (a code piece that
names a parameter). Bugs are (old, new) edits of the rendered body; an edit that does not
apply to an instance is skipped. A parameter kind (``ROLES``) draws inputs near the
instance's constants, since thresholds and the constants' characters are where bugs show.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Consts = dict[str, Any]


@dataclass(frozen=True)
class Template:
    """One problem shape, in the format the module docstring describes."""

    key: str
    family: str
    names: str  # "verb verb/noun noun": every verb_noun is a name for the function
    params: str  # parameter kinds, keys of ROLES
    returns: str
    consts: Mapping[str, Sequence[Any]]  # every combination allowed by ``ok`` is an instance
    doc: str
    body: str  # the function body, unindented, 1-8 lines
    bugs: tuple[tuple[str, str], ...]  # (old, new) edits of the body: plausible mistakes
    ok: Callable[[Consts], bool] = lambda c: True


@dataclass(frozen=True)
class Role:
    """A kind of parameter: its annotation, names, and how its inputs are drawn."""

    annotation: str
    names: tuple[str, ...]  # parameter names, drawn per instance
    draw: Callable[[random.Random, Consts], Any]
    edge: Callable[[Consts], Any]  # the edge case every instance offers (empty, zero)


def _ints_in(c: Consts) -> list[int]:
    return [v for v in c.values() if type(v) is int]


def _strs_in(c: Consts) -> list[str]:
    return [v for v in c.values() if isinstance(v, str) and 0 < len(v) <= 4]


def _hint(c: Consts) -> str:
    """The characters of the short string constants, both cases: inputs must contain them."""
    chars = "".join(dict.fromkeys("".join(_strs_in(c))))
    return chars + chars.upper()


def _near(r: random.Random, c: Consts) -> int:
    """An int at or near an int constant (thresholds are where bugs show), or a small one."""
    ints, mode = _ints_in(c), r.random()
    if ints and mode < 0.5:  # halves too: two of them add up to the constant
        return r.choice(ints) // r.choice((1, 1, 2)) + (0 if mode < 0.2 else r.randint(-4, 4))
    if len(ints) >= 2 and mode < 0.6:  # products of constants hit "divisible by both"
        return r.choice(ints) * r.choice(ints) * r.randint(-1, 3)
    return r.randint(-6, 16)


def _ints(r: random.Random, c: Consts) -> list[int]:
    if r.random() < 0.3:  # runs of few distinct values: ties and repeats
        return [v for _ in range(r.randint(1, 3)) for v in [r.randint(0, 2)] * r.randint(1, 5)]
    return [_near(r, c) if r.random() < 0.6 else r.randint(-3, 9) for _ in range(r.randint(1, 8))]


_KINDS = ("abcxyz", "ABCXYZ", "0123789", "aB", "  .")


def _text(r: random.Random, c: Consts) -> str:
    hint, mode = _hint(c), r.random()
    if mode < 0.2:  # one character class, so "every character is ..." can hold
        return "".join(r.choices(r.choice(_KINDS) + r.choice(("", hint)), k=r.randint(1, 7)))
    if mode < 0.4:  # runs of equal characters
        return "".join(ch * r.randint(1, 3) for ch in r.choices("abAB1 " + hint, k=r.randint(1, 4)))
    if mode < 0.6:  # mostly the constants' characters
        return "".join(r.choices("ab " + hint * 2, k=r.randint(2, 10)))
    return "".join(r.choices("abeoxAB17 .," + hint, k=r.randint(1, 10)))


_VOCAB = ("apple", "egg", "ox", "kiwi", "sky", "tea", "ant", "bee", "cat", "dog", "a", "ab")


def _word(r: random.Random, c: Consts) -> str:
    if r.random() < 0.3:
        return r.choice(_VOCAB)
    w = "".join(r.choices("abeiostAE" + _hint(c), k=r.randint(0, 6)))
    strs = _strs_in(c)
    if strs and r.random() < 0.4:
        s = r.choice(strs)
        w = r.choice((s + w, w + s))
    return w


def _kv(r: random.Random, c: Consts) -> str:
    keys = r.sample(("a", "b", "id", "x", "cat", "n2"), r.randint(1, 4))
    return str(c["sep"]).join(f"{k}{c['eq']}{r.randint(0, 99)}" for k in keys)


def _fields(r: random.Random, c: Consts) -> str:
    parts = ("" if r.random() < 0.15 else str(r.randint(-9, 60)) for _ in range(r.randint(1, 5)))
    return str(c["sep"]).join(parts)


def _pos(r: random.Random, c: Consts) -> int:
    powers = r.choice(_ints_in(c) or [2]) ** r.randint(1, 4) * r.randint(1, 6)
    return r.choice((r.randint(1, 30), powers))


def _nat(r: random.Random, c: Consts) -> int:
    return r.choice((r.randint(0, 9), r.randint(10, 999), r.randint(1000, 99999)))


def _int(r: random.Random, c: Consts) -> int:
    return _near(r, c) if r.random() < 0.7 else r.randint(-20, 40)


def _dict(r: random.Random, c: Consts) -> dict[str, int]:
    return {(_word(r, c) or "k"): _near(r, c) for _ in range(r.randint(1, 4))}


# The parameter kinds a template's ``params`` names.
ROLES = {
    "int": Role("int", ("n", "x", "num", "value"), _int, lambda c: 0),
    "nat": Role("int", ("n", "num", "number", "k"), _nat, lambda c: 0),
    "pos": Role("int", ("n", "num", "number", "m"), _pos, lambda c: 1),
    "ints": Role(
        "list[int]", ("nums", "values", "xs", "items", "data", "seq"), _ints, lambda c: []
    ),
    "str": Role("str", ("s", "text", "word", "line", "string"), _text, lambda c: ""),
    "words": Role(
        "list[str]",
        ("words", "names", "items", "strings", "tokens"),
        lambda r, c: [_word(r, c) for _ in range(r.randint(1, 5))],
        lambda c: [],
    ),
    "dict": Role(
        "dict[str, int]", ("d", "table", "counts", "scores", "mapping"), _dict, lambda c: {}
    ),
    "kv": Role("str", ("s", "text", "line", "record", "spec"), _kv, lambda c: ""),
    "fields": Role(
        "str", ("s", "text", "line", "row", "csv"), _fields, lambda c: f"{c['sep']}7{c['sep']}"
    ),
}


_LOWER = "abcdefghijklmnopqrstuvwxyz"
_CLASSES = (
    ("digits", "a digit", "isdigit"),
    ("upper-case letters", "an upper-case letter", "isupper"),
    ("lower-case letters", "a lower-case letter", "islower"),
    ("letters", "a letter", "isalpha"),
    ("spaces", "a space", "isspace"),
)
_PREDICATES = (
    *((f"divisible by {d}", f"x % {d} == 0") for d in range(2, 8)),
    *((f"greater than {t}", f"x > {t}") for t in (0, 3, 5, 10)),
    *((f"less than {t}", f"x < {t}") for t in (0, 2, 4)),
    ("odd", "x % 2 == 1"),
    ("even", "x % 2 == 0"),
    ("between 0 and 9 (both included)", "0 <= x <= 9"),
    ("equal to 1", "x == 1"),
    ("negative", "x < 0"),
)
_CMP = (("greater than", ">"), ("less than", "<"), ("at least", ">="), ("at most", "<="))
_DEFAULT_STRS = ("", "none", "?", "-", "empty", "n/a", "nil", "x", "0")
_SEPS = ("-", ",", " ", "|", ";", "/", ".", ":", "+")

# fmt: off
TEMPLATE_LIST = (
    # strings
    Template("count_char", "strings", "count tally/char char_hits occurrences", "str", "int",
             {"c": _LOWER},
             'Return how many times the character "{c}" occurs in {a}; upper and lower case '
             'are different characters.',
             'return {a}.count("{c}")', (("{a}.count(", "{a}.lower().count("),)),
    Template("replace_char", "strings", "replace substitute/char letter chars", "str", "str",
             {"c": "abeiostx", "d": "*-_#!.0"},
             'Return {a} with every "{c}" replaced by "{d}".',
             'return {a}.replace("{c}", "{d}")',
             (('"{d}")', '"{d}", 1)'), ('.replace("{c}", "{d}")', '.replace("{d}", "{c}")'))),
    Template("count_class", "strings", "count num/kind_chars char_kinds", "str", "int",
             {"cls": _CLASSES, "c": ".,-!?#"},
             'Return how many characters of {a} are either {cls[1]} or "{c}".',
             'return sum(1 for ch in {a} if ch.{cls[2]}() or ch == "{c}")',
             ((' or ch == "{c}"', ""), (" or ", " and "))),
    Template("mask_class", "strings", "mask hide/chars kind_chars", "str", "str",
             {"cls": _CLASSES, "m": "*#_?"},
             'Return {a} with every character that is {cls[1]} replaced by "{m}".',
             'return "".join("{m}" if ch.{cls[2]}() else ch for ch in {a})',
             (("else ch for", 'else "" for'), ('"{m}" if ch.', '"{m}" if not ch.'))),
    Template("every_kth", "strings", "take pick/every_kth stride_chars", "str", "str",
             {"k": range(2, 7), "s": range(0, 6)},
             "Return the characters of {a} at index {s} and every {k} positions after it, as a "
             "string.",
             "return {a}[{s}::{k}]",
             (("[{s}::{k}]", "[{s}:{k}]"), ("[{s}::{k}]", "[{s_1}::{k}]")),
             lambda c: c["s"] < c["k"]),
    Template("case_prefix", "strings", "shout stress/head prefix start", "str", "str",
             {"n": range(1, 10), "u": (("upper", "lower"), ("lower", "upper"))},
             "Return {a} with its first {n} characters in {u[0]} case and all the other "
             "characters in {u[1]} case.",
             "return {a}[:{n}].{u[0]}() + {a}[{n}:].{u[1]}()",
             (("{a}[{n}:].{u[1]}()", "{a}[{n}:]"), ("[:{n}]", "[:{n_1}]"))),
    Template("wrap", "strings", "wrap enclose frame/text string", "str", "str",
             {"p": ("<", "[", "(", "**", "--", ">>"), "q": (">", "]", ")", "**", "--", "<<")},
             'Return {a} with "{p}" added at the start and "{q}" at the end; an empty {a} is '
             "returned unchanged.",
             'if not {a}:\n    return {a}\nreturn "{p}" + {a} + "{q}"',
             (("if not {a}:\n    return {a}\n", ""),
              ('"{p}" + {a} + "{q}"', '"{q}" + {a} + "{p}"'))),
    Template("initials", "strings", "make get build/initials acronym", "str", "str",
             {"sep": _SEPS, "case": ("upper", "lower")},
             'Split {a} at every "{sep}" and return the first characters of the non-empty '
             "parts, in {case} case, joined together.",
             'return "".join(part[0].{case}() for part in {a}.split("{sep}") if part)',
             ((" if part)", ")"), ("part[0].{case}()", "part[0]"))),
    Template("swap_chars", "strings", "swap exchange/chars letters", "str", "str",
             {"c": "abcdeo", "d": "abcdeo"},
             'Return {a} with every "{c}" changed to "{d}" and every "{d}" changed to "{c}".',
             'out = ""\nfor ch in {a}:\n    if ch == "{c}":\n        ch = "{d}"\n'
             '    elif ch == "{d}":\n        ch = "{c}"\n    out += ch\nreturn out',
             (('    elif ch == "{d}":\n        ch = "{c}"\n', ""), ("elif", "if")),
             lambda c: c["c"] < c["d"]),
    Template("run_length", "grouping", "encode compress/runs run_lengths", "str", "str",
             {"order": (("the character followed by the run length", "ch + str(size)"),
                        ("the run length followed by the character", "str(size) + ch")),
              "sep": _SEPS},
             "Return the run-length encoding of {a}: every maximal run of equal neighbouring "
             'characters becomes {order[0]}, and these pieces are joined with "{sep}".',
             "runs = []\nfor ch in {a}:\n    if runs and runs[-1][0] == ch:\n"
             "        runs[-1][1] += 1\n    else:\n        runs.append([ch, 1])\n"
             'return "{sep}".join({order[1]} for ch, size in runs)',
             (("[ch, 1]", "[ch, 0]"), ("if runs and runs[-1][0] == ch", "if runs"))),
    Template("longest_run", "grouping", "longest max/run streak", "str", "int",
             {"c": _LOWER},
             'Return the length of the longest run of consecutive "{c}" characters in {a} '
             "(0 if there is none).",
             "best = run = 0\nfor ch in {a}:\n"
             '    run = run + 1 if ch == "{c}" else 0\n    best = max(best, run)\nreturn best',
             (("else 0", "else run"),)),
    Template("find_char", "strings", "find locate index/char letter", "str", "int",
             {"c": "abeiostx", "which": (("first", "range(len({a}))"),
                                         ("last", "range(len({a}) - 1, -1, -1)"))},
             'Return the index of the {which[0]} "{c}" in {a}, or -1 if {a} has no "{c}".',
             'for i in {which[1]}:\n    if {a}[i] == "{c}":\n        return i\nreturn -1',
             (("return i\n", "return i + 1\n"), ("return -1", "return None"))),
    # lists of strings
    Template("count_initials", "words", "count tally/words_starting initial_matches", "words",
             "int",
             {"cs": ("aeiou", "aei", "ou", "xyz", "abc", "bcd", "st", "rst", "mnp", "klm", "pq",
                     "ei", "ab", "io", "tx", "sb", "eo", "ax")},
             'Return how many strings in {a} start with one of the letters "{cs}" (lower '
             "case only).",
             'count = 0\nfor w in {a}:\n    if w and w[0] in "{cs}":\n        count += 1\n'
             "return count",
             (("w[0]", "w[-1]"), ("w and w[0] in", "w[:1] in"))),
    Template("longest_with", "words", "longest max/len_with length_with", "words", "int",
             {"c": _LOWER},
             'Return the length of the longest string in {a} that contains "{c}", or 0 if '
             "no string does.",
             'best = 0\nfor w in {a}:\n    if "{c}" in w and len(w) > best:\n'
             "        best = len(w)\nreturn best",
             (('"{c}" in w and ', ""), ("best = len(w)", "best += 1"))),
    Template("join_case", "words", "join combine glue/words parts", "words", "str",
             {"case": ("upper", "lower"),
              "sep": ("-", ", ", "+", " | ", "/", "::", ";", " and ", "_")},
             'Return the strings of {a} converted to {case} case and joined with "{sep}" '
             "between them.",
             'return "{sep}".join(w.{case}() for w in {a})',
             (("w.{case}() for", "w for"), ('"{sep}".join(', '"".join('))),
    Template("filter_len", "words", "keep filter select/words_by_length sized", "words",
             "list[str]",
             {"op": (("at least", ">="), ("at most", "<="), ("more than", ">"), ("fewer than", "<"),
                     ("exactly", "==")),
              "n": range(1, 7)},
             "Return the strings in {a} that have {op[0]} {n} characters, in their original "
             "order.",
             "return [w for w in {a} if len(w) {op[1]} {n}]",
             (("len(w) {op[1]} {n}", "len(w) {op[1]} {n_1}"),)),
    Template("strip_suffix", "words", "strip trim cut/suffix ending", "words", "list[str]",
             {"suf": ("ed", "ly", "er", "es", "an", "on", "at", "in", "ab", "ba", "ee", "oo",
                      "ay", "ic", "ix", "um", "us", "os")},
             'Return the strings in {a} that end with "{suf}", each with those two last '
             "characters removed, in their original order.",
             'return [w[:-2] for w in {a} if w.endswith("{suf}")]',
             (("w.endswith", "w.startswith"), ("w[:-2]", "w[:-1]"))),
    Template("extreme_word", "words", "pick find choose/extreme_word word_by_length",
             "words", "str",
             {"big": (("shortest", "min"), ("longest", "max")), "dflt": _DEFAULT_STRS},
             "Return the {big[0]} string in {a}, taking the earliest one when several have "
             'that length; return "{dflt}" if {a} is empty.',
             'if not {a}:\n    return "{dflt}"\nreturn {big[1]}({a}, key=len)',
             (("{big[1]}({a}, key=len)", "{big[1]}({a})"),
              ('if not {a}:\n    return "{dflt}"\n', ""))),
    # lists of ints
    Template("multiples", "lists", "keep filter select/multiples divisible", "ints",
             "list[int]",
             {"d": range(2, 11), "m": (("divisible", "=="), ("not divisible", "!="))},
             "Return the elements of {a} that are {m[0]} by {d}, in their original order.",
             "return [x for x in {a} if x % {d} {m[1]} 0]",
             (("x % {d}", "x % {d_1}"), ("for x in {a} if", "for x in {a}[1:] if"))),
    Template("sum_where", "lists", "sum total add/selected matching", "ints", "int",
             {"op": _CMP, "t": range(0, 10)},
             "Return the sum of the elements of {a} that are {op[0]} {t} (0 if there are "
             "none).",
             "total = 0\nfor x in {a}:\n    if x {op[1]} {t}:\n        total += x\nreturn total",
             (("total += x", "total += 1"), ("x {op[1]} {t}", "x {op[1]} {t_1}"))),
    Template("count_between", "lists", "count tally/between in_range", "ints", "int",
             {"lo": range(0, 6), "hi": range(3, 12)},
             "Return how many elements of {a} are between {lo} and {hi}, both included.",
             "return sum(1 for x in {a} if {lo} <= x <= {hi})",
             (("{lo} <= x <= {hi}", "{lo} < x < {hi}"), ("{lo} <= x <= {hi}", "{lo} <= x < {hi}")),
             lambda c: c["hi"] >= c["lo"] + 2),
    Template("clamp_all", "lists", "clamp limit bound/values all", "ints", "list[int]",
             {"lo": range(-2, 4), "hi": range(4, 12)},
             "Return {a} with every element below {lo} replaced by {lo} and every element "
             "above {hi} replaced by {hi}.",
             "return [min(max(x, {lo}), {hi}) for x in {a}]",
             (("min(max(x, {lo}), {hi})", "max(min(x, {lo}), {hi})"),
              ("min(max(x, {lo}), {hi})", "max(x, {lo})"))),
    Template("running_count", "lists", "running cumulative/count tally", "ints", "list[int]",
             {"op": (("greater than", ">"), ("less than", "<"), ("equal to", "==")),
              "t": range(0, 6)},
             "Return a list whose i-th element is the number of elements among {a}[0], ..., "
             "{a}[i] that are {op[0]} {t}.",
             "out = []\ncount = 0\nfor x in {a}:\n    if x {op[1]} {t}:\n        count += 1\n"
             "    out.append(count)\nreturn out",
             (("    out.append(count)\n", "        out.append(count)\n"),
              ("count = 0", "count = 1"))),
    Template("neighbour_op", "pairs", "combine pair/neighbours adjacent", "ints", "list[int]",
             {"op": ("+", "-", "*"), "k": range(1, 7)},
             "Return the list of {a}[i] {op} {a}[i + {k}] for every index i such that i + {k} "
             "is a valid index of {a}, in increasing order of i.",
             "return [{a}[i] {op} {a}[i + {k}] for i in range(len({a}) - {k})]",
             (("range(len({a}) - {k})", "range(len({a}) - {k_1})"),
              ("{a}[i] {op} {a}[i + {k}]", "{a}[i + {k}] {op} {a}[i]"))),
    Template("window", "pairs", "window sliding/values results", "ints", "list[int]",
             {"agg": (("sum", "sum"), ("largest element", "max"), ("smallest element", "min")),
              "w": range(2, 8)},
             "Return the {agg[0]} of every window of {w} consecutive elements of {a}, from "
             "left to right (an empty list if {a} has fewer than {w} elements).",
             "return [{agg[1]}({a}[i:i + {w}]) for i in range(len({a}) - {w} + 1)]",
             (("- {w} + 1)", "- {w})"), ("[i:i + {w}]", "[i:i + {w_1}]"))),
    Template("kth_distinct", "sorting", "nth rank/distinct value", "ints", "{dflt[1]}",
             {"k": (("second", 1, 2), ("third", 2, 3), ("fourth", 3, 4)),
              "big": (("largest", ", reverse=True"), ("smallest", "")),
              "dflt": ((-1, "int"), (0, "int"), (None, "int | None"))},
             "Return the {k[0]} {big[0]} distinct value in {a}, or {dflt[0]} if {a} has "
             "fewer than {k[2]} distinct values.",
             "distinct = sorted(set({a}){big[1]})\n"
             "return distinct[{k[1]}] if len(distinct) > {k[1]} else {dflt[0]}",
             (("sorted(set({a})", "sorted(list({a})"), ("distinct[{k[1]}]", "distinct[{k[2]}]")),
             # The second smallest or None is HumanEval's next_smallest.
             lambda c: (c["k"][1], c["big"][1], c["dflt"][0]) != (1, "", None)),
    Template("index_of_extreme", "lists", "index position/of_best best", "ints", "int",
             {"which": (("first", "largest", ">"), ("last", "largest", ">="),
                        ("first", "smallest", "<"), ("last", "smallest", "<="))},
             "Return the index of the {which[0]} occurrence of the {which[1]} element of {a}, "
             "or -1 if {a} is empty.",
             "best = -1\nfor i, x in enumerate({a}):\n"
             "    if best == -1 or x {which[2]} {a}[best]:\n        best = i\nreturn best",
             (("best == -1 or ", ""), ("x {which[2]} {a}[best]", "x {which[2]} best"))),
    # counting and truth
    Template("count_split", "counting", "count tally split/yes_no by_test", "ints",
             "tuple[int, int]",
             {"pred": _PREDICATES},
             "Return a tuple: how many elements of {a} are {pred[0]}, then how many are not.",
             "yes = no = 0\nfor x in {a}:\n    if {pred[1]}:\n        yes += 1\n    else:\n"
             "        no += 1\nreturn yes, no",
             (("return yes, no", "return no, yes"),)),
    Template("quantifier", "counting", "check verify/elements values", "ints", "bool",
             {"q": (("every", "all", "True"), ("at least one", "any", "False"),
                    ("no", "not any", "True")),
              "pred": _PREDICATES},
             "Return whether {q[0]} element of {a} is {pred[0]} ({q[2]} for an empty list).",
             "return {q[1]}({pred[1]} for x in {a})",
             (("all(", "any("), ("any(", "all("), ("for x in {a})", "for x in {a}[1:])"))),
    Template("pair_count", "pairs", "count tally/pairs pairs_summing", "ints", "int",
             {"t": range(3, 21)},
             "Return how many pairs of indexes i < j have {a}[i] + {a}[j] == {t}.",
             "count = 0\nfor i in range(len({a})):\n    for j in range(i + 1, len({a})):\n"
             "        if {a}[i] + {a}[j] == {t}:\n            count += 1\nreturn count",
             (("range(i + 1, len({a}))", "range(len({a}))"),
              ("range(i + 1, len({a}))", "range(i, len({a}))"))),
    # dicts
    Template("invert", "dicts", "invert flip reverse/dict mapping table", "dict",
             "dict[int, str]",
             {"t": range(-2, 7), "which": (("first", " and value not in out"), ("last", ""))},
             "Return a dict that maps each value of {a} that is at least {t} to its key; when "
             "several keys share such a value, keep the {which[0]} of them in the order of "
             "{a}.",
             "out = {{}}\nfor key, value in {a}.items():\n    if value >= {t}{which[1]}:\n"
             "        out[value] = key\nreturn out",
             ((" and value not in out", ""), ("value >= {t}", "value > {t}"),
              ("if value >= {t}:", "if value >= {t} and value not in out:"))),
    Template("filter_items", "dicts", "keep filter select/items entries", "dict",
             "dict[str, int]",
             {"op": _CMP, "t": range(0, 6)},
             "Return a new dict with the items of {a} whose value is {op[0]} {t}, in the order "
             "of {a}.",
             "return {{k: v for k, v in {a}.items() if v {op[1]} {t}}}",
             (("v {op[1]} {t}", "v {op[1]} {t_1}"),)),
    Template("sum_prefixed", "dicts", "sum total/values_for prefixed", "dict", "int",
             {"c": "abeiostxyzkmnpr"},
             'Return the sum of the values in {a} whose keys start with "{c}".',
             'return sum(v for k, v in {a}.items() if k.startswith("{c}"))',
             (("k.startswith", "k.endswith"), ('k.startswith("{c}")', '"{c}" in k'))),
    Template("best_key", "dicts", "best top pick/key name", "dict", "str",
             {"big": (("largest", "max"), ("smallest", "min")), "dflt": _DEFAULT_STRS},
             "Return the key of {a} with the {big[0]} value (the first such key in the order "
             'of {a}), or "{dflt}" if {a} is empty.',
             'if not {a}:\n    return "{dflt}"\nreturn {big[1]}({a}, key={a}.get)',
             (("{big[1]}({a}, key={a}.get)", "{big[1]}({a})"),
              ("{big[1]}({a}, key={a}.get)", "{big[1]}({a}.values())"))),
    Template("lookup_all", "dicts", "lookup fetch/all values many", "dict words", "list[int]",
             {"dflt": range(-1, 17)},
             "Return a list with the value of each string of {b} in {a}, using {dflt} for the "
             "strings that are not keys of {a}.",
             "return [{a}.get(w, {dflt}) for w in {b}]",
             (("{a}.get(w, {dflt})", "{a}.get(w, 0)"),
              ("for w in {b}]", "for w in {b} if w in {a}]"))),
    # numbers
    Template("digit_sum", "math", "sum add/digits some_digits chosen_digits", "nat", "int",
             {"op": (("greater than", ">"), ("less than", "<")), "t": range(0, 9)},
             "Return the sum of the digits of {a} that are {op[0]} {t}; {a} is never negative.",
             "total = 0\nwhile {a} > 0:\n    digit = {a} % 10\n    if digit {op[1]} {t}:\n"
             "        total += digit\n    {a} //= 10\nreturn total",
             (("digit {op[1]} {t}", "digit {op[1]}= {t}"), ("total += digit", "total += 1")),
             lambda c: c["op"][1] == ">" or c["t"] >= 2),
    Template("count_multiples", "math", "count tally/multiples divisible", "int", "int",
             {"d": range(2, 10), "e": range(3, 11)},
             "Return how many of the integers 1, 2, ..., {a} are divisible by {d} or by {e} (0 "
             "if {a} is less than 1).",
             "return sum(1 for i in range(1, {a} + 1) if i % {d} == 0 or i % {e} == 0)",
             (("range(1, {a} + 1)", "range(1, {a})"), (" or ", " and ")),
             lambda c: c["d"] < c["e"]),
    Template("divide_out", "math", "divide reduce/out fully", "pos", "int",
             {"d": range(2, 11), "what": (("how many divisions were made", "count"),
                                          ("what is left of {a}", "{a}"))},
             "Divide {a} (a positive integer) by {d} again and again while it is divisible by "
             "{d}, and return {what[0]}.",
             "count = 0\nwhile {a} % {d} == 0:\n    {a} //= {d}\n    count += 1\nreturn {what[1]}",
             (("while", "if"),)),
    Template("digits_except", "math", "get list keep/digits digits_without", "nat", "list[int]",
             {"d": range(0, 9), "order": (("most significant first", ""),
                                          ("least significant first", "[::-1]"))},
             "Return the digits of {a} that are not {d}, as a list of ints, {order[0]}; {a} is "
             "never negative.",
             'return [int(ch) for ch in str({a}){order[1]} if ch != "{d}"]',
             (('ch != "{d}"', "ch != {d}"), ("str({a})[::-1]", "str({a})"))),
    Template("round_to", "math", "round snap/to_multiple multiple", "int", "int",
             {"m": range(2, 11), "dir": (("largest", "not greater than", "{a} - {a} % {m}"),
                                         ("smallest", "not less than", "{a} + (-{a}) % {m}"))},
             "Return the {dir[0]} multiple of {m} that is {dir[1]} {a}.",
             "return {dir[2]}",
             (("{a} - {a} % {m}", "int({a} / {m}) * {m}"),
              ("{a} + (-{a}) % {m}", "({a} // {m} + 1) * {m}"))),
    Template("classify", "math", "classify label rate/value number size", "int", "str",
             {"lab": (("low", "mid", "high"), ("small", "medium", "large"),
                      ("cold", "warm", "hot")),
              "t1": range(0, 6), "t2": range(3, 12)},
             'Return "{lab[0]}" if {a} is less than {t1}, "{lab[1]}" if it is at least {t1} '
             'but less than {t2}, and "{lab[2]}" otherwise.',
             'if {a} < {t1}:\n    return "{lab[0]}"\nif {a} < {t2}:\n    return "{lab[1]}"\n'
             'return "{lab[2]}"',
             (("{a} < {t1}:", "{a} <= {t1}:"), ("{a} < {t2}:", "{a} <= {t2}:")),
             lambda c: c["t2"] >= c["t1"] + 3),
    Template("fizz", "math", "say speak label/number divisors", "int", "str",
             {"d1": range(2, 6), "d2": range(3, 8),
              "w": (("Fizz", "Buzz"), ("Ping", "Pong"), ("Foo", "Bar"), ("Tick", "Tock"))},
             'Return "{w[0]}{w[1]}" if {a} is divisible by both {d1} and {d2}, "{w[0]}" if it '
             'is divisible only by {d1}, "{w[1]}" if only by {d2}, and str({a}) otherwise.',
             'if {a} % {d1} == 0 and {a} % {d2} == 0:\n    return "{w[0]}{w[1]}"\n'
             'if {a} % {d1} == 0:\n    return "{w[0]}"\nif {a} % {d2} == 0:\n'
             '    return "{w[1]}"\nreturn str({a})',
             (("{a} % {d1} == 0 and {a} % {d2} == 0", "{a} % {d1} == 0 or {a} % {d2} == 0"),
              ("return str({a})", "return {a}")),
             lambda c: c["d1"] < c["d2"] and c["d2"] % c["d1"] != 0),
    # slicing
    Template("rotate", "slicing", "rotate shift/list items", "ints", "list[int]",
             {"k": range(1, 10), "dir": (("left", "the first element to the end", "{k} % len({a})"),
                                         ("right", "the last element to the front",
                                          "-{k} % len({a})"))},
             "Return {a} rotated {dir[0]} {k} times, where one rotation moves {dir[1]}; an "
             "empty {a} gives an empty list.",
             "if not {a}:\n    return []\nshift = {dir[2]}\nreturn {a}[shift:] + {a}[:shift]",
             ((" % len({a})", ""), ("{a}[shift:] + {a}[:shift]", "{a}[:shift] + {a}[shift:]"))),
    Template("chunks", "slicing", "chunk batch/values results", "ints", "list[int]",
             {"n": range(2, 6),
              "agg": (("sum", "sum({a}[i:i + {n}])"), ("largest element", "max({a}[i:i + {n}])"),
                      ("smallest element", "min({a}[i:i + {n}])"), ("first element", "{a}[i]"),
                      ("last element", "{a}[i:i + {n}][-1]"))},
             "Split {a} into consecutive chunks of {n} elements (the last chunk may be shorter) "
             "and return the {agg[0]} of each chunk, in order.",
             "return [{agg[1]} for i in range(0, len({a}), {n})]",
             (("range(0, len({a}), {n})", "range(0, len({a}) - {n}, {n})"),
              ("range(0, len({a}), {n})", "range(len({a}) // {n})"))),
    # sorting
    Template("sort_by_count", "sorting", "sort order rank/by_count by_letter", "words",
             "list[str]",
             {"c": "abeiostx", "dir": (("fewest", ""), ("most", ", reverse=True"))},
             'Return the strings of {a} sorted by how many "{c}" characters they contain, '
             "{dir[0]} first; strings with equal counts keep their original order.",
             'return sorted({a}, key=lambda w: w.count("{c}"){dir[1]})',
             (('w.count("{c}")', "len(w)"), ("{dir[1]})", ")"))),
    Template("top_k", "sorting", "top best pick/values elements", "ints", "list[int]",
             {"k": range(2, 7), "big": (("largest", ", reverse=True"), ("smallest", ""))},
             "Return the {k} {big[0]} elements of {a}, {big[0]} first (all of {a}, ordered that "
             "way, if it has fewer than {k} elements).",
             "return sorted({a}{big[1]})[:{k}]",
             (("[:{k}]", "[-{k}:]"), ("[:{k}]", "[:{k_1}]"))),
    # grouping and parsing
    Template("runs", "grouping", "runs group/lengths sizes", "ints", "list[int]",
             {"n": range(1, 4), "what": (("length", "size"), ("value", "x"))},
             "Split {a} into runs of equal neighbouring elements and return, from left to "
             "right, the {what[0]} of every run of {n} or more elements.",
             "runs = []\nfor x in {a}:\n    if runs and runs[-1][0] == x:\n"
             "        runs[-1][1] += 1\n    else:\n        runs.append([x, 1])\n"
             "return [{what[1]} for x, size in runs if size >= {n}]",
             (("[x, 1]", "[x, 0]"), ("size >= {n}", "size > {n}"))),
    Template("parse_pairs", "parsing", "parse read load/pairs record", "kv", "dict[str, int]",
             {"eq": ("=", ":", "->", "~"), "sep": (";", ",", "&", " ", "|", "/")},
             'Parse {a}, which holds items "name{eq}number" separated by "{sep}" (it may be '
             "empty), into a dict that maps each name to its number as an int.",
             'result = {{}}\nfor item in {a}.split("{sep}"):\n    if item:\n'
             '        key, value = item.split("{eq}")\n        result[key] = int(value)\n'
             "return result",
             (("int(value)", "value"), ('{a}.split("{sep}")', "{a}.split()"))),
    Template("fields", "parsing", "combine reduce parse/fields numbers", "fields", "int",
             {"agg": (("sum", "sum"), ("largest", "max"), ("smallest", "min")),
              "sep": (",", ";", " ", "|", "/", ":")},
             'Return the {agg[0]} of the integers in {a}, which are separated by "{sep}"; '
             "empty fields are skipped and {a} holds at least one integer.",
             'return {agg[1]}(int(p) for p in {a}.split("{sep}") if p)',
             ((" if p)", ")"), ("int(p)", "abs(int(p))"))),
    Template("only_allowed", "strings", "is check/made_of only_allowed", "str", "bool",
             {"cls": _CLASSES, "c": "._-,!"},
             'Return whether {a} is non-empty and each of its characters is {cls[1]} or "{c}".',
             'return {a} != "" and all(ch.{cls[2]}() or ch == "{c}" for ch in {a})',
             (('{a} != "" and ', ""), ("all(", "any("))),
)
# fmt: on
