"""What each M-step estimates, its variance as a function of the sample sizes n_i, and the
per-sample weights that hold its target fixed whatever the allocation. Pure numpy, like
allocation.py (which builds its matched strategies on these costs); docs/estimators.md has the
derivations and their assumptions.

Prompt i gets n_i samples with 0/1 rewards r_ij, P(r = 1) = p_i, and per-sample scores
g_ij = grad_theta sum_t log pi(y_t | x_i, y_<t); mu_i = E[g | accepted], so grad p_i = p_i mu_i
and grad log p_i = mu_i. G_i^2 stands for E[||g||^2] (measured as G_i on accepted samples; for
GRPO, whose advantages weigh rejected samples too, ``grpo_grad_norm`` combines both kinds) and
||grad p_i||^2 << p_i G_i^2 (one sample's score is far longer than the mean one, as in any
large model). At the first step of an iteration (importance ratio 1) the gradients of the losses
are, up to the batch's normaliser:

- RAFT / RAFT++ token mean, weight 1: target sum_i n_i grad p_i (it moves with the
  allocation; under uniform n it is nbar sum_i grad p_i, the gradient of expected accuracy),
  variance sum_i n_i p_i G_i^2;
- the same with weights nbar / n_i (``uniform_target``): target nbar sum_i grad p_i for any n,
  variance nbar^2 sum_i p_i G_i^2 / n_i, minimised by n_i ∝ G_i sqrt(p_i) (gvm-accuracy);
- the same with weights 1 / max(n_i p_i, 1) (``inverse_acceptance``): target sum_i grad log p_i
  (the EM objective) (*), variance sum_i G_i^2 / (n_i p_i), minimised by n_i ∝ G_i / sqrt(p_i)
  (the paper's GVM);
- GRPO, group-normalised advantages A_ij, weight 1: target sum_i d_{n_i}(p_i) grad p_i / v_i
  (it moves with the allocation), variance sum_i G_i^2 (n_i - 1) P_{n_i}(p_i);
- the same with weights d_nbar(p_i) / d_{n_i}(p_i) (``uniform_target``): target
  sum_i d_nbar(p_i) grad p_i / v_i for any n, variance
  sum_i G_i^2 d_nbar(p_i)^2 (n_i - 1) P_{n_i}(p_i) / d_{n_i}(p_i)^2 (``grpo_cost``), convex
  in n_i, minimised greedily (gvm-grpo; about n_i - 1 ∝ G_i for 0 < p_i < 1);

with nbar = N / m (uniform allocation's group size: its target is what the weighted rows keep),
v_i = p_i (1 - p_i), P_n(p) = 1 - p^n - (1 - p)^n (a group whose rewards differ) and
d_n(p) = E_{K ~ Bin(n, p)} sqrt(K (n - K) (n - 1) / n) (``grpo_scale``).
(*) a prompt expected to accept fewer than one sample (n_i p_i < 1) enters with weight 1, so its
term is grad log p_i scaled down by n_i p_i: bounded weights for a little bias.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


def grpo_scale(n: ArrayLike, accept_rates: ArrayLike) -> FloatArray:
    """d_n(p) = E_{K ~ Bin(n, p)} sqrt(K (n - K) (n - 1) / n), per prompt.

    GRPO's summed group term sum_j A_ij g_ij (unbiased-std advantages, binary rewards) has mean
    d_n(p) grad p / (p (1 - p)): given K = k accepted of n, sum_j A_j g_j =
    (sum_acc g - (k/n) sum_all g) / s_k with s_k^2 = k (n - k) / (n (n - 1)), whose mean is
    sqrt(k (n - k) (n - 1) / n) mu / (1 - p). d_n(p) -> n sqrt(p (1 - p)) for large n; d_1 = 0.
    Exact sums up to n = 2^14; above, the sum over the binomial's bulk, or where n p (1 - p) >=
    1000 the second-order expansion sqrt((n-1)/n) (n sqrt(v) - 1 / (8 sqrt(v))), v = p (1 - p)
    (relative error below 1e-7).
    """
    sizes = np.asarray(n, dtype=np.int64)
    p = np.asarray(accept_rates, dtype=np.float64)
    sizes, p = np.broadcast_arrays(sizes, p)
    out = np.zeros(p.shape)
    for size in np.unique(sizes):
        if size < 2:
            continue
        chosen = sizes == size
        if size <= EXACT_GROUP_SIZE:
            k = np.arange(size + 1, dtype=np.float64)
            values = np.sqrt(k * (size - k) * (size - 1) / size)
            out[chosen] = binomial_pmf(int(size), p[chosen]) @ values
        else:
            out[chosen] = [_large_group_scale(int(size), q) for q in p[chosen]]
    return out


EXACT_GROUP_SIZE = 2**14


def _large_group_scale(n: int, p: float) -> float:
    """d_n(p) for n > 2^14: the expansion where the binomial is wide, else the exact sum over
    k <= n q + 12 sd + 12 with q = min(p, 1 - p) (d_n is symmetric in p and 1 - p)."""
    q = min(p, 1.0 - p)
    if q == 0:
        return 0.0
    variance = n * q * (1.0 - q)
    if variance >= 1000:
        return float(
            np.sqrt((n - 1) / n) * (n * np.sqrt(q * (1 - q)) - 1 / (8 * np.sqrt(q * (1 - q))))
        )
    top = int(min(n, n * q + 12 * np.sqrt(variance) + 12))
    k = np.arange(top + 1, dtype=np.float64)
    log_choose = np.concatenate([[0.0], np.cumsum(np.log((n - k[:-1]) / k[1:]))])
    pmf = np.exp(log_choose + k * np.log(q) + (n - k) * np.log1p(-q))
    return float(pmf @ np.sqrt(k * (n - k) * (n - 1) / n))


def binomial_pmf(n: int, accept_rates: ArrayLike) -> FloatArray:
    """P(K = k) for K ~ Bin(n, p): shape (prompts, n + 1), computed in log space."""
    p = np.asarray(accept_rates, dtype=np.float64).reshape(-1)
    k = np.arange(n + 1, dtype=np.float64)
    log_choose = np.concatenate([[0.0], np.cumsum(np.log((n - k[1:] + 1) / k[1:]))])
    with np.errstate(divide="ignore", invalid="ignore"):
        log_pmf = log_choose + np.outer(np.log(p), k) + np.outer(np.log1p(-p), n - k)
    pmf = np.exp(log_pmf)
    pmf[p == 0] = k == 0  # 0 * log 0 terms
    pmf[p == 1] = k == n
    return pmf


def informative_group_probability(n: ArrayLike, accept_rates: ArrayLike) -> FloatArray:
    """P_n(p) = 1 - p^n - (1 - p)^n: the chance that a group's rewards differ (advantages != 0)."""
    sizes = np.asarray(n, dtype=np.float64)
    p = np.asarray(accept_rates, dtype=np.float64)
    return np.where(sizes >= 2, 1.0 - p**sizes - (1.0 - p) ** sizes, 0.0)


