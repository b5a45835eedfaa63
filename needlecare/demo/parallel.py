"""Worker processes for the demo: the cohort's patients are independent (every pipeline decision is per patient),
so ``run_demo`` can simulate shards of them side by side, each in its own scratch database, and copy each into
the application database afterwards. Processes are spawned (not forked: the caller may hold connections and
threads); they report progress and their result on one queue, counts only."""

import multiprocessing
import queue as queues
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

Progress = Callable[[datetime], None]
WorkerTarget = Callable[..., None]


class WorkerFailed(RuntimeError):
    """A worker process raised or died; the message says which and why (no patient data)."""


def run_workers(target: WorkerTarget, jobs: Sequence[tuple[Any, ...]], progress: Progress | None) -> list[Any]:
    """Run ``target(*job, queue, index)`` for every job in its own process; their results, in job order.

    ``target`` puts ``("at", index, clock)`` as it goes, then ``("done", index, result)`` or
    ``("error", index, message)``. ``progress`` gets the earliest clock of the workers still running.
    """
    context = multiprocessing.get_context("spawn")
    channel = context.Queue()
    processes = [
        context.Process(target=target, args=(*job, channel, index), daemon=True) for index, job in enumerate(jobs)
    ]
    for process in processes:
        process.start()
    results: dict[int, Any] = {}
    clocks: dict[int, datetime] = {}
    try:
        while len(results) < len(processes):
            try:
                kind, index, payload = channel.get(timeout=1.0)
            except queues.Empty:
                for index, process in enumerate(processes):
                    if index not in results and not process.is_alive():
                        raise WorkerFailed(f"demo worker {index} exited with code {process.exitcode}") from None
                continue
            if kind == "error":
                raise WorkerFailed(f"demo worker {index}: {payload}")
            if kind == "done":
                results[index] = payload
                clocks.pop(index, None)
            else:
                clocks[index] = payload
            if progress is not None and clocks and len(clocks) + len(results) == len(processes):
                progress(min(clocks.values()))
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        channel.close()
    return [results[index] for index in range(len(processes))]
