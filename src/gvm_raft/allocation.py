"""GVM sample allocation: split a generation budget across prompts to minimise gradient variance.

Pure numpy and self-contained (it imports only estimators.py, pure numpy too), so any trainer
(verl, TRL, OpenRLHF, ...) can call it.

For prompt i with acceptance rate p_i and gradient norm G_i, drawing n_i samples gives about
n_i p_i accepted ones, and the paper's (1/(n_i p_i)-weighted) gradient estimate has variance

    V(n) = sum_i G_i^2 / (n_i q_i),    q_i = p_i + alpha / p_i^(beta - 1)

(alpha = 0 gives the plain objective q_i = p_i). Minimising V under sum_i n_i = N (Lagrange) gives

    n_i = N w_i / sum_j w_j,    w_i = G_i / sqrt(q_i),

with alpha = 1e-3, beta = 2 by default; prompts with G_i = 0 or p_i = 0 get weight 0.
That rule fits the estimator of sum_i grad log p_i; the M-steps people train (a token mean over
the batch, GRPO's group advantages) estimate other things, and each has its own minimiser
(estimators.py, docs/estimators.md). ``allocate`` takes one of the strategies:

- ``"gvm"``: the integer minimiser of V, i.e. greedy marginal gains c_i/(n(n+1)),
  c_i = G_i^2/q_i, found by a threshold search (greedy is optimal for separable convex
  objectives);
- ``"gvm-rounding"``: round the continuous optimum and repair the total by largest remainders
  (the RLHFlow implementation's behaviour);
- ``"gvm-accuracy"``: the integer minimiser of sum_i p_i G_i^2 / n_i (n_i ∝ G_i sqrt(p_i)), the
  variance of the (1/n_i)-weighted RAFT / RAFT++ estimator of uniform allocation's target,
  the gradient of the expected accuracy sum_i p_i;
- ``"gvm-grpo"``: the integer minimiser of the variance of GRPO's group-normalised gradient
  weighted to uniform allocation's target (``estimators.grpo_cost``; about n_i - 1 ∝ G_i for
  0 < p_i < 1, and no more than the minimum for p_i in {0, 1});
- ``"uniform"``: the baseline, N/m per prompt, ignoring the statistics;
- ``"uniform-solved"``: an even split over the prompts with p_i > 0 (solved at least once in
  stage 1), the others keeping their minimum: the control that separates what the GVM rules
  gain by not sampling unsolved prompts from what their shape of n_i adds;
- ``"knapsack"``: Knapsack-RL's allocation from the acceptance rates alone (``knapsack_allocate``).

All honour per-prompt bounds ``min_samples <= n_i <= max_samples`` and spend N exactly.
"""

from __future__ import annotations

import typing
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gvm_raft.estimators import accuracy_cost, grpo_active, grpo_cost, grpo_scale

Strategy = Literal[
    "uniform", "gvm", "gvm-rounding", "gvm-accuracy", "gvm-grpo", "uniform-solved", "knapsack"
]
STRATEGIES: tuple[str, ...] = typing.get_args(Strategy)
DEFAULT_ALPHA = 1e-3
DEFAULT_BETA = 2.0

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def regularised_accept_rate(
    accept_rates: ArrayLike, alpha: float = DEFAULT_ALPHA, beta: float = DEFAULT_BETA
) -> FloatArray:
    """q_i = p_i + alpha / p_i^(beta - 1); infinite at p_i = 0 when alpha > 0 and beta > 1."""
    p = np.asarray(accept_rates, dtype=np.float64)
    if alpha == 0:
        return p.copy()
    with np.errstate(divide="ignore"):
        return p + alpha / np.power(p, beta - 1.0)


def allocation_weights(
    grad_norms: ArrayLike,
    accept_rates: ArrayLike,
    alpha: float = DEFAULT_ALPHA,
    beta: float = DEFAULT_BETA,
) -> FloatArray:
    """w_i = G_i / sqrt(q_i), and 0 for prompts with G_i = 0 or p_i = 0."""
    g, p = _check_stats(grad_norms, accept_rates)
    _check_regulariser(alpha, beta)
    q = regularised_accept_rate(p, alpha, beta)
    active = (g > 0) & (p > 0) & np.isfinite(q) & (q > 0)
    w = np.zeros_like(g)
    w[active] = g[active] / np.sqrt(q[active])
    return w


