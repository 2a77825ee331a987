"""codealign's verdicts as verl's reward: ``compute_score`` for verl's
``custom_reward_function``, ``compute_score_async`` for verl's reward loop (the calls that
arrive together go through the pool as one batch), ``compute_score_batch`` for older
verl's ``batch`` reward manager, and the parquet verl trains from (``codealign
verl-data``).

    reward.custom_reward_function.path=<the path of this file>
    reward.custom_reward_function.name=compute_score_async

Each row's ``reward_model.ground_truth`` carries its task (a native task record as JSON,
what ``verl-data`` writes: nothing else needs to reach verl's workers) or names one by
id, from the task source in ``extra_info["codealign_tasks"]`` or the ``tasks`` reward
kwarg. The answer (verl's decoded response) is a chat answer, its fenced code the
program, unless ``extra_info["prompt_format"]`` is ``completion``. One sandbox pool per
process serves every call. What comes back is a dict: ``score`` (the reward: the reward
tests' pass rate, or ``reward="passed"``/``"score"``), ``acc`` (every reward test passed),
``pass_rate``, and the held-back tests' ``heldback_pass_rate`` with ``monitored`` (1 when
the task holds tests back; else both 0, so their means over monitored rows are
sum(heldback_pass_rate) / sum(monitored)).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from codealign.errors import InputError
from codealign.prompting import answer_fields, instruction
from codealign.rewards.verifier import Answer, Verdict, Verifier
from codealign.settings.execution import ExecutionConfig
from codealign.settings.model import HUMAN_EVAL_STOPS
from codealign.tasks import Task, load_tasks
from codealign.tasks.native import RowError, from_native, to_native

REWARDS = ("pass_rate", "passed", "score")
_verifiers: dict[tuple[str, str], Verifier] = {}
_lock = threading.Lock()


def _verifier(source: str | None, execution: Mapping[str, Any] | None) -> Verifier:
    """This process's verifier for ``source`` (None: tasks carried by the rows)."""
    settings = json.dumps(dict(execution or {}), sort_keys=True)
    key = (source or "", settings)
    with _lock:
        found = _verifiers.get(key)
        if found is None:
            tasks: list[Task] = load_tasks(source) if source else []
            found = _verifiers[key] = Verifier(
                tasks, execution=ExecutionConfig(**json.loads(settings))
            )
        return found


def _task(
    ground_truth: Any, extra_info: Mapping[str, Any], tasks: str | None, where: str
) -> tuple[str | None, Task | str]:
    """(the task source, the task itself or its id) of one row."""
    if isinstance(ground_truth, Mapping):
        record: Any = ground_truth
    elif isinstance(ground_truth, str) and ground_truth.lstrip().startswith("{"):
        try:
            record = json.loads(ground_truth)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: ground_truth is not valid JSON: {exc}") from None
    else:
        source = extra_info.get("codealign_tasks") or tasks
        if not source:
            raise InputError(
                f"{where}: ground_truth {ground_truth!r} names a task but no task source "
                "is given (extra_info['codealign_tasks'] or the 'tasks' reward kwarg)"
            )
        return str(source), str(ground_truth)
    try:
        return None, from_native(record)
    except RowError as exc:
        raise InputError(f"{where}: ground_truth is not a task: {exc}") from None


def compute_score_batch(
    data_sources: Sequence[str],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[Mapping[str, Any] | None] | None = None,
    *,
    tasks: str | None = None,
    reward: str = "pass_rate",
    execution: Mapping[str, Any] | None = None,
    **_: Any,
) -> list[dict[str, float]]:
    """verl's batch reward manager's call: every response of a step through the pool at
    once. ``tasks``, ``reward`` and ``execution`` (ExecutionConfig fields) come from
    ``custom_reward_function.reward_kwargs``."""
    if reward not in REWARDS:
        raise InputError(f"reward must be one of {', '.join(REWARDS)}, got {reward!r}")
    infos = list(extra_infos) if extra_infos is not None else [None] * len(solution_strs)
    if not len(data_sources) == len(solution_strs) == len(ground_truths) == len(infos):
        raise InputError(
            "data_sources, solution_strs, ground_truths and extra_infos differ in length"
        )
    groups: dict[str | None, list[int]] = {}
    rows: list[tuple[Task | str, Mapping[str, Any]]] = []
    for i, (truth, info) in enumerate(zip(ground_truths, infos, strict=True)):
        source, task = _task(truth, info or {}, tasks, f"row {i} ({data_sources[i]})")
        groups.setdefault(source, []).append(i)
        rows.append((task, info or {}))
    out: list[dict[str, float]] = [{} for _ in rows]
    for source, indices in groups.items():
        verifier = _verifier(source, execution)
        answers = []
        for i in indices:
            task, info = rows[i]
            if isinstance(task, Task):
                verifier.add([task])
            else:
                task = verifier.resolve(task)
            chat = info.get("prompt_format", "chat") != "completion"
            fields = answer_fields(task, solution_strs[i], chat=chat, stop=HUMAN_EVAL_STOPS)
            answers.append(Answer(task.task_id, fields.get("completion"), fields.get("solution")))
        for i, verdict in zip(
            indices, verifier.verify(answers, score=reward == "score"), strict=True
        ):
            out[i] = _row(verdict, reward)
    return out


