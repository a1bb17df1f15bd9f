"""Each M-step's estimator on synthetic per-sample scores (known p_i, G_i, random directions):
its Monte Carlo mean is the target estimators.py states, and the allocation derived for it has
the lowest Monte Carlo variance among random feasible allocations (tolerances from the Monte
Carlo error). Closed forms of the GRPO scale and cost checked by hand and by enumeration."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pytest

from gvm_raft.allocation import allocate
from gvm_raft.estimators import (
    accuracy_variance,
    grpo_cost,
    grpo_grad_norm,
    grpo_scale,
    grpo_variance,
    informative_group_probability,
    inverse_acceptance_weights,
    uniform_target_weights,
)
from gvm_raft.losses import grpo_advantages

P = np.array([0.05, 0.15, 0.3, 0.5, 0.7, 0.9])
G = np.array([30.0, 27.0, 24.0, 21.0, 18.0, 15.0])
NBAR = 8
BUDGET = NBAR * P.size
DIM = 24


@dataclass
class World:
    """Scores g = mu_acc + noise for accepted samples and mu_rej + noise for rejected ones, with
    p mu_acc + (1 - p) mu_rej = 0 (a score function has mean zero) and E||noise||^2 = G^2."""

    mu_acc: np.ndarray  # (m, DIM)
    mu_rej: np.ndarray
    rejected_length: float = 1.0  # E||noise||^2 of a rejected sample: (rejected_length G)^2

    @property
    def grad_p(self) -> np.ndarray:
        return P[:, None] * self.mu_acc


def make_world(seed: int = 0, share: float = 0.1, rejected_length: float = 1.0) -> World:
    """||mu_acc|| = share G (1 - p), so that ||mu_rej|| = share G p: the mean scores at most a
    tenth of a sample's length, as the derivations assume (and any large model has)."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(P.size, DIM))
    length = (share * G * (1 - P))[:, None]
    mu_acc = length * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    return World(mu_acc, -(P / (1 - P))[:, None] * mu_acc, rejected_length)


def draw(world: World, i: int, n: int, trials: int, rng: np.random.Generator):
    """Rewards (trials, n) and scores (trials, n, DIM) of prompt i."""
    rewards = (rng.random((trials, n)) < P[i]).astype(np.float64)
    noise = rng.normal(scale=G[i] / math.sqrt(DIM), size=(trials, n, DIM))
    noise[rewards == 0] *= world.rejected_length
    means = np.where(rewards[..., None] > 0, world.mu_acc[i], world.mu_rej[i])
    return rewards, means + noise


def group_advantages(rewards: np.ndarray) -> np.ndarray:
    """GRPO's advantages of each trial's group (rows): (r - mean) / (std + 1e-6), unbiased std,
    0 for a group whose rewards are equal (``test_group_advantages_are_the_trainers``)."""
    std = rewards.std(axis=1, ddof=1, keepdims=True) if rewards.shape[1] > 1 else None
    if std is None:
        return rewards.copy()  # a group of one: advantage = reward
    centred = rewards - rewards.mean(axis=1, keepdims=True)
    return np.where(std > 0, centred / (std + 1e-6), 0.0)