def accuracy_cost(grad_norms: ArrayLike, accept_rates: ArrayLike) -> FloatArray:
    """c_i = p_i G_i^2: the (1/n_i)-weighted accuracy estimator has variance sum_i c_i / n_i
    (one accepted sample's score has second moment G_i^2, a sample is accepted with p_i)."""
    g = np.asarray(grad_norms, dtype=np.float64)
    return np.asarray(accept_rates, dtype=np.float64) * g * g


def accuracy_variance(n: ArrayLike, grad_norms: ArrayLike, accept_rates: ArrayLike) -> float:
    """sum_i p_i G_i^2 / n_i (inf when a prompt with p_i G_i > 0 gets no sample)."""
    return _sum_over_sizes(accuracy_cost(grad_norms, accept_rates), n)


def grpo_cost(
    n: ArrayLike,
    grad_norms: ArrayLike,
    accept_rates: ArrayLike,
    reference_size: int,
    rejected_grad_norms: ArrayLike | None = None,
) -> FloatArray:
    """Per prompt, the variance of its group term weighted to hold uniform's target:
    G_i^2 d_nbar(p_i)^2 (n_i - 1) P_{n_i}(p_i) / d_{n_i}(p_i)^2 (nbar = ``reference_size``).

    Given 0 < K < n, the advantages satisfy sum_j A_j^2 = n - 1, so with every score's second
    moment G_i^2 and the mean scores neglected, E||sum_j A_j g_j||^2 = G_i^2 (n - 1) P_n(p).
    With ``rejected_grad_norms`` the accepted (G_i) and rejected samples' second moments differ
    and G_i^2 P_n(p) becomes ((1 - p) - (1 - p)^n) G_i^2 + (p - p^n) G_rej,i^2 (see
    ``grpo_grad_norm``). 0 for prompts with no target (p_i in {0, 1} or G_i = 0); inf for a
    prompt with a target and fewer than 2 samples (a group of one has no spread to normalise).
    """
    sizes = np.asarray(n, dtype=np.int64)
    g = np.asarray(grad_norms, dtype=np.float64)
    p = np.asarray(accept_rates, dtype=np.float64)
    rejected = g if rejected_grad_norms is None else np.asarray(rejected_grad_norms, np.float64)
    sizes, g, p, rejected = np.broadcast_arrays(sizes, g, p, rejected)
    active = grpo_active(g, p)
    cost = np.where(active, np.inf, 0.0)
    ok = active & (sizes >= 2)
    if ok.any():
        ref = grpo_scale(np.full(int(ok.sum()), reference_size), p[ok])
        own = grpo_scale(sizes[ok], p[ok])
        k, q = sizes[ok], p[ok]
        extra = (q - q**k) * (rejected[ok] ** 2 - g[ok] ** 2)  # rejected scores' excess
        second_moment = informative_group_probability(k, q) * g[ok] ** 2 + extra
        cost[ok] = ref**2 * (k - 1) * second_moment / own**2
    return cost