def gradient_variance(
    n: ArrayLike,
    grad_norms: ArrayLike,
    accept_rates: ArrayLike,
    alpha: float = 0.0,
    beta: float = DEFAULT_BETA,
) -> float:
    """V(n) = sum_i G_i^2 / (n_i q_i); alpha = 0 (default) is the plain objective with q_i = p_i.

    Prompts with G_i = 0 contribute 0; a prompt with G_i > 0 and n_i q_i = 0 makes V infinite.
    """
    g, p = _check_stats(grad_norms, accept_rates)
    _check_regulariser(alpha, beta)
    sizes = np.asarray(n, dtype=np.float64)
    if sizes.shape != g.shape:
        raise ValueError(f"n has {sizes.size} entries but grad_norms has {g.size}")
    if np.isnan(sizes).any() or (sizes < 0).any():
        raise ValueError("n must be non-negative sample counts")
    q = regularised_accept_rate(p, alpha, beta)
    counted = g > 0
    denom = sizes[counted] * q[counted]
    if (denom == 0).any():
        return float("inf")
    return float(np.sum(g[counted] ** 2 / denom))


def continuous_allocation(
    budget: float,
    grad_norms: ArrayLike,
    accept_rates: ArrayLike,
    alpha: float = DEFAULT_ALPHA,
    beta: float = DEFAULT_BETA,
) -> FloatArray:
    """The real-valued optimum n_i = N w_i / sum_j w_j (no bounds, no filters).

    All-zero weights fall back to N/m per prompt with a warning.
    """
    w = allocation_weights(grad_norms, accept_rates, alpha, beta)
    _check_budget(budget)
    total = w.sum()
    if total == 0:
        warnings.warn("all allocation weights are zero; falling back to uniform", stacklevel=2)
        return np.full(w.shape, budget / max(w.size, 1))
    return budget * w / total


@dataclass(frozen=True)
class Allocation:
    """Samples per prompt (n_i, summing to the budget) and, when the strategy could not be
    followed, why it fell back to uniform (None otherwise)."""

    n_samples: IntArray
    fallback: str | None = None