def test_group_advantages_are_the_trainers():
    rewards = (np.random.default_rng(0).random((50, 5)) < 0.4).astype(np.float64)
    expected = [grpo_advantages(row, [0] * 5).numpy() for row in rewards]
    np.testing.assert_allclose(group_advantages(rewards), np.stack(expected), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(
        group_advantages(np.ones((2, 1))), grpo_advantages([1.0], [0]).numpy()[None].repeat(2, 0)
    )


def estimate(world: World, n, kind: str, trials: int, seed: int) -> np.ndarray:
    """Monte Carlo draws (trials, DIM) of one estimator at sample sizes n."""
    rng = np.random.default_rng(seed)
    total = np.zeros((trials, DIM))
    n = np.asarray(n)
    for i, size in enumerate(n.tolist()):
        if size == 0:
            continue
        rewards, scores = draw(world, i, size, trials, rng)
        if kind.startswith("grpo"):
            term = np.einsum("tj,tjd->td", group_advantages(rewards), scores)
        else:
            term = np.einsum("tj,tjd->td", rewards, scores)
        weight = {
            "pooled": 1.0,
            "accuracy": uniform_target_weights(n, P, NBAR, grpo=False)[i],
            "inverse": inverse_acceptance_weights(n, P)[i],
            "em": 1.0 / (size * P[i]),
            "grpo-pooled": 1.0,
            "grpo": uniform_target_weights(n, P, NBAR, grpo=True)[i],
        }[kind]
        total += weight * term
    return total


def target(world: World, n, kind: str) -> np.ndarray:
    """The mean estimators.py states for each estimator."""
    n = np.asarray(n)
    scale = {
        "pooled": n,
        "accuracy": np.full(P.size, NBAR),
        "inverse": np.minimum(n * P, 1.0) / P,  # sum grad log p_i; n_i p_i < 1 floored at 1
        "em": 1.0 / P,
        "grpo-pooled": grpo_scale(n, P) / (P * (1 - P)),
        "grpo": grpo_scale(np.full(P.size, NBAR), P) / (P * (1 - P)),
    }[kind]
    return (scale[:, None] * world.grad_p).sum(axis=0)


def assert_mean_is(draws: np.ndarray, expected: np.ndarray) -> None:
    """Each coordinate's Monte Carlo mean within 4.5 standard errors (24 coordinates)."""
    se = draws.std(axis=0, ddof=1) / math.sqrt(len(draws))
    z = (draws.mean(axis=0) - expected) / se
    assert np.abs(z).max() < 4.5, f"largest |z| {np.abs(z).max():.2f}"


def total_variance(draws: np.ndarray) -> tuple[float, float]:
    """trace Cov of the draws, and its Monte Carlo standard error."""
    squared = ((draws - draws.mean(axis=0)) ** 2).sum(axis=1)
    return float(squared.mean()), float(squared.std(ddof=1) / math.sqrt(len(draws)))


def random_allocations(count: int, floor: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    spare = BUDGET - floor * P.size
    return [floor + rng.multinomial(spare, rng.dirichlet(np.ones(P.size))) for _ in range(count)]


ALLOCATIONS = {
    "uniform": np.full(P.size, NBAR),
    "gvm": allocate(G, P, BUDGET, "gvm", alpha=0.0).n_samples,
    "gvm-accuracy": allocate(G, P, BUDGET, "gvm-accuracy").n_samples,
    "gvm-grpo": allocate(G, P, BUDGET, "gvm-grpo").n_samples,
}


LONG_REJECTED_GRPO = allocate(grpo_grad_norm(G, 2 * G, P), P, BUDGET, "gvm-grpo").n_samples


@pytest.mark.parametrize("kind", ["pooled", "accuracy", "em", "inverse", "grpo-pooled", "grpo"])
@pytest.mark.parametrize("sizes", ["uniform", "gvm", "gvm-grpo"])
def test_estimator_mean_is_its_stated_target(kind, sizes):
    world = make_world()
    n = ALLOCATIONS[sizes]
    assert_mean_is(estimate(world, n, kind, 6000, seed=1), target(world, n, kind))


def test_the_pooled_target_moves_with_the_allocation_and_the_weighted_one_does_not():
    world = make_world()
    uniform, gvm = ALLOCATIONS["uniform"], ALLOCATIONS["gvm"]
    accuracy = target(world, uniform, "accuracy")
    pooled_under_gvm = target(world, gvm, "pooled")
    cosine = (
        pooled_under_gvm @ accuracy / np.linalg.norm(pooled_under_gvm) / np.linalg.norm(accuracy)
    )
    assert cosine < 0.99  # GVM's sizes tilt the token mean's target away from sum_i grad p_i
    np.testing.assert_allclose(target(world, uniform, "pooled"), accuracy)
    draws = estimate(world, gvm, "pooled", 6000, seed=2)
    se = draws.std(axis=0, ddof=1) / math.sqrt(len(draws))
    assert np.abs((draws.mean(axis=0) - accuracy) / se).max() > 6  # resolved by the test


@pytest.mark.parametrize(
    ("kind", "derived", "floor", "rejected_length"),
    [
        ("accuracy", "gvm-accuracy", 1, 1.0),
        ("em", "gvm", 1, 1.0),
        ("grpo", "gvm-grpo", 2, 1.0),
        ("grpo", "gvm-grpo-both", 2, 2.0),
    ],
)
def test_derived_allocation_has_the_lowest_variance(kind, derived, floor, rejected_length):
    """Against uniform, the other rules and 25 random allocations (GRPO's with groups of two);
    gvm-grpo-both: rejected scores twice as long, G from grpo_grad_norm."""
    world = make_world(rejected_length=rejected_length)
    rules = ALLOCATIONS | {"gvm-grpo-both": LONG_REJECTED_GRPO}
    best, best_se = total_variance(estimate(world, rules[derived], kind, 4000, seed=3))
    others = [rules[name] for name in rules if name != derived]
    others += random_allocations(25, floor, seed=4)
    compared = 0
    for index, n in enumerate(others):
        if n.min() < floor:
            continue  # GRPO needs groups of two
        variance, se = total_variance(estimate(world, n, kind, 4000, seed=5 + index))
        assert best <= variance + 3 * math.hypot(best_se, se), (n.tolist(), best, variance)
        compared += 1
    assert compared >= 20


@pytest.mark.parametrize(
    ("kind", "formula"),
    [
        ("accuracy", lambda n: NBAR**2 * accuracy_variance(n, G, P)),
        ("grpo", lambda n: grpo_variance(n, G, P, NBAR)),
    ],
)
def test_variance_formula_matches_monte_carlo(kind, formula):
    """The costs the allocations minimise are the estimators' variances (the mean scores, at
    most a tenth of a sample's length here, neglected: within 5% plus the Monte Carlo error)."""
    world = make_world()
    for name in ("uniform", "gvm-accuracy", "gvm-grpo"):
        n = ALLOCATIONS[name]
        variance, se = total_variance(estimate(world, n, kind, 4000, seed=7))
        assert variance == pytest.approx(formula(n), rel=0.05, abs=4 * se)


def test_grpo_scale_closed_forms_and_enumeration():
    p = np.array([0.1, 0.5, 0.8])
    np.testing.assert_allclose(grpo_scale(np.full(3, 2), p), math.sqrt(2) * p * (1 - p))
    np.testing.assert_array_equal(grpo_scale(np.full(3, 1), p), 0.0)
    for n, q in itertools.product([3, 5, 9], [0.2, 0.6]):
        expected = sum(
            math.comb(n, k) * q**k * (1 - q) ** (n - k) * math.sqrt(k * (n - k) * (n - 1) / n)
            for k in range(n + 1)
        )
        assert grpo_scale(np.array([n]), np.array([q]))[0] == pytest.approx(expected, rel=1e-12)
    large = grpo_scale(np.array([4000]), np.array([0.3]))[0]
    assert large == pytest.approx(4000 * math.sqrt(0.21), rel=1e-3)


def test_grpo_cost_by_hand():
    # at n = nbar the weights are 1 and the cost is G^2 (n - 1) P_n(p)
    sizes = np.array([2, 2, 2, 1, 3, 3])
    cost = grpo_cost(sizes, [2.0, 0.0, 1.0, 1.0, 1.0, 1.0], [0.5, 0.5, 1.0, 0.5, 0.0, 0.5], 2)
    np.testing.assert_allclose(cost[[0, 1, 2, 4]], [4 * 0.5, 0.0, 0.0, 0.0])
    assert cost[3] == math.inf
    assert grpo_cost(sizes[5:], [1.0], [0.5], 3)[0] == pytest.approx(2 * 0.75)
    # n = 2 against nbar = 4: d_2 = sqrt(2) p (1 - p) and P_2 = 2 p (1 - p)
    d4 = 4 / 16 * 1.5 * 2 + 6 / 16 * math.sqrt(3)
    assert grpo_cost([2], [1.0], [0.5], 4)[0] == pytest.approx(d4**2 * 0.5 / (2 * 0.25**2))
    np.testing.assert_allclose(informative_group_probability([1, 2, 3], [0.5] * 3), [0, 0.5, 0.75])
    # rejected scores of norm 3, accepted of norm 1, n = nbar = 2, p = 1/2: only K = 1 counts
    # (chance 1/2), where A = +-1/sqrt(2): E = 1/2 (1/2 * 1 + 1/2 * 9) = 2.5
    assert grpo_cost([2], [1.0], [0.5], 2, rejected_grad_norms=[3.0])[0] == pytest.approx(2.5)


def test_uniform_target_weights_hand_values():
    n, p = np.array([4, 8, 16, 0]), np.array([0.5, 0.5, 0.0, 0.3])
    np.testing.assert_allclose(uniform_target_weights(n, p, 8, grpo=False), [2.0, 1.0, 0.5, 0.0])
    grpo = uniform_target_weights(n, p, 8, grpo=True)
    assert grpo[1] == pytest.approx(1.0) and grpo[3] == 0.0
    assert grpo[0] == pytest.approx(grpo_scale([8], [0.5])[0] / grpo_scale([4], [0.5])[0])
    assert grpo[2] == pytest.approx(math.sqrt(8) * 7 / (4 * 15))  # the p -> 0 limit
    near_zero = grpo_scale([8, 16], [1e-9, 1e-9])
    assert grpo[2] == pytest.approx(near_zero[0] / near_zero[1], rel=1e-6)


def test_inverse_acceptance_weights_hand_values():
    # n p = 2, 0.4 (floored at 1), 0 (n = 0), 0 (floored at 1), 5
    weights = inverse_acceptance_weights([4, 8, 0, 2, 10], [0.5, 0.05, 0.3, 0.0, 0.5])
    np.testing.assert_allclose(weights, [0.5, 1.0, 0.0, 1.0, 0.2])
    with pytest.raises(ValueError, match="accept_rates must lie in"):
        inverse_acceptance_weights([1], [1.5])


def test_grpo_variance_with_longer_rejected_scores():
    """Rejected scores twice as long as accepted ones (as on the embedded world: A3): GRPO's
    cost with rejected_grad_norms = 2 G is the Monte Carlo variance (within 5%, the mean
    scores neglected), so is the cost at G = grpo_grad_norm(G, 2 G, p) within 8% (its p^n
    terms are approximate), the cost at the accepted norms alone is far below it, and the
    allocation from the combined norms differs from the one from accepted norms."""
    world = make_world(rejected_length=2.0)
    combined = grpo_grad_norm(G, 2 * G, P)
    assert LONG_REJECTED_GRPO.tolist() != ALLOCATIONS["gvm-grpo"].tolist()
    for n in (ALLOCATIONS["uniform"], ALLOCATIONS["gvm-grpo"], LONG_REJECTED_GRPO):
        variance, se = total_variance(estimate(world, n, "grpo", 4000, seed=11))
        exact = grpo_variance(n, G, P, NBAR, rejected_grad_norms=2 * G)
        assert variance == pytest.approx(exact, rel=0.05, abs=4 * se)
        assert variance == pytest.approx(grpo_variance(n, combined, P, NBAR), rel=0.08)
        assert variance > 1.2 * grpo_variance(n, G, P, NBAR)


def test_grpo_grad_norm_by_hand():
    np.testing.assert_allclose(
        grpo_grad_norm([3.0, 3.0, np.nan, 2.0], [4.0, np.nan, 5.0, 2.0], [0.5, 0.25, 0.0, 1.0]),
        [math.sqrt(0.5 * 9 + 0.5 * 16), 3.0, 5.0, 2.0],
    )
