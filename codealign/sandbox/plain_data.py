"""Plain data: the only values that cross between a candidate's process and its judge.

Standard library only: this module also runs inside the sandbox. Values travel as tagged
JSON of exact built-in types, so an int subclass with a rigged ``__eq__`` or an
always-equal object cannot pass as data. Decoding runs in the trusted process, so it is
bounded: items, depth, digits and characters are capped, a ``range`` counts as the items
it describes, and dict and set keys whose hashes collide are refused before they can make
building the container quadratic.
"""

from __future__ import annotations

import pathlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Caps:
    """What one decoded value may hold."""

    items: int = 1_000_000
    depth: int = 100
    #: Characters of all strings and bytes together.
    chars: int = 64 << 20
    #: Decimal digits of one int (Python's own str -> int limit).
    digits: int = 4300
    #: Keys of one dict or set that may share a hash value.
    collisions: int = 32


CAPS = Caps()


class Unserializable(Exception):
    """A value that is not plain data of an exact built-in type."""


class Malformed(ValueError):
    """Encoded data that is not what ``encode`` writes, or over the caps."""


#: ``encode`` asks this for an id when a value is not plain data (None: refuse it).
HandleMaker = Callable[[Any], int]
#: ``decode`` turns a handle id back into an object with this (None: refuse handles).
HandleReader = Callable[[int], Any]
#: ``encode`` asks this for an object of a class the task defines: its class name, or None.
TaskTypeNamer = Callable[[Any], "str | None"]
#: ``decode`` rebuilds an object of a task-defined class from its name and attributes.
TaskTypeMaker = Callable[[str, "dict[str, Any]"], Any]

_CONTAINER_TAGS: dict[type, str] = {list: "l", tuple: "t", set: "S", frozenset: "F"}
_PLAIN_BASES: tuple[type, ...] = (int, float, complex, str, bytes, list, tuple, dict, set)
_PLAIN_BASES += (frozenset,)
_ITERATOR_TYPES = frozenset(
    {
        "generator",
        "map",
        "filter",
        "zip",
        "enumerate",
        "reversed",
        "list_iterator",
        "tuple_iterator",
        "range_iterator",
        "str_ascii_iterator",
        "str_iterator",
        "set_iterator",
        "dict_keyiterator",
        "dict_valueiterator",
        "dict_itemiterator",
        "list_reverseiterator",
    }
)


def encode(
    value: Any,
    handle: HandleMaker | None = None,
    caps: Caps = CAPS,
    task_type: TaskTypeNamer | None = None,
) -> Any:
    """``value`` as tagged JSON; non-plain values become handles, or raise Unserializable.

    Iterators and generators are drained into ``["it", [...]]`` (capped), which decodes
    to an iterator. Subclasses of plain types and numpy scalars travel as their plain
    value: whatever their methods do, what leaves is data, and no rigged method survives.
    Objects of classes the task defines (``task_type`` names them) travel by value: the
    class name and their attributes, rebuilt from the task's own class on the other side.
    """
    budget = [caps.items]

    def enc(v: Any, depth: int) -> Any:
        budget[0] -= 1
        if depth > caps.depth or budget[0] < 0:
            raise Unserializable("value too large or too deeply nested")
        t = type(v)
        if v is None:
            return ["N"]
        if t is bool:
            return ["b", v]
        if t is int:
            return ["i", str(v)] if abs(v) >= 1 << 53 else ["i", v]
        if t is float:
            return ["f", float.hex(v)]
        if t is complex:
            return ["c", float.hex(v.real), float.hex(v.imag)]
        if t is str:
            return ["s", v]
        if t is bytes:
            return ["y", v.hex()]
        if t in _CONTAINER_TAGS:
            return [_CONTAINER_TAGS[t], [enc(x, depth + 1) for x in v]]
        if t is dict:
            return ["d", [[enc(k, depth + 1), enc(x, depth + 1)] for k, x in v.items()]]
        if t is range:
            return ["r", v.start, v.stop, v.step]
        if isinstance(v, pathlib.PurePath):
            return ["p", str(v)]
        if t.__name__ in _ITERATOR_TYPES and t.__module__ == "builtins":
            items = []
            for x in v:
                items.append(enc(x, depth + 1))
            return ["it", items]
        for base in _PLAIN_BASES:
            if isinstance(v, base):
                return enc(base(v), depth + 1)
        if t.__module__ == "numpy" and getattr(v, "ndim", None) == 0:
            return enc(v.item(), depth + 1)
        name = task_type(v) if task_type is not None else None
        if name is not None:
            state = object.__getattribute__(v, "__dict__")
            if type(state) is not dict:
                raise Unserializable(f"an object of {name} without plain attributes")
            # One level per object, not two: linked lists and trees nest one per node.
            return ["o", name, [[k, enc(x, depth + 1)] for k, x in state.items()]]
        if handle is not None:
            return ["h", handle(v)]
        raise Unserializable(f"values of type {t.__module__}.{t.__qualname__} are not plain data")

    return enc(value, 0)