def allocate(
    grad_norms: ArrayLike,
    accept_rates: ArrayLike,
    budget: int,
    strategy: Strategy = "gvm",
    *,
    alpha: float = DEFAULT_ALPHA,
    beta: float = DEFAULT_BETA,
    min_samples: ArrayLike = 0,
    max_samples: ArrayLike | None = None,
    max_accept_rate: float = 1.0,
    min_expected_accepted: float = 0.0,
    reference_size: int | None = None,
) -> Allocation:
    """Integer samples per prompt n_i >= 0 with sum_i n_i = budget.

    Args:
        grad_norms: G_i per prompt, shape (m,), non-negative (knapsack ignores them).
        accept_rates: p_i per prompt in [0, 1], shape (m,).
        budget: total samples N to spend (stage 2).
        strategy: "gvm" (integer minimiser of V), "gvm-rounding" (the RLHFlow implementation),
            "gvm-accuracy" and "gvm-grpo" (the minimisers for RAFT / RAFT++ and GRPO with
            uniform allocation's target), "uniform" (the baseline), "uniform-solved" (an even
            split over the prompts with p_i > 0) or "knapsack" (Knapsack-RL).
        alpha, beta: regulariser of q_i (see module docstring; "gvm" and "gvm-rounding" only).
        min_samples, max_samples: per-prompt bounds (scalars or shape (m,)); max None = no cap.
            The minimum applies to every prompt that survives the filters.
        max_accept_rate: prompts with p_i above it (already solved) get 0 samples; 1.0 = off.
        min_expected_accepted: prompts whose expected accepted count p_i n_i under the
            continuous allocation is below it get 0 samples (one pass); 0 = off. "gvm-rounding"
            tests n_i as the RLHFlow implementation does, the shares of all prompts before
            max_accept_rate removed any (not renormalised between the two filters); "gvm" tests the
            shares the prompts left by max_accept_rate would actually get. The surviving weights are
            then renormalised.
        reference_size: gvm-grpo's nbar, the group size whose target it keeps (None =
            budget / m rounded, at least 2: uniform allocation's group).

    The filters apply to the GVM strategies and uniform-solved. When the filters leave no
    prompt, or every surviving weight is zero, a GVM allocation falls back to uniform and says
    why in ``Allocation.fallback``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    g, p = _check_stats(grad_norms, accept_rates)
    if g.size and 0 < g.max() < np.inf:
        g = g / g.max()  # the allocation is invariant to scaling G; huge or tiny G then stay finite
    _check_budget(budget, whole=True)
    budget = int(budget)
    m = g.size
    lo, hi = _check_bounds(min_samples, max_samples, m)
    if not 0.0 <= max_accept_rate <= 1.0:
        raise ValueError(f"max_accept_rate must lie in [0, 1]; got {max_accept_rate}")
    if not min_expected_accepted >= 0.0:
        raise ValueError(f"min_expected_accepted must be >= 0; got {min_expected_accepted}")
    if reference_size is not None and not (
        isinstance(reference_size, (int, np.integer)) and reference_size >= 2
    ):
        raise ValueError(f"reference_size must be a whole number >= 2; got {reference_size!r}")
    if m == 0:
        _check_capacity(budget, lo, hi)
        return Allocation(np.zeros(0, dtype=np.int64))
    if strategy == "knapsack":
        return Allocation(knapsack_allocate(p, budget, min_samples=lo, max_samples=hi))
    if strategy == "uniform":
        _check_capacity(budget, lo, hi)
        return Allocation(_uniform(lo, hi, budget))

    size = reference_size if reference_size is not None else max(2, round(budget / m))
    w = _strategy_weights(strategy, g, p, alpha, beta, size)
    kept = p <= max_accept_rate
    if min_expected_accepted > 0:
        if strategy == "gvm-rounding":  # RLHFlow's: shares of all prompts, not renormalised
            trial = np.where(kept, _water_fill(w, lo, hi, budget), 0.0)
        else:  # the budget the prompts that pass max_accept_rate would actually share
            trial = _water_fill(*_only(kept, w, lo, hi), budget)
        kept &= p * trial >= min_expected_accepted
    if not kept.any():
        _check_capacity(budget, lo, hi)
        return Allocation(_uniform(lo, hi, budget), "every prompt was filtered out")
    if not (w[kept] > 0).any():  # nothing to follow: uniform over every prompt, as above
        _check_capacity(budget, lo, hi)
        left = "left by the filters " if not kept.all() else ""
        fallback = f"every allocation weight {WEIGHT_FORMULAS[strategy]} {left}was zero"
        return Allocation(_uniform(lo, hi, budget), fallback)
    w, lo, hi = _only(kept, w, lo, hi)
    _check_capacity(budget, lo, hi)
    if strategy == "gvm-rounding":
        return Allocation(_round_largest_remainder(_water_fill(w, lo, hi, budget), lo, hi, budget))
    if strategy == "gvm-grpo":
        return Allocation(_grpo_integer(np.where(kept, g, 0.0), p, w, size, lo, hi, budget))
    if strategy == "uniform-solved":
        return Allocation(_uniform(lo, hi, budget, w))
    return Allocation(_exact_integer(w**2, lo, hi, budget))  # the cost c_i of sum_i c_i / n_i


WEIGHT_FORMULAS = {
    "gvm": "G_i / sqrt(q_i)",
    "gvm-rounding": "G_i / sqrt(q_i)",
    "gvm-accuracy": "G_i sqrt(p_i)",
    "gvm-grpo": "G_i d_nbar(p_i) / sqrt(p_i (1 - p_i)) on 0 < p_i < 1",
    "uniform-solved": "1 on p_i > 0",
}


def _strategy_weights(
    strategy: Strategy, g: FloatArray, p: FloatArray, alpha: float, beta: float, size: int
) -> FloatArray:
    """The continuous optimum's weights w_i (n_i ∝ w_i): G_i / sqrt(q_i) for the paper's rule,
    G_i sqrt(p_i) for gvm-accuracy, 1 on p_i > 0 for uniform-solved, and for gvm-grpo
    G_i d_nbar(p_i) / sqrt(p_i (1 - p_i)) on the prompts with a target (the minimiser of its
    large-group cost G_i^2 d_nbar^2 / (p_i (1 - p_i) (n_i - 1)) in n_i - 1, used by the filters
    and as the exact search's start; nbar = size)."""
    if strategy == "gvm-accuracy":
        return np.sqrt(accuracy_cost(g, p))
    if strategy == "uniform-solved":
        return (p > 0).astype(np.float64)
    if strategy == "gvm-grpo":
        active = grpo_active(g, p)
        w = np.zeros_like(g)
        v = p[active] * (1 - p[active])
        w[active] = g[active] * grpo_scale(np.full(v.size, size), p[active]) / np.sqrt(v)
        return w
    return allocation_weights(g, p, alpha, beta)


def _grpo_integer(
    g: FloatArray,
    p: FloatArray,
    w: FloatArray,
    reference_size: int,
    lo: FloatArray,
    hi: FloatArray,
    budget: int,
) -> IntArray:
    """Integer minimiser of sum_i grpo_cost(n_i) under lo <= n <= hi and sum n = budget.

    Each prompt with a target needs 2 samples (a group of one has no spread); when the budget
    cannot give every such prompt 2, those whose cost at 2 samples is lowest are dropped. The
    costs are convex and decreasing in n (a group of n has n - 1 degrees of freedom), so an
    allocation that no single move of one sample between two prompts improves is optimal; the
    search starts from the large-group optimum n_i - 1 ∝ w_i and moves samples until none helps.
    """
    active = grpo_active(g, p) & (hi >= 2)
    floor = np.where(active, np.maximum(lo, 2.0), lo)
    if floor.sum() > budget:
        at_two = grpo_cost(np.full(g.size, 2), g, p, reference_size)
        order = np.flatnonzero(active)[np.argsort(at_two[active], kind="stable")]
        for i in order:
            active[i], floor[i] = False, lo[i]
            if floor.sum() <= budget:
                break
    g = np.where(active, g, 0.0)
    shift = active.astype(np.float64)
    start = _water_fill(np.where(active, w, 0.0), floor - shift, hi - shift, budget - shift.sum())
    start += shift
    n = _round_largest_remainder(start, floor, hi, budget)

    def cost(i: int, size: int) -> float:
        return float(grpo_cost(np.array([size]), g[i : i + 1], p[i : i + 1], reference_size)[0])

    def gains(i: int) -> tuple[float, float]:
        """(what one more sample saves, what one fewer costs) for prompt i."""
        here = cost(i, int(n[i]))
        add = here - cost(i, int(n[i]) + 1) if n[i] < hi[i] else -np.inf
        remove = cost(i, int(n[i]) - 1) - here if n[i] > floor[i] else np.inf
        return add, remove

    add, remove = (np.array(column) for column in zip(*map(gains, range(g.size)), strict=True))
    while True:
        i = int(np.argmax(add))
        others = remove.copy()
        others[i] = np.inf
        j = int(np.argmin(others))
        if not add[i] > others[j] * (1 + 1e-12) + 1e-300:
            return n
        n[i] += 1
        n[j] -= 1
        for k in (i, j):
            add[k], remove[k] = gains(k)


def _uniform(
    lo: FloatArray, hi: FloatArray, budget: int, weights: FloatArray | None = None
) -> IntArray:
    """N/m per prompt (among those with weight 1), within the bounds."""
    w = np.ones(lo.size) if weights is None else weights
    return _round_largest_remainder(_water_fill(w, lo, hi, budget), lo, hi, budget)


def allocation_summary(
    n: ArrayLike,
    grad_norms: ArrayLike,
    accept_rates: ArrayLike,
    alpha: float = DEFAULT_ALPHA,
    beta: float = DEFAULT_BETA,
) -> dict[str, float]:
    """Total, spread, Gini, zero-sample prompts, and V(n) against uniform (plain, regularised).

    ``dropped_prompts`` counts prompts with G_i > 0 and p_i > 0 given no samples: their gradient
    term is lost, which makes V infinite.
    """
    sizes = np.asarray(n, dtype=np.int64)
    g, p = _check_stats(grad_norms, accept_rates)
    uniform = allocate(g, p, int(sizes.sum()), "uniform").n_samples
    v = gradient_variance(sizes, g, p)
    v_uniform = gradient_variance(uniform, g, p)
    return {
        "total": int(sizes.sum()),
        "min": int(sizes.min()) if sizes.size else 0,
        "median": float(np.median(sizes)) if sizes.size else 0.0,
        "max": int(sizes.max()) if sizes.size else 0,
        "zero_prompts": int((sizes == 0).sum()),
        "dropped_prompts": int(((sizes == 0) & (g > 0) & (p > 0)).sum()),
        "gini": gini(sizes),
        "variance": v,
        "variance_uniform": v_uniform,
        "variance_ratio": _ratio(v, v_uniform),
        "regularised_variance": gradient_variance(sizes, g, p, alpha, beta),
        "regularised_variance_uniform": gradient_variance(uniform, g, p, alpha, beta),
    }


def gini(sizes: ArrayLike) -> float:
    """Gini coefficient of the sample sizes: 0 = uniform, -> 1 = everything on one prompt."""
    x = np.sort(np.asarray(sizes, dtype=np.float64))
    total = x.sum()
    if x.size == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, x.size + 1)
    return float(np.sum((2 * ranks - x.size - 1) * x) / (x.size * total))


