"""The math verifier and its time-limited worker pool."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from gvm_raft.rewards.math import MathVerifier
from gvm_raft.rewards.pool import TimeLimitedPool, VerifierError


def sleep_then_echo(seconds: float, value: float) -> float:
    time.sleep(seconds)
    return value


def crash(code: int) -> float:
    import os

    os._exit(code)


@pytest.fixture(scope="module")
def verifier():
    with MathVerifier(workers=2, timeout=1.5) as v:
        yield v


@pytest.mark.parametrize(
    ("completion", "answer", "reward"),
    [
        ("so the answer is \\boxed{0.5}", "\\frac{1}{2}", 1.0),
        ("\\boxed{1/2}", "0.5", 1.0),
        ("\\boxed{\\frac{1}{2}}", "1/2", 1.0),
        ("\\boxed{3.0}", "3", 1.0),
        ("\\boxed{3}", "3.0", 1.0),
        ("first \\boxed{2} then \\boxed{3}", "3", 1.0),
        ("\\boxed{(0,3)}", "(0, 3)", 1.0),
        ("\\boxed{4}", "3", 0.0),
        ("the answer is 3", "3", 0.0),
        ("\\boxed{}", "3", 0.0),
    ],
)
def test_equivalent_forms_accepted_and_wrong_ones_rejected(verifier, completion, answer, reward):
    assert verifier(["q"], [completion], [answer]) == [reward]


def test_batch_keeps_order(verifier):
    rewards = verifier(["q"] * 3, ["\\boxed{2}", "no box", "\\boxed{5}"], ["2", "2", "5"])
    assert rewards == [1.0, 0.0, 1.0]


def test_unboxed_answers_when_a_box_is_not_required():
    with MathVerifier(workers=1, require_boxed=False, correct=1.0, wrong=-1.0) as v:
        assert v(["q"], ["so it is 7"], ["7"]) == [1.0]
        assert v(["q"], ["so it is 8"], ["7"]) == [-1.0]


@pytest.mark.parametrize(
    "completion",
    [
        "\\boxed{9^{9^{9^{9^{9}}}}}",
        "\\boxed{" + "{" * 50_000 + "1" + "}" * 50_000 + "}",
        "\\boxed{" + "x+" * 400 + "1}",
        "x" * 3_000_000 + "\\boxed{2}",
        "\\boxed{\ud800\udfff}",
        "\\boxed{10^{10^{10^{10}}}!}",
    ],
)
def test_hostile_outputs_are_rejected(verifier, completion):
    assert verifier(["q"], [completion], ["1"]) == [0.0]


def test_hung_checks_are_killed_and_the_pool_recovers():
    with TimeLimitedPool(sleep_then_echo, workers=2, timeout=0.5, fallback=-1.0) as pool:
        assert pool.map([(0.0, 1.0), (60.0, 2.0), (0.0, 3.0)]) == [1.0, -1.0, 3.0]
        assert pool.restarts == 1
        assert pool.map([(0.0, 4.0)]) == [4.0]


def test_crashed_workers_are_replaced():
    with TimeLimitedPool(crash, workers=1, timeout=5.0, fallback=-1.0) as pool:
        assert pool.map([(3,), (4,)]) == [-1.0, -1.0]
        assert pool.restarts == 2


def slow_start() -> None:
    time.sleep(2.0)


def broken_start() -> None:
    import no_such_verifier_module  # noqa: F401


def needs_a_missing_module(value: float) -> float:
    import no_such_verifier_module  # noqa: F401

    return value


def fail_on_negative(value: float) -> float:
    if value < 0:
        raise ValueError("hostile input")
    return value


def test_the_time_limit_excludes_the_workers_start_up():
    # before: the limit ran from when the task was sent, start-up included, so a worker slower
    # to start than the limit was killed again and again and every check scored the fallback
    with TimeLimitedPool(
        sleep_then_echo, workers=2, timeout=0.5, fallback=-1.0, warm=slow_start
    ) as pool:
        assert pool.map([(0.0, 1.0), (0.0, 2.0), (0.0, 3.0)]) == [1.0, 2.0, 3.0]
        assert pool.counts["timeouts"] == 0 and pool.restarts == 0


def test_a_verifier_that_cannot_run_fails_loudly():
    # before: an ImportError inside the worker scored every sample 0
    with pytest.raises(VerifierError, match="warm-up failed: ModuleNotFoundError"):
        TimeLimitedPool(sleep_then_echo, workers=1, warm=broken_start)
    with (
        TimeLimitedPool(needs_a_missing_module, workers=1) as pool,
        pytest.raises(VerifierError, match="cannot run: ModuleNotFoundError"),
    ):
        pool.map([(1.0,)])


def two_second_start() -> None:
    time.sleep(2.0)


def test_an_answer_that_arrives_while_a_worker_restarts_is_kept():
    """Before: the replacement of a timed-out worker was awaited inside the loop, and a
    neighbour whose answer arrived meanwhile was judged past its deadline: tasks [8 s, 1 s,
    3.5 s] under a 4 s limit gave [-1, 1, -1] with 2 timeouts (the 3.5 s check, done at 4.5 s
    with its deadline at 5 s, lost)."""
    with TimeLimitedPool(
        sleep_then_echo, workers=2, timeout=4.0, fallback=-1.0, warm=two_second_start
    ) as pool:
        assert pool.map([(8.0, 1.0), (1.0, 2.0), (3.5, 3.0)]) == [-1.0, 2.0, 3.0]
        assert pool.counts["timeouts"] == 1 and pool.restarts == 1
        assert pool.map([(0.0, 4.0), (0.0, 5.0)]) == [4.0, 5.0]  # the replacement serves


def test_a_script_without_a_main_guard_is_told_the_fix(tmp_path):
    """The spawned workers import the calling script again; without the guard they die while
    starting, and the message names the fix."""
    script = tmp_path / "train_script.py"
    script.write_text(
        "from gvm_raft.rewards.math import MathVerifier\n"
        "MathVerifier(workers=1, timeout=1.0).close()\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode != 0
    assert 'under `if __name__ == "__main__":`' in done.stderr


def test_timeouts_errors_and_restarts_are_counted():
    with TimeLimitedPool(fail_on_negative, workers=1, timeout=5.0, fallback=0.0) as pool:
        assert pool.map([(1.0,), (-1.0,), (2.0,)]) == [1.0, 0.0, 2.0]
        assert dict(pool.counts) == {"checks": 3, "errors": 1}
    with TimeLimitedPool(sleep_then_echo, workers=1, timeout=0.3, fallback=-1.0) as pool:
        assert pool.map([(5.0, 1.0), (0.0, 2.0)]) == [-1.0, 2.0]
        assert pool.counts["timeouts"] == 1 and pool.restarts == 1


def test_the_math_verifier_warns_when_many_checks_fail():
    with MathVerifier(workers=1, timeout=1e-6) as tight:
        with pytest.warns(UserWarning, match="1 of 1 checks timed out or failed"):
            assert tight(["p"], ["\\boxed{3}"], ["3"]) == [0.0]
        assert tight.counts == {"checks": 1, "timeouts": 1, "errors": 0, "restarts": 1}
