"""Run untrusted checks in worker processes, each with a hard time limit.

math-verify's own timeouts use SIGALRM, which fails off the main thread and replaces other alarm
handlers; a check can also hang in sympy or exhaust memory. Here every check runs in a worker
process; a worker that exceeds the limit (or dies) is killed and replaced, and the check gets
the fallback value. The caller's process is never at risk.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

Check = Callable[..., float]


def _serve(check: Check, conn: Connection, fallback: float) -> None:
    while True:
        try:
            args = conn.recv()
        except EOFError:
            return
        try:
            result = float(check(*args))
        except Exception:  # a check that fails on hostile input scores as the fallback
            result = fallback
        conn.send(result)


class _Worker:
    def __init__(self, context: Any, check: Check, fallback: float) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(check, child, fallback), daemon=True)
        self.process.start()
        child.close()
        self.task: int | None = None
        self.deadline = 0.0

    def stop(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()


class TimeLimitedPool:
    """``pool.map(args_list)`` -> [check(*args) or fallback] with at most ``timeout`` s per check.

    check must be a picklable top-level function. Use as a context manager or call close().
    """

    def __init__(
        self, check: Check, workers: int = 2, timeout: float = 5.0, fallback: float = 0.0
    ) -> None:
        if workers < 1 or timeout <= 0:
            raise ValueError(f"need workers >= 1 and timeout > 0; got {workers}, {timeout}")
        self.check, self.timeout, self.fallback = check, timeout, fallback
        self._context = multiprocessing.get_context("spawn")
        self._workers = [_Worker(self._context, check, fallback) for _ in range(workers)]
        self.restarts = 0

    def map(self, tasks: Sequence[tuple]) -> list[float]:
        results = [self.fallback] * len(tasks)
        queue = deque(range(len(tasks)))
        while queue or any(w.task is not None for w in self._workers):
            for worker in self._workers:
                if worker.task is None and queue:
                    worker.task = queue.popleft()
                    worker.deadline = time.monotonic() + self.timeout
                    try:
                        worker.conn.send(tasks[worker.task])
                    except (BrokenPipeError, OSError):
                        self._replace(worker)
            busy = [w for w in self._workers if w.task is not None]
            if not busy:
                continue
            wait_for = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            ready = set(wait([w.conn for w in busy], timeout=wait_for))
            for worker in busy:
                if worker.conn in ready:
                    try:
                        results[worker.task] = worker.conn.recv()
                        worker.task = None
                    except (EOFError, OSError):
                        self._replace(worker)
                elif time.monotonic() >= worker.deadline:
                    self._replace(worker)
        return results

    def _replace(self, worker: _Worker) -> None:
        """Kill a hung or dead worker; its task keeps the fallback value."""
        index = self._workers.index(worker)
        worker.stop()
        self._workers[index] = _Worker(self._context, self.check, self.fallback)
        self.restarts += 1

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self._workers = []

    def __enter__(self) -> TimeLimitedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
