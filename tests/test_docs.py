"""The README and docs/ cannot drift from the code: every link resolves, every page is
reachable from the README, and every command in a fenced ``bash`` block is checked.

A ``codealign`` command (also as ``python -m codealign``, ``accelerate launch ... -m
codealign``, or a venv's ``codealign``) is parsed by the command's own parser, its
``--set`` overrides and ``--config`` file are checked against the settings, and the ones
that take seconds on a CPU (listing and exporting tasks, executing and evaluating
samples, verl's parquet, the sandbox check) are run as written, in a temporary folder
with small inputs under the names the docs use. Benchmark scripts must exist and take the
flags shown; ``pip install`` extras must exist. A program this test does not know fails
it, so a new kind of command gets a check before it gets documented.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import metadata
from pathlib import Path

import pytest

from codealign.cli import build_parser
from codealign.errors import InputError
from codealign.settings.sources import SECTIONS, build_config, load_config_file, parse_overrides

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Programs the docs show that belong to other projects: named, never run here.
EXTERNAL = {"ray", "tensorboard", "deactivate"}
#: Python modules of other projects the docs launch (their flags are theirs).
EXTERNAL_MODULES = ("verl.", "openrlhf.")
#: Subcommands that take seconds on a CPU with small inputs: run as written.
RUNNABLE = {"tasks", "execute", "verl-data", "sandbox"}


@dataclass(frozen=True)
class Command:
    """One command of a fenced block: where it is, and its words."""

    page: Path
    line: int
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}: {shlex.join(self.words)}"


# --- reading the pages ---------------------------------------------------------------------


def _bash_blocks(page: Path) -> Iterator[tuple[int, str]]:
    """(first line number, text) of each fenced bash block, continuation lines joined."""
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        fence = lines[i].strip()
        if fence.startswith("```") and fence[3:].strip() in ("bash", "sh", "shell"):
            start, body = i + 2, []
            i += 1
            while not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            yield start, "\n".join(body)
        i += 1


def commands(page: Path) -> list[Command]:
    """Every command in ``page``'s bash blocks, split at ``&&``, ``||``, ``;`` and ``|``."""
    found = []
    for start, block in _bash_blocks(page):
        offset = 0
        for logical in re.split(r"(?<!\\)\n", block):
            line = start + offset
            offset += logical.count("\n") + 1
            lexer = shlex.shlex(logical.replace("\\\n", " "), posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            words: list[str] = []
            for token in [*lexer, "&&"]:
                if token in ("&&", "||", ";", "|"):
                    if words:
                        found.append(Command(page, line, tuple(words)))
                    words = []
                else:
                    words.append(token)
    return found


def all_commands() -> list[Command]:
    return [c for page in PAGES for c in commands(page)]


def codealign_argv(words: tuple[str, ...]) -> list[str] | None:
    """The arguments a command passes to codealign, or None when it runs something else."""
    words = tuple(w for w in words if not re.fullmatch(r"[A-Z_]+=\S*", w))  # env settings
    prog = os.path.basename(words[0]) if words else ""
    if prog == "codealign":
        return list(words[1:])
    if prog in ("accelerate", "torchrun") or prog.startswith("python"):
        for k in range(1, len(words) - 1):
            if words[k] == "-m":
                return list(words[k + 2 :]) if words[k + 1] == "codealign" else None
    return None


# --- checking one command --------------------------------------------------------------------


class _ParseError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = build_parser()

    def fail(message: str) -> None:
        raise _ParseError(message)

    for action in parser._subparsers._group_actions if parser._subparsers else []:
        for sub in getattr(action, "choices", {}).values():
            sub.error = fail  # type: ignore[method-assign]
    parser.error = fail  # type: ignore[method-assign]
    return parser


def check_codealign(command: Command, argv: list[str]) -> argparse.Namespace | None:
    """Parse ``argv`` as the docs give it; a wrong flag, command, choice, setting or config
    file is an AssertionError naming the page and line. ``...`` stands for elided
    arguments: a missing required one is then fine."""
    elided = "..." in argv
    argv = [w for w in argv if w != "..."]
    try:
        args = _parser().parse_args(argv)
    except _ParseError as exc:
        if elided and "arguments are required" in str(exc):
            return None
        raise AssertionError(f"{command}\n  the parser says: {exc}") from None
    try:
        for section, values in parse_overrides(getattr(args, "overrides", None) or []).items():
            build_config(SECTIONS[section], values, source=f"--set {section}")
        if getattr(args, "config", None):
            load_config_file(ROOT / args.config)
    except InputError as exc:
        raise AssertionError(f"{command}\n  the settings say: {exc}") from None
    return args


def check_other(command: Command) -> None:
    """A command that is not codealign's: what the repository can vouch for."""
    words = [w for w in command.words if not re.fullmatch(r"[A-Z_]+=\S*", w)]
    prog = os.path.basename(words[0])
    if prog in EXTERNAL:
        return
    if prog == "pip" or (prog.startswith("python") and words[1:3] == ["-m", "pip"]):
        extras = set(metadata("codealign").get_all("Provides-Extra") or [])
        for word in words:
            if match := re.fullmatch(r"\.\[([\w,-]+)\]", word):
                unknown = set(match.group(1).split(",")) - extras
                assert not unknown, f"{command}\n  no such extra: {sorted(unknown)}"
        return
    if prog.startswith("python") and words[1:2] == ["-m"]:
        module = words[2]
        assert module in ("pytest", "venv") or module.startswith(EXTERNAL_MODULES), (
            f"{command}\n  an unknown module: check it in tests/test_docs.py"
        )
        return
    script = next((w for w in words[1:] if w.endswith((".py", ".sh"))), None)
    if prog.startswith(("python", "bash")) and script:
        path = ROOT / script
        assert path.is_file(), f"{command}\n  no such script: {script}"
        flags = [w.split("=")[0] for w in words if w.startswith("--")]
        if flags and script.endswith(".py"):
            shown = subprocess.run(
                [sys.executable, str(path), "--help"], capture_output=True, text=True, cwd=ROOT
            ).stdout
            missing = [f for f in flags if f not in shown]
            assert not missing, f"{command}\n  {script} --help lists no {missing}"
        return
    raise AssertionError(f"{command}\n  a program tests/test_docs.py does not know")


# --- the tests -----------------------------------------------------------------------------


def test_the_checker_catches_a_renamed_flag_and_a_stale_setting() -> None:
    page = ROOT / "README.md"
    for text, said in (
        ("codealign iterate --rounds 3 --rundir runs/x", "unrecognized arguments: --rundir"),
        ("codealign iterate --set iterate.round=3", "unknown setting(s) round"),
        ("codealign iterat --rounds 3", "invalid choice"),
        ("codealign eval --config configs/none.yaml --tasks humaneval", "no such config file"),
    ):
        command = Command(page, 1, tuple(shlex.split(text)))
        argv = codealign_argv(command.words)
        assert argv is not None
        with pytest.raises(AssertionError, match=re.escape(said)):
            check_codealign(command, argv)
    with pytest.raises(AssertionError, match="does not know"):
        check_other(Command(page, 1, ("make", "all")))
    with pytest.raises(AssertionError, match="no such extra"):
        check_other(Command(page, 1, ("pip", "install", "-e", ".[nonesuch]")))


def test_commands_are_read_from_fenced_blocks(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```bash\npip install -e . && codealign iterate --rounds 3 \\\n"
        "    --run-dir runs/x   # a comment\nFOO=1 accelerate launch -m codealign dpo ...\n```\n"
        "```\ncodealign not-a-command\n```\n"
    )
    found = [(c.line, c.words) for c in commands(page)]
    assert found == [
        (4, ("pip", "install", "-e", ".")),
        (4, ("codealign", "iterate", "--rounds", "3", "--run-dir", "runs/x")),
        (6, ("FOO=1", "accelerate", "launch", "-m", "codealign", "dpo", "...")),
    ]
    assert codealign_argv(found[2][1]) == ["dpo", "..."]


def test_every_page_is_reachable_and_every_link_resolves() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in PAGES[1:]:
        assert f"(docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            assert resolved.exists(), f"{page.relative_to(ROOT)}: no such file {target}"
            if anchor and resolved.suffix == ".md":
                assert anchor in _anchors(resolved), f"{page.relative_to(ROOT)}: no {target}"


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    out, fence = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_the_readme_stays_short() -> None:
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 300


@pytest.mark.parametrize("command", all_commands(), ids=str)
def test_every_documented_command_is_valid(command: Command) -> None:
    argv = codealign_argv(command.words)
    if argv is None:
        check_other(command)
    else:
        check_codealign(command, argv)


def inline_commands() -> list[Command]:
    """Commands named in running text (`` `codealign ppo --method grpo` ``), each
    alternative of ``a|b`` spelled out: their words are checked, required ones aside."""
    found = []
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            for span in re.findall(r"`((?:python -m )?codealign [^`]+)`", line):
                variants: list[list[str]] = [[]]
                for word in span.split():
                    variants = [[*v, alt] for v in variants for alt in word.split("|")]
                found += [Command(page, number, (*v, "...")) for v in variants]
    return found


@pytest.mark.parametrize("command", inline_commands(), ids=str)
def test_every_command_named_in_the_text_is_valid(command: Command) -> None:
    argv = codealign_argv(command.words)
    assert argv is not None
    check_codealign(command, argv)


# --- running the quick ones ----------------------------------------------------------------

#: Small inputs under the names the docs use.
_TASK_FILES = ("mbpp.jsonl", "tasks.jsonl")
_SAMPLE_FILES = ("samples.jsonl", "s.jsonl")


def _runnable(argv: list[str]) -> bool:
    if not argv or argv[0] not in RUNNABLE | {"eval"}:
        return False
    if "execution.cluster=ray" in argv:  # after `ray start`: tests/execution/test_ray_cluster.py
        return False
    if argv[0] == "eval":  # without a model: the samples or the reference solutions
        return "--model" not in argv and "--config" not in argv
    if argv[0] == "sandbox":
        return argv[1:2] == ["check"]
    return True


def _prepare(folder: Path, argv: list[str], env: dict[str, str]) -> None:
    mbpp = (ROOT / "tests/data/mbpp_sanitized.jsonl").read_text().splitlines()
    for name in _TASK_FILES:
        if name in argv and not (folder / name).exists():
            (folder / name).write_text("\n".join(mbpp) + "\n")
    if "my_suites/" in argv and not (folder / "my_suites").exists():
        shutil.copytree(ROOT / "tests/data/suites", folder / "my_suites")
    tasks = argv[argv.index("--tasks") + 1] if "--tasks" in argv else "humaneval"
    for name in _SAMPLE_FILES:
        if name in argv and not (folder / name).exists():
            subprocess.run(
                [sys.executable, "-m", "codealign", "tasks", tasks, "--export-canonical", name],
                cwd=folder,
                env=env,
                check=True,
                capture_output=True,
            )


@pytest.mark.sandbox
def test_the_quick_commands_run_as_written(tmp_path: Path) -> None:
    from tests.conftest import _require_bwrap

    _require_bwrap()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ran = []
    for k, command in enumerate(all_commands()):
        argv = codealign_argv(command.words)
        if argv is None or not _runnable(argv):
            continue
        folder = tmp_path / str(k)  # a folder of its own, with the inputs it names
        folder.mkdir()
        _prepare(folder, argv, env)
        done = subprocess.run(
            [sys.executable, "-m", "codealign", *argv],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        ran.append(argv[0])
    assert {"tasks", "eval", "execute", "verl-data", "sandbox"} <= set(ran), ran


def test_the_training_page_has_a_row_for_every_method() -> None:
    from codealign.settings.methods import METHODS

    text = (ROOT / "docs" / "training.md").read_text(encoding="utf-8")
    for spec in METHODS.values():
        row = next(
            (line for line in text.splitlines() if line.startswith(f"| `{spec.name}` |")), ""
        )
        assert row, f"docs/training.md: no row for {spec.name}"
        assert spec.paper.split()[0] in row, f"docs/training.md: {spec.name} cites {spec.paper}"
