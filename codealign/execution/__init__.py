"""Running samples against tests in a sandbox, and the results that come back."""

from codealign.execution.execute import (
    execute_samples,
    execute_stream,
    result_records,
    write_results,
)
from codealign.execution.executor import Executor, make_executor
from codealign.execution.judging.judge import Job
from codealign.execution.records.results import ExecResult, Status, TestVerdict
from codealign.settings.execution import ExecutionConfig

__all__ = [
    "ExecResult",
    "ExecutionConfig",
    "Executor",
    "Job",
    "Status",
    "TestVerdict",
    "execute_samples",
    "execute_stream",
    "make_executor",
    "result_records",
    "write_results",
]
