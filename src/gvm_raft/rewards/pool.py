"""Run untrusted checks in worker processes, each with a hard time limit.

math-verify's own timeouts use SIGALRM, which fails off the main thread and replaces other alarm
handlers; a check can also hang in sympy or exhaust memory. Here every check runs in a worker
process; a worker that exceeds the limit (or dies) is killed and replaced, and the check gets
the fallback value. The caller's process is never at risk.

The limit times the check alone: a worker first runs ``warm`` (imports, caches; bounded by
``startup_timeout``) and says it is ready, and only then gets tasks. A check that raises scores
the fallback and is counted as an error; a worker that cannot work at all (its warm-up fails,
or a check raises ImportError) raises ``VerifierError`` in the caller instead of scoring every
sample as the fallback. ``counts`` holds the checks, timeouts, errors and restarts so far.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from gvm_raft.errors import VerifierError

Check = Callable[..., float]


def _serve(check: Check, warm: Callable[[], Any] | None, conn: Connection) -> None:
    try:
        if warm is not None:
            warm()
    except Exception as err:
        conn.send(("fatal", f"warm-up failed: {type(err).__name__}: {err}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            args = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("ok", float(check(*args))))
        except ImportError as err:
            conn.send(("fatal", f"{type(err).__name__}: {err}"))
        except Exception as err:  # a check that fails on hostile input scores the fallback
            conn.send(("error", f"{type(err).__name__}: {err}"[:300]))


class _Worker:
    """One worker process and its pipe; not ``ready`` until its warm-up has reported."""

    def __init__(
        self,
        context: Any,
        check: Check,
        warm: Callable[[], Any] | None,
        startup_timeout: float,
    ) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(check, warm, child), daemon=True)
        self.process.start()
        child.close()
        self.startup_timeout = startup_timeout
        self.startup_deadline = time.monotonic() + startup_timeout
        self.ready = False
        self.task: int | None = None
        self.deadline = 0.0

    def await_ready(self) -> None:
        if not self.conn.poll(max(0.0, self.startup_deadline - time.monotonic())):
            self.stop()
            raise VerifierError(
                f"a verifier worker did not start within {self.startup_timeout:g} s"
            )
        self.take_ready_message()

    def take_ready_message(self) -> None:
        """Read the start-up report (the pipe is readable): ready, or why it cannot run."""
        try:
            kind, message = self.conn.recv()
        except (EOFError, OSError):
            self.stop()
            raise VerifierError(
                "a verifier worker died while starting. When gvm-raft runs from a script, the "
                "verifier's worker processes import that script again: put the training call "
                'under `if __name__ == "__main__":`'
            ) from None
        if kind != "ready":
            self.stop()
            raise VerifierError(f"the verifier cannot run: {message}")
        self.ready = True

    def stop(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()


class TimeLimitedPool:
    """``pool.map(args_list)`` -> [check(*args) or fallback] with at most ``timeout`` s per check.

    check (and warm) must be picklable top-level functions. Use as a context manager or call
    close(). A worker killed for a timeout is replaced without waiting for its successor's
    warm-up: the other workers' answers are read as they arrive, and a check's deadline is
    judged when the pool wakes, which it does at the first answer or deadline.
    """

    def __init__(
        self,
        check: Check,
        workers: int = 2,
        timeout: float = 5.0,
        fallback: float = 0.0,
        warm: Callable[[], Any] | None = None,
        startup_timeout: float = 300.0,
    ) -> None:
        if workers < 1 or timeout <= 0 or startup_timeout <= 0:
            raise ValueError(
                f"need workers >= 1, timeout > 0 and startup_timeout > 0; got {workers}, "
                f"{timeout}, {startup_timeout}"
            )
        self.check, self.warm, self.fallback = check, warm, fallback
        self.timeout, self.startup_timeout = timeout, startup_timeout
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self.counts: Counter[str] = Counter()
        try:
            self._workers = [self._start() for _ in range(workers)]
            for worker in self._workers:  # started together, awaited in turn
                worker.await_ready()
        except BaseException:
            self.close()
            raise

    @property
    def restarts(self) -> int:
        return self.counts["restarts"]

    def map(self, tasks: Sequence[tuple]) -> list[float]:
        results = [self.fallback] * len(tasks)
        queue = deque(range(len(tasks)))
        self.counts["checks"] += len(tasks)
        while queue or any(w.task is not None for w in self._workers):
            for worker in self._workers:
                if worker.ready and worker.task is None and queue:
                    worker.task = queue.popleft()
                    worker.deadline = time.monotonic() + self.timeout
                    try:
                        worker.conn.send(tasks[worker.task])
                    except (BrokenPipeError, OSError):
                        self._replace(worker)
            waiting = [w for w in self._workers if w.task is not None or not w.ready]
            if not waiting:
                continue
            deadlines = [w.deadline if w.ready else w.startup_deadline for w in waiting]
            wait_for = max(0.0, min(deadlines) - time.monotonic())
            readable = set(wait([w.conn for w in waiting], timeout=wait_for))
            now = time.monotonic()  # every deadline is judged at the wake-up, not after restarts
            for worker in waiting:
                if not worker.ready:
                    if worker.conn in readable:
                        worker.take_ready_message()
                    elif now >= worker.startup_deadline:
                        worker.stop()
                        raise VerifierError(
                            f"a verifier worker did not start within {self.startup_timeout:g} s"
                        )
                elif worker.conn in readable:
                    self._take_answer(worker, results)
                elif now >= worker.deadline:
                    self.counts["timeouts"] += 1
                    self._replace(worker)
        return results

    def _take_answer(self, worker: _Worker, results: list[float]) -> None:
        try:
            kind, value = worker.conn.recv()
        except (EOFError, OSError):
            self._replace(worker)
            return
        if kind == "fatal":
            raise VerifierError(f"the verifier cannot run: {value}")
        if kind == "ok":
            results[worker.task] = value
        else:
            self.counts["errors"] += 1
        worker.task = None

    def _start(self) -> _Worker:
        return _Worker(self._context, self.check, self.warm, self.startup_timeout)

    def _replace(self, worker: _Worker) -> None:
        """Kill a hung or dead worker (its task keeps the fallback value) and start another in
        its place, without waiting for it: it takes tasks once its warm-up has reported."""
        index = self._workers.index(worker)
        worker.stop()
        self.counts["restarts"] += 1
        self._workers[index] = self._start()

    def close(self) -> None:
        for worker in self._workers:
            worker.stop()
        self._workers = []

    def __enter__(self) -> TimeLimitedPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