def knapsack_value(samples: ArrayLike, accept_rates: ArrayLike) -> FloatArray:
    """Knapsack-RL's value of n samples for a prompt with success rate p:
    (1 - p^n - (1-p)^n) p (1-p)^2, the chance of a non-zero-variance group times its gain."""
    n = np.asarray(samples, dtype=np.float64)
    p = np.asarray(accept_rates, dtype=np.float64)
    return (1.0 - p**n - (1.0 - p) ** n) * p * (1.0 - p) ** 2


def knapsack_allocate(
    accept_rates: ArrayLike,
    budget: int,
    *,
    min_samples: ArrayLike = 0,
    max_samples: ArrayLike | None = None,
) -> IntArray:
    """Knapsack-RL budget allocation: maximise sum_i knapsack_value(n_i, p_i) under
    sum_i n_i = budget and min <= n_i <= max.

    Each value is concave in n (its marginal gain p(1-p)^2 (p^n (1-p) + (1-p)^n p) falls with n),
    so taking the largest marginal gains over all prompts is optimal. Gains tie at zero for
    p in {0, 1}; ties go to the prompt with fewer samples, then the lower index, so a budget
    with no informative use is spread evenly. Cost O(sum_i (max_i - min_i)).
    """
    _, p = _check_stats(np.zeros(np.size(accept_rates)), accept_rates)
    _check_budget(budget, whole=True)
    budget = int(budget)
    lo, hi = _check_bounds(min_samples, max_samples, p.size)
    _check_capacity(budget, lo, hi)
    n = lo.astype(np.int64)
    extra = budget - int(n.sum())
    if extra == 0:
        return n
    cap = np.minimum(hi, lo + extra).astype(np.int64)
    table = int((cap - n).sum())
    if table > MAX_KNAPSACK_TABLE:
        raise ValueError(
            f"knapsack ranks one marginal gain per prompt and extra sample: {table} here, at most "
            f"2**24 = {MAX_KNAPSACK_TABLE}; lower the budget, set max_samples, or use gvm"
        )
    prompt = np.repeat(np.arange(p.size), cap - n)
    level = np.concatenate([np.arange(a, b) for a, b in zip(n, cap, strict=True)])
    gain = knapsack_value(level + 1, p[prompt]) - knapsack_value(level, p[prompt])
    order = np.lexsort((prompt, level, -gain))[:extra]
    np.add.at(n, prompt[order], 1)
    return n