def _row(verdict: Verdict, reward: str) -> dict[str, float]:
    value = {"pass_rate": verdict.pass_rate, "passed": float(verdict.passed)}.get(reward)
    return {
        "score": float(verdict.score or 0.0) if value is None else value,
        "acc": float(verdict.passed),
        "pass_rate": verdict.pass_rate,
        "heldback_pass_rate": verdict.heldback_pass_rate or 0.0,
        "monitored": float(verdict.heldback_pass_rate is not None),
    }


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """verl's ``custom_reward_function`` call, one response (the naive reward manager)."""
    return compute_score_batch(
        [data_source], [solution_str], [ground_truth], [extra_info], **kwargs
    )[0]


class _Coalescer:
    """Gathers the rows of concurrent ``compute_score_async`` calls into one batch."""

    def __init__(self, kwargs: Mapping[str, Any]) -> None:
        self.kwargs = dict(kwargs)
        self.pending: list[tuple[tuple[Any, ...], asyncio.Future[dict[str, float]]]] = []

    async def score(self, row: tuple[Any, ...]) -> dict[str, float]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, float]] = loop.create_future()
        self.pending.append((row, future))
        if len(self.pending) == 1:  # the first of a batch: flush once the others are in
            loop.call_later(_WINDOW_S, lambda: loop.create_task(self._flush()))
        return await future

    async def _flush(self) -> None:
        rows, self.pending = self.pending, []
        columns = [list(c) for c in zip(*(row for row, _ in rows), strict=True)]
        loop = asyncio.get_running_loop()
        try:
            scores = await loop.run_in_executor(
                None, functools.partial(compute_score_batch, *columns, **self.kwargs)
            )
        except Exception:  # one bad row must not fail its neighbours: each on its own
            for row, future in rows:
                try:
                    one = await loop.run_in_executor(
                        None, functools.partial(compute_score, *row, **self.kwargs)
                    )
                    future.set_result(one)
                except Exception as exc:
                    future.set_exception(exc)
            return
        for (_, future), value in zip(rows, scores, strict=True):
            future.set_result(value)


_WINDOW_S = 0.01  # how long a batch waits for more calls after its first
_coalescers: dict[tuple[int, str], _Coalescer] = {}


async def compute_score_async(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """``compute_score`` for verl's reward loop, which awaits one call per response: the
    calls that arrive together run as one batch through the pool."""
    key = (id(asyncio.get_running_loop()), json.dumps(kwargs, sort_keys=True, default=str))
    coalescer = _coalescers.setdefault(key, _Coalescer(kwargs))
    return await coalescer.score((data_source, solution_str, ground_truth, extra_info))


def verl_rows(tasks: Sequence[Task], data_source: str, split: str) -> list[dict[str, Any]]:
    """One verl row per task: the chat prompt, the task as ground truth, extra info."""
    return [
        {
            "data_source": data_source,
            "prompt": [{"role": "user", "content": instruction(task)}],
            "ability": "code",
            "reward_model": {"style": "rule", "ground_truth": json.dumps(to_native(task))},
            "extra_info": {
                "split": split,
                "index": i,
                "task_id": task.task_id,
                "prompt_format": "chat",
            },
        }
        for i, task in enumerate(tasks)
    ]


def write_verl_parquet(
    tasks: Sequence[Task], out: str | Path, *, data_source: str = "codealign", split: str = "train"
) -> Path:
    """The parquet file verl's RLHFDataset reads, written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not tasks:
        raise InputError("no tasks to write")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(pa.Table.from_pylist(verl_rows(tasks, data_source, split)), tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