def decode(
    data: Any,
    handle: HandleReader | None = None,
    caps: Caps = CAPS,
    task_type: TaskTypeMaker | None = None,
    path: Callable[[str], Any] = pathlib.Path,
) -> Any:
    """The inverse of ``encode``, bounded by ``caps``; anything else raises Malformed.

    ``path`` makes paths (the judge keeps a candidate's path as data: ``PurePosixPath``)."""
    items = [caps.items]
    chars = [caps.chars]

    def spend(n: int) -> None:
        items[0] -= n
        if items[0] < 0:
            raise Malformed(f"more than {caps.items} items")

    def text(s: Any, factor: int = 1) -> str:
        if type(s) is not str:
            raise Malformed("malformed plain data")
        chars[0] -= len(s) // factor
        if chars[0] < 0:
            raise Malformed(f"more than {caps.chars} characters")
        return s

    def keys_spread(keys: list[Any]) -> None:
        if len(keys) > caps.collisions:
            worst = max(Counter(hash(k) for k in keys).values())
            if worst > caps.collisions:
                raise Malformed(f"{worst} keys share one hash value")

    def whole(s: Any) -> int:
        if type(s) is int:
            return s
        digits = text(s)
        if len(digits.lstrip("-")) > caps.digits:
            raise Malformed(f"an int of more than {caps.digits} digits")
        return int(digits)

    def dec(d: Any, depth: int) -> Any:
        spend(1)
        if depth > caps.depth or type(d) is not list or not d:
            raise Malformed("malformed plain data" if depth <= caps.depth else "nested too deeply")
        tag, rest = d[0], d[1:]
        if tag == "N" and not rest:
            return None
        if tag == "b" and len(rest) == 1 and type(rest[0]) is bool:
            return rest[0]
        if tag == "i" and len(rest) == 1:
            return whole(rest[0])
        if tag == "f" and len(rest) == 1:
            return float.fromhex(text(rest[0]))
        if tag == "c" and len(rest) == 2:
            return complex(float.fromhex(text(rest[0])), float.fromhex(text(rest[1])))
        if tag == "s" and len(rest) == 1:
            return text(rest[0])
        if tag == "y" and len(rest) == 1:
            return bytes.fromhex(text(rest[0], factor=2))
        if tag == "p" and len(rest) == 1:
            return path(text(rest[0]))
        if tag in ("l", "t", "S", "F", "it") and len(rest) == 1 and type(rest[0]) is list:
            values = [dec(x, depth + 1) for x in rest[0]]
            if tag in ("S", "F"):
                keys_spread(values)
            return _MAKERS[tag](values)
        if tag == "d" and len(rest) == 1 and type(rest[0]) is list:
            pairs = []
            for pair in rest[0]:
                if type(pair) is not list or len(pair) != 2:
                    raise Malformed("malformed plain data")
                pairs.append((dec(pair[0], depth + 1), dec(pair[1], depth + 1)))
            keys_spread([k for k, _ in pairs])
            return dict(pairs)
        if tag == "r" and len(rest) == 3 and all(type(x) is int for x in rest):
            described = range(*rest)  # described lazily, so it costs what it would hold
            spend(len(described))
            return described
        if tag == "o" and task_type is not None and len(rest) == 2 and type(rest[1]) is list:
            state = {}
            for pair in rest[1]:
                if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str:
                    raise Malformed("malformed plain data")
                state[text(pair[0])] = dec(pair[1], depth + 1)
            return task_type(text(rest[0]), state)
        if tag == "h" and handle is not None and len(rest) == 1 and type(rest[0]) is int:
            return handle(rest[0])
        raise Malformed("malformed plain data")

    try:
        return dec(data, 0)
    except (TypeError, OverflowError, ValueError, RecursionError) as exc:
        # An unhashable key, a bad float or hex digit, a zero range step...
        if isinstance(exc, Malformed):
            raise
        raise Malformed(f"malformed plain data: {exc}") from None


class TaskTypes:
    """The classes the task's own code defines, by name: their objects travel by value."""

    def __init__(self, namespace: dict[str, Any], names: list[str]) -> None:
        self._by_name = {n: namespace[n] for n in names if isinstance(namespace.get(n), type)}
        self._by_type = {id(cls): n for n, cls in self._by_name.items()}

    def name(self, value: Any) -> str | None:
        return self._by_type.get(id(type(value)))

    def make(self, name: str, state: dict[str, Any]) -> Any:
        cls = self._by_name.get(name)
        if cls is None:
            raise Malformed(f"an object of {name!r}, which the task does not define")
        try:
            obj = object.__new__(cls)
            object.__getattribute__(obj, "__dict__").update(state)
        except (TypeError, AttributeError) as exc:
            raise Malformed(f"cannot rebuild an object of {name}: {exc}") from None
        return obj


_MAKERS: dict[str, Callable[[list[Any]], Any]] = {
    "l": list,
    "t": tuple,
    "S": set,
    "F": frozenset,
    "it": iter,
}