def _only(kept: NDArray[np.bool_], *arrays: FloatArray) -> tuple[FloatArray, ...]:
    """Zero every entry of the prompts that were filtered out."""
    return tuple(np.where(kept, a, 0.0) for a in arrays)


def _ratio(a: float, b: float) -> float:
    if np.isinf(a) and np.isinf(b):
        return float("nan")
    return a / b if b > 0 else float("nan")


def _water_fill(w: FloatArray, lo: FloatArray, hi: FloatArray, budget: float) -> FloatArray:
    """Real x_i = clip(lam w_i, lo_i, hi_i) with sum x = budget: the bounded continuous optimum.

    Prompts with w_i = 0 stay at lo_i unless every weighted prompt reaches its cap; the leftover
    is then spread evenly over the zero-weight prompts that still have room.
    """
    x = lo.astype(np.float64)
    positive = w > 0
    if not positive.any():
        return _spread_leftover(x, hi, budget)
    wp, lop, hip = w[positive], lo[positive], hi[positive]
    rest = budget - x[~positive].sum()
    if hip.sum() <= rest:
        x[positive] = hip
        return _spread_leftover(x, hi, budget)
    if not lop.any() and np.isinf(hip).all():
        x[positive] = rest * wp / wp.sum()
        return x
    x[positive] = np.clip(_fill_level(wp, lop, hip, rest) * wp, lop, hip)
    return x


