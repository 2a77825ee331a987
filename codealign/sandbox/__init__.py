"""What runs inside the sandbox: the worker, the candidate's process, the plain-data codec.

Every module here uses the standard library only. A sandbox needs no copy of codealign:
``worker_source`` bundles these modules into one ``python3 -c`` program, so nothing is
mounted and the image never goes stale.
"""

from __future__ import annotations

import base64
import json
import zlib
from importlib import resources

#: The modules the worker needs, in import order.
MODULES = (
    "plain_data",
    "candidate",
    "seccomp",
    "hygiene",
    "protocol",
    "job_process",
    "judge_line",
    "judging",
    "worker_start",
    "judge_worker",
    "runner",
)

_BOOT = """\
import base64, json, sys, types, zlib
for _name in ("codealign", "codealign.sandbox"):
    _package = types.ModuleType(_name)
    _package.__path__ = []
    sys.modules[_name] = _package
for _name, _source in json.loads(zlib.decompress(base64.b85decode({blob!r}))):
    _module = types.ModuleType(_name)
    _module.__file__ = "<" + _name + ">"
    sys.modules[_name] = _module
    exec(compile(_source, _module.__file__, "exec"), _module.__dict__)
sys.modules["codealign.sandbox.runner"].main(sys.argv[1:])
"""


def worker_source() -> str:
    """The worker as one program for ``python3 -I -c``; argv: ``worker SETTINGS_JSON`` (the
    candidate's side) or ``judge SETTINGS_JSON`` (the task's side)."""
    package = resources.files("codealign.sandbox")
    sources = [
        (f"codealign.sandbox.{name}", package.joinpath(f"{name}.py").read_text("utf-8"))
        for name in MODULES
    ]
    # Compressed: the kernel caps one argument at 128 KiB, and the sources near it.
    blob = base64.b85encode(zlib.compress(json.dumps(sources).encode(), 9)).decode()
    return _BOOT.format(blob=blob)
