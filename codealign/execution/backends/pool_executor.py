"""An Executor over a pool of runner workers, whatever sandbox the workers live in."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from codealign.execution.backends.worker_pool import WorkerPool
from codealign.execution.judging.judge import Job, job_payload, judge
from codealign.execution.judging.outside import plan_for, run_judged
from codealign.execution.records.results import ExecResult
from codealign.settings.execution import ExecutionConfig


class PoolExecutor:
    """Runs jobs on ``pool``: judged outside the candidate's sandbox, by a worker of
    ``judges`` (a sandbox of its own, paired with it for the job), where the task allows."""

    def __init__(
        self,
        config: ExecutionConfig,
        pool: WorkerPool,
        name: str,
        limits: dict[str, Any],
        judges: WorkerPool,
    ) -> None:
        self.config = config
        self.name = name
        self._pool = pool
        self._judges = judges
        self._limits = limits

    def run_one(self, job: Job) -> ExecResult:
        """One job, start to verdict, on this thread (what each of ``run``'s threads does)."""
        try:
            reply = self._attempt(job)
            if reply is not None and (reply.get("not_started") or reply.get("lost_judge")):
                # The job never ran, or its judge was lost (the task's side, never the
                # candidate's doing): once more, on fresh workers.
                reply = self._attempt(job)
            if reply is not None and reply.get("lost_judge"):
                reply = {"worker_error": "the judge's sandbox worker died or stopped answering"}
            return judge(job, None if reply is None or reply.get("not_started") else reply)
        except Exception as exc:
            # Whatever one sample did to its judging, the run goes on: it fails, with why.
            why = f"judging failed: {type(exc).__name__}: {exc}"[:300]
            return ExecResult(job.task.task_id, job.sample_index, "error", message=why)

    def _attempt(self, job: Job) -> dict[str, Any] | None:
        """One try of ``job``: judged outside where the task allows it (decided by the task
        alone, never by what the sample does), else inside the sandbox."""
        payload = job_payload(job, self._limits)
        plan = plan_for(job.task)
        if plan is None:
            return self._pool.request({**payload, "mode": "inside"}, self.config.timeout_s)
        # A judge that served the task last keeps its code warm in a child.
        with self._pool.session() as session, self._judges.session(job.task.task_id) as judging:
            reply = run_judged(session, judging, job.task, plan, payload)
            if reply.get("lost_judge"):
                judging.reusable = False
        return None if reply.get("lost") else reply

    def run(self, jobs: Iterable[Job]) -> Iterator[ExecResult]:
        """Yield one result per job, in completion order.

        ``jobs`` may be a stream that is still being produced (samples still being
        sampled): it is drawn on a thread of its own, and results come back while it runs.
        """
        finished: queue.SimpleQueue[Future[ExecResult] | None] = queue.SimpleQueue()
        failure: list[BaseException] = []
        stop = threading.Event()
        submitted = 0

        with ThreadPoolExecutor(self.config.workers, thread_name_prefix="codealign-exec") as pool:
            futures: list[Future[ExecResult]] = []

            def feed() -> None:
                nonlocal submitted
                try:
                    for job in jobs:
                        if stop.is_set():
                            return
                        future = pool.submit(self.run_one, job)
                        futures.append(future)
                        submitted += 1
                        future.add_done_callback(finished.put)
                except BaseException as exc:
                    failure.append(exc)
                finally:
                    finished.put(None)  # the stream is over: ``submitted`` is final

            feeder = threading.Thread(target=feed, name="codealign-exec-feed", daemon=True)
            feeder.start()
            try:
                yielded, fed = 0, False
                while not fed or yielded < submitted:
                    item = finished.get()
                    if item is None:
                        fed = True
                        if failure:
                            raise failure[0]
                        continue
                    yielded += 1
                    yield item.result()
            finally:
                stop.set()
                for future in list(futures):
                    future.cancel()

    def close(self) -> None:
        self._pool.close()
        self._judges.close()

    def __enter__(self) -> PoolExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