def _fill_level(w: FloatArray, lo: FloatArray, hi: FloatArray, total: float) -> float:
    """lam with sum_i clip(lam w_i, lo_i, hi_i) = total (w > 0, sum lo <= total < sum hi).

    Bisection finds which prompts sit at a bound; lam is then solved exactly on the free ones.
    """
    finite_hi = np.isfinite(hi)
    lam_lo = 0.0
    lam_hi = total / w.min()
    if finite_hi.any():
        lam_hi = max(lam_hi, float(np.max(hi[finite_hi] / w[finite_hi])))
    while lam_hi - lam_lo > 1e-13 * lam_hi:
        mid = 0.5 * (lam_lo + lam_hi)
        if np.clip(mid * w, lo, hi).sum() < total:
            lam_lo = mid
        else:
            lam_hi = mid
    at_lo, at_hi = lam_hi * w <= lo, lam_hi * w >= hi
    free = ~(at_lo | at_hi)
    if not free.any():
        return lam_hi
    return float((total - lo[at_lo].sum() - hi[at_hi].sum()) / w[free].sum())


def _spread_leftover(x: FloatArray, hi: FloatArray, budget: float) -> FloatArray:
    """Spread budget - sum(x) evenly over the entries below their cap hi."""
    if budget <= x.sum():
        return x
    return _water_fill((hi > x).astype(np.float64), x, hi, budget)


def _round_largest_remainder(
    x: FloatArray, lo: FloatArray, hi: FloatArray, budget: int
) -> IntArray:
    """Round half to even, then repair the total one sample at a time from the largest residuals
    (the RLHFlow implementation's rule), never crossing a bound; ties go to the lower index."""
    n = np.clip(np.round(x), lo, hi).astype(np.int64)
    residual = x - n
    error = int(budget) - int(n.sum())
    while error != 0:
        step = 1 if error > 0 else -1
        candidates = np.flatnonzero((n < hi) if step > 0 else (n > lo))
        order = candidates[np.argsort(-step * residual[candidates], kind="stable")]
        chosen = order[: abs(error)]
        if chosen.size == 0:
            raise RuntimeError("rounding cannot meet the budget within the bounds")
        n[chosen] += step
        residual[chosen] -= step
        error -= step * chosen.size
    return n


def _exact_integer(cost: FloatArray, lo: FloatArray, hi: FloatArray, budget: int) -> IntArray:
    """Integer minimiser of sum_i cost_i / n_i under lo <= n <= hi and sum n = budget.

    Greedy by marginal gain is optimal for this separable convex objective. The n-th sample of
    prompt i (n >= 2) gains cost_i/(n(n-1)); the first sample of a prompt with cost_i > 0 removes
    an infinite term, so first samples come before all others (costliest first). A threshold
    search replaces the greedy loop: every step with gain >= tau is taken, tau is bisected until
    at most one step per prompt lies between the brackets, and those steps go in order of gain.
    """
    n = lo.astype(np.int64)
    positive = cost > 0
    first = positive & (n == 0) & (hi >= 1)
    need = int(budget) - int(n.sum())
    if first.sum() >= need:
        order = np.flatnonzero(first)[np.argsort(-cost[first], kind="stable")]
        n[order[:need]] += 1
        return n
    n[first] += 1
    cap = np.minimum(hi, budget)
    if cap[positive].sum() + n[~positive].sum() <= budget:
        n[positive] = cap[positive]
        full = n.astype(np.float64)
        return _round_largest_remainder(_spread_leftover(full, hi, budget), full, hi, budget)

    floor = n.copy()

    def count(tau: float) -> IntArray:
        """Samples per prompt when every step with gain >= tau is taken."""
        with np.errstate(divide="ignore", over="ignore"):
            ratio = cost / tau
        k = np.floor((1.0 + np.sqrt(1.0 + 4.0 * ratio)) / 2.0)
        k = np.where(k * (k - 1) > ratio, k - 1, k)  # guard against sqrt rounding
        k = np.where((k + 1) * k <= ratio, k + 1, k)
        k = np.where(positive, k, floor)
        return np.clip(k, floor, cap).astype(np.int64)

    tau_hi = float(cost.max())
    tau_lo = float(cost[positive].min()) / (4.0 * (budget + 1.0) ** 2)
    while count(tau_lo).sum() < budget:
        tau_lo /= 4.0
    n_hi, n_lo = count(tau_hi), count(tau_lo)
    while (n_lo - n_hi).max() > 1 and tau_hi > tau_lo * (1 + 1e-15):
        mid = float(np.sqrt(tau_lo * tau_hi)) if tau_lo > 0 else 0.5 * tau_hi
        n_mid = count(mid)
        if n_mid.sum() >= budget:
            tau_lo, n_lo = mid, n_mid
        else:
            tau_hi, n_hi = mid, n_mid
    remaining = budget - int(n_hi.sum())
    while remaining > 0:
        candidates = np.flatnonzero(n_lo > n_hi)
        gain = cost[candidates] / (n_hi[candidates] * (n_hi[candidates] + 1.0))
        chosen = candidates[np.argsort(-gain, kind="stable")][:remaining]
        n_hi[chosen] += 1
        remaining -= chosen.size
    return n_hi