def grpo_grad_norm(
    accepted_norms: ArrayLike, rejected_norms: ArrayLike, accept_rates: ArrayLike
) -> FloatArray:
    """G_i for GRPO's costs when accepted and rejected samples' scores differ in length:
    sqrt((1 - p_i) G_acc^2 + p_i G_rej^2).

    Given K = k of n accepted, sum_j A_j g_j weighs an accepted score by (1 - k/n) / s_k and a
    rejected one by -(k/n) / s_k, so its second moment is (n - 1) ((1 - k/n) G_acc^2 +
    (k/n) G_rej^2); over K ~ Bin(n, p) that is (n - 1) (((1 - p) - (1 - p)^n) G_acc^2 +
    (p - p^n) G_rej^2), which this G_i^2 times P_n(p) matches up to terms in p^n and (1 - p)^n
    (exactly where G_acc = G_rej). A side with no samples (NaN) takes the other's norm."""
    accepted, rejected = both_norms(accepted_norms, rejected_norms)
    p = np.asarray(accept_rates, dtype=np.float64)
    return np.sqrt((1.0 - p) * accepted**2 + p * rejected**2)


def both_norms(
    accepted_norms: ArrayLike, rejected_norms: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Per prompt, the accepted and rejected samples' mean norms, a side with no samples (NaN)
    taking the other's (a prompt whose samples were all accepted, or all rejected)."""
    accepted = np.asarray(accepted_norms, dtype=np.float64)
    rejected = np.asarray(rejected_norms, dtype=np.float64)
    return np.where(np.isnan(accepted), rejected, accepted), np.where(
        np.isnan(rejected), accepted, rejected
    )


def grpo_variance(
    n: ArrayLike,
    grad_norms: ArrayLike,
    accept_rates: ArrayLike,
    reference_size: int,
    rejected_grad_norms: ArrayLike | None = None,
) -> float:
    """sum_i ``grpo_cost``: the variance of GRPO's gradient weighted to uniform's target."""
    cost = grpo_cost(n, grad_norms, accept_rates, reference_size, rejected_grad_norms)
    return float(np.sum(cost))


def grpo_active(grad_norms: ArrayLike, accept_rates: ArrayLike) -> NDArray[np.bool_]:
    """Prompts whose GRPO target is not zero: 0 < p_i < 1 and G_i > 0."""
    p = np.asarray(accept_rates, dtype=np.float64)
    return (np.asarray(grad_norms) > 0) & (p > 0) & (p < 1)


def inverse_acceptance_weights(n: ArrayLike, accept_rates: ArrayLike) -> FloatArray:
    """Per-sample weight of prompt i's accepted samples in the EM estimator
    sum_i 1/(n_i p_i) sum_{y in D_i} grad ln P(y | x_i) (whose variance GVM minimises):
    1/(n_i p_i), with the expected accepted count n_i p_i floored at 1 (a prompt estimated never
    to accept that accepts anyway counts as if one acceptance was expected); 0 where n_i = 0."""
    sizes = _as_vector(n, "n")
    p = _as_vector(accept_rates, "accept_rates")
    if sizes.shape != p.shape:
        raise ValueError(f"n has {sizes.size} entries but accept_rates has {p.size}")
    if (p > 1).any():
        raise ValueError("accept_rates must lie in [0, 1]")
    weights = 1.0 / np.maximum(sizes * p, 1.0)
    weights[sizes == 0] = 0.0
    return weights


def uniform_target_weights(
    n: ArrayLike, accept_rates: ArrayLike, reference_size: int, grpo: bool
) -> FloatArray:
    """Per-sample weight (one per prompt) that gives the M-step uniform allocation's target
    (reference_size = nbar samples per prompt) whatever n_i: nbar / n_i for RAFT and RAFT++'s
    accepted samples; d_nbar(p_i) / d_{n_i}(p_i) on GRPO's advantages (at p_i in {0, 1}, the
    ratio's limit sqrt(nbar) (nbar - 1) / (sqrt(n) (n - 1)); groups of one keep weight 1).
    1 everywhere when n_i = nbar; 0 where n_i = 0."""
    sizes = _as_vector(n, "n")
    p = _as_vector(accept_rates, "accept_rates")
    if sizes.shape != p.shape:
        raise ValueError(f"n has {sizes.size} entries but accept_rates has {p.size}")
    if reference_size < 1:
        raise ValueError(f"reference_size must be at least 1; got {reference_size}")
    weights = np.zeros(sizes.shape)
    taken = sizes > 0
    if not grpo:
        weights[taken] = reference_size / sizes[taken]
        return weights
    weights[taken] = 1.0
    groups = sizes >= 2
    if reference_size < 2 or not groups.any():
        return weights
    size, q = sizes[groups], p[groups]
    interior = (q > 0) & (q < 1)
    ratio = np.sqrt(reference_size) * (reference_size - 1) / (np.sqrt(size) * (size - 1))
    ref = grpo_scale(np.full(size.size, reference_size), q)
    own = grpo_scale(size.astype(np.int64), q)
    ratio[interior] = ref[interior] / own[interior]
    weights[groups] = ratio
    return weights


def _sum_over_sizes(cost: FloatArray, n: ArrayLike) -> float:
    sizes = np.asarray(n, dtype=np.float64)
    counted = cost > 0
    if (sizes[counted] == 0).any():
        return float("inf")
    return float(np.sum(cost[counted] / sizes[counted]))


def _as_vector(values: ArrayLike, name: str) -> FloatArray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional (one value per prompt); got {x.shape}")
    if not np.isfinite(x).all() or (x < 0).any():
        raise ValueError(f"{name} must be finite and non-negative")
    return x
