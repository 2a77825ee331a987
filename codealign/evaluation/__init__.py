"""pass@k evaluation."""

from codealign.evaluation.evaluate import evaluation_report, format_report
from codealign.evaluation.pass_at_k import PassAtK, pass_at_k, pass_at_k_over_tasks

__all__ = ["PassAtK", "evaluation_report", "format_report", "pass_at_k", "pass_at_k_over_tasks"]