def _check_stats(grad_norms: ArrayLike, accept_rates: ArrayLike) -> tuple[FloatArray, FloatArray]:
    g = _as_vector(grad_norms, "grad_norms")
    p = _as_vector(accept_rates, "accept_rates")
    if g.size != p.size:
        raise ValueError(
            f"grad_norms has {g.size} entries but accept_rates has {p.size}: one per prompt each"
        )
    if (p > 1).any():
        raise ValueError(
            f"accept_rates must lie in [0, 1]; prompt {int(np.argmax(p > 1))} has {p[p > 1][0]}"
        )
    return g, p


def _as_vector(values: ArrayLike, name: str) -> FloatArray:
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a list of numbers: {err}") from None
    if x.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one value per prompt); got {x.shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        raise ValueError(f"{name} must be finite; prompt {int(np.argmax(bad))} has {x[bad][0]}")
    if (x < 0).any():
        i = int(np.argmax(x < 0))
        raise ValueError(f"{name} must be non-negative; prompt {i} has {x[i]}")
    return x


def _check_regulariser(alpha: float, beta: float) -> None:
    if not (np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0; got {alpha}")
    if not np.isfinite(beta):
        raise ValueError(f"beta must be finite; got {beta}")


MAX_BUDGET = 2**53  # float64 holds every whole number up to here; the searches compute in it
MAX_KNAPSACK_TABLE = 2**24  # knapsack's marginal gains: one entry per prompt and extra sample


def _check_budget(budget: float, whole: bool = False) -> None:
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer, float, np.floating)):
        raise ValueError(f"budget must be a number of samples; got {budget!r}")
    if budget > MAX_BUDGET:
        raise ValueError(
            f"budget must be at most 2**53 = {MAX_BUDGET} samples (the allocation computes in "
            f"float64, exact for whole numbers up to there); got {budget}"
        )
    if not np.isfinite(budget) or budget < 0:
        raise ValueError(f"budget must be a non-negative number of samples; got {budget}")
    if whole and float(budget) != int(budget):
        raise ValueError(f"budget must be a whole number of samples; got {budget}")


def _check_bounds(
    min_samples: ArrayLike, max_samples: ArrayLike | None, m: int
) -> tuple[FloatArray, FloatArray]:
    lo = _bound_vector(min_samples, "min_samples", m)
    hi = np.full(m, np.inf) if max_samples is None else _bound_vector(max_samples, "max_samples", m)
    if (lo > hi).any():
        i = int(np.argmax(lo > hi))
        raise ValueError(f"min_samples ({lo[i]:g}) exceeds max_samples ({hi[i]:g}) for prompt {i}")
    return lo, hi


def _bound_vector(values: ArrayLike, name: str, m: int) -> FloatArray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 0:
        x = np.full(m, float(x))
    if x.shape != (m,):
        raise ValueError(f"{name} must be a number or one value per prompt ({m}); got {x.shape}")
    if np.isnan(x).any() or (x < 0).any() or (np.isfinite(x) & (x != np.round(x))).any():
        raise ValueError(f"{name} must be non-negative whole numbers of samples")
    return x


def _check_capacity(budget: int, lo: FloatArray, hi: FloatArray) -> None:
    if lo.sum() > budget:
        raise ValueError(
            f"budget {budget} is below the sum of min_samples ({lo.sum():g}): raise the budget or "
            "lower min_samples"
        )
    if hi.sum() < budget:
        raise ValueError(
            f"budget {budget} exceeds the sum of max_samples over the prompts that can take "
            f"samples ({hi.sum():g}): lower the budget or raise max_samples"
        )
