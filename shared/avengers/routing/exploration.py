"""Exploration: the part of the router that sometimes sends a query to a model other than the
best-looking one, so that every model keeps being measured (``Router(explore=...)``).

For a random share of queries every model's score is drawn from its Beta posterior around its
estimate (evidence plus pseudo-observations as the sample size: Thompson sampling), the draws are
ranked with the routing trade-off, and the winner (or the top-two pick) replaces the greedy one
when it differs. :class:`ExplorationPolicy` owns the random generator and the pseudo-counts; the
functions are the arithmetic (see :mod:`avengers.online`, "Exploration").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..decision import RouteEstimate
from . import scoring

__all__ = [
    "EXPLORE_PSEUDO_COUNT",
    "TOP_TWO_LEADER",
    "TOP_TWO_REDRAWS",
    "ExplorationPolicy",
    "explore_picks",
    "pick_first",
    "pick_probabilities",
    "thompson_pick",
    "top_two_pick",
]

EXPLORE_PSEUDO_COUNT = 1.0
"""Pseudo-observations added to an added model's evidence in the exploration posterior (models
from the training data use the router's ``shrinkage``). Small on purpose: a new model's cells get
a wide posterior and so a real chance; with ``shrinkage`` (10) its posterior was so narrow that
it was almost never tried. Using 1 for every model made the warm-start pass worse (40 % of the gap
closed instead of 60 % on dcrouter: docs/benchmarks.md, "Online learning")."""


def thompson_pick(
    performance: np.ndarray,
    evidence: np.ndarray,
    cost: np.ndarray | None,
    alpha: float,
    *,
    pseudo_count: float | np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Per query, the model whose Thompson draw wins: every model's score is drawn from
    ``Beta(1 + p * n, 1 + (1 - p) * n)`` (``p`` its estimate, ``n`` its evidence plus
    ``pseudo_count``) and the draws are ranked by the routing trade-off (``alpha``, ``cost``)."""
    a, b = _beta_posterior(performance, evidence, pseudo_count)
    pick: np.ndarray = scoring.tradeoff(rng.beta(a, b), cost, alpha).argmax(axis=1)
    return pick


def _beta_posterior(
    performance: np.ndarray, evidence: np.ndarray, pseudo_count: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The Beta parameters exploration draws each model's score from: ``1 + p * n`` and
    ``1 + (1 - p) * n``, ``p`` the estimate (clipped to [0, 1]), ``n`` evidence + pseudo count."""
    p = np.clip(performance, 0.0, 1.0)
    n = np.maximum(evidence, 0.0) + pseudo_count
    return 1.0 + p * n, 1.0 + (1.0 - p) * n


TOP_TWO_LEADER = 0.5
"""Top-two Thompson sampling: the chance a candidate goes to the leader rather than the
challenger."""
TOP_TWO_REDRAWS = 10
"""Top-two Thompson sampling: draws tried to find a challenger before the leader's runner-up in
its own draw stands in."""


def top_two_pick(
    performance: np.ndarray,
    evidence: np.ndarray,
    cost: np.ndarray | None,
    alpha: float,
    *,
    pseudo_count: float | np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Per query, a top-two Thompson sampling pick: a Thompson draw (as :func:`thompson_pick`)
    names the leader; with chance :data:`TOP_TWO_LEADER` the query goes to it, otherwise draws
    are repeated until another model wins (the challenger; after :data:`TOP_TWO_REDRAWS` draws
    without one, the leader's runner-up in its own draw) and the query goes to the challenger.
    Half the queries thus compare the two models most likely to be best, which is what finding
    the best model of each cluster needs; plain Thompson sampling mostly confirms the leader.
    With ``alpha`` 0 (a ranking by cost alone) the leader is returned: performance cannot change
    the pick, so there is nothing to explore."""
    n_queries = len(performance)
    a, b = _beta_posterior(performance, evidence, pseudo_count)
    first = scoring.tradeoff(rng.beta(a, b), cost, alpha)
    leader = first.argmax(axis=1)
    if first.shape[1] < 2 or (alpha <= 0.0 and cost is not None):
        return leader  # nothing to compare, or a ranking by cost alone: nothing to learn
    ranked = np.argsort(-first, axis=1)
    challenger = ranked[:, 1].copy()  # stands in where no redraw finds another winner
    found = np.zeros(n_queries, dtype=bool)
    for _ in range(TOP_TWO_REDRAWS):
        win = scoring.tradeoff(rng.beta(a, b), cost, alpha).argmax(axis=1)
        new = ~found & (win != leader)
        challenger[new] = win[new]
        found |= new
        if found.all():
            break
    to_leader = rng.random(n_queries) < TOP_TWO_LEADER
    pick: np.ndarray = np.where(to_leader, leader, challenger)
    return pick


def explore_picks(
    performance: np.ndarray,
    evidence: np.ndarray,
    cost: np.ndarray | None,
    alpha: float,
    greedy: np.ndarray,
    *,
    share: float,
    pseudo_count: float | np.ndarray,
    rng: np.random.Generator,
    rule: str = "thompson",
) -> np.ndarray:
    """Per query, the index of a model picked by exploration, or -1 to keep the greedy pick.

    Each query is a candidate with probability ``share``; for a candidate, every model's score is
    drawn from ``Beta(1 + p * n, 1 + (1 - p) * n)`` where ``p`` is its estimate and ``n`` its
    evidence plus ``pseudo_count``, the draws are ranked by the routing trade-off (``alpha``,
    ``cost``), and the winner (``rule`` "thompson") or the top-two pick (``rule`` "top-two",
    :func:`top_two_pick`) is returned when it differs from ``greedy``. ``pseudo_count`` may be
    one number per model."""
    n_queries = len(performance)
    out = np.full(n_queries, -1, dtype=np.int64)
    if share <= 0.0 or n_queries == 0:
        return out
    candidate = rng.random(n_queries) < share
    if not candidate.any():
        return out
    c = None if cost is None else cost[candidate]
    pick = _RULES[rule](
        performance[candidate], evidence[candidate], c, alpha, pseudo_count=pseudo_count, rng=rng
    )
    idx = np.flatnonzero(candidate)
    changed = pick != greedy[idx]
    out[idx[changed]] = pick[changed]
    return out


def pick_probabilities(
    performance: np.ndarray,
    evidence: np.ndarray,
    cost: np.ndarray | None,
    alpha: float,
    greedy: np.ndarray,
    *,
    share: float,
    pseudo_count: float | np.ndarray,
    rng: np.random.Generator,
    draws: int = 64,
    rule: str = "thompson",
) -> np.ndarray:
    """(n, m): the chance that routing with exploration (:func:`explore_picks`) sends each query
    to each model: ``1 - share`` on the greedy pick plus ``share`` times the share of ``draws``
    picks of ``rule`` each model gets (a Monte Carlo estimate, so a model may get 0). The inverse
    of the chosen model's entry is its inverse-propensity weight for ``Router.update``."""
    n, m = performance.shape
    out = np.zeros((n, m))
    if n == 0:
        return out
    out[np.arange(n), greedy] = 1.0 - share
    if share <= 0.0:
        out[np.arange(n), greedy] = 1.0
        return out
    wins = np.zeros((n, m))
    for _ in range(draws):
        pick = _RULES[rule](performance, evidence, cost, alpha, pseudo_count=pseudo_count, rng=rng)
        wins[np.arange(n), pick] += 1.0
    return out + share * wins / draws


_RULES = {"thompson": thompson_pick, "top-two": top_two_pick}


def pick_first(order: Sequence[int] | np.ndarray, pick: int) -> list[int]:
    """A ranking (model indices, best first) with ``pick`` moved to the front (-1: unchanged)."""
    row = [int(j) for j in order]
    if pick < 0:
        return row
    return [pick] + [j for j in row if j != pick]


@dataclass
class ExplorationPolicy:
    """Exploration with a share, a rule and a seed (the router's ``explore``, ``explore_rule``
    and ``random_state``, see :meth:`follow`); the generator is made on first use and then kept,
    so a seeded router explores the same way on every run."""

    share: float = 0.0
    rule: str = "thompson"
    seed: int | None = 0
    rng: np.random.Generator | None = None

    def follow(self, share: float, rule: str, seed: int | None) -> ExplorationPolicy:
        """Take the router's current settings (the generator is kept); returns self."""
        self.share, self.rule, self.seed = share, rule, seed
        return self

    @staticmethod
    def pseudo_counts(added: np.ndarray, shrinkage: float) -> np.ndarray:
        """Per model, the pseudo-observations of its posterior: :data:`EXPLORE_PSEUDO_COUNT`
        for a model added after ``fit``, ``shrinkage`` for the others."""
        return np.where(added, EXPLORE_PSEUDO_COUNT, shrinkage)

    def picks(self, est: RouteEstimate, alpha: float, pseudo_count: np.ndarray) -> np.ndarray:
        """Per query of ``est``, the model index exploration picks, or -1 (:func:`explore_picks`)."""
        if self.share <= 0.0:
            return np.full(len(est.order), -1, dtype=np.int64)
        if self.rng is None:
            self.rng = np.random.default_rng(self.seed)
        return explore_picks(
            est.performance, est.evidence, est.cost, alpha, est.best, share=self.share,
            pseudo_count=pseudo_count, rng=self.rng, rule=self.rule,
        )  # fmt: skip

    def probabilities(
        self, est: RouteEstimate, alpha: float, pseudo_count: np.ndarray, draws: int
    ) -> np.ndarray:
        """(n, m) the chance of each pick (:func:`pick_probabilities`), with fresh draws from
        the seed (not the generator :meth:`picks` uses)."""
        return pick_probabilities(
            est.performance, est.evidence, est.cost, alpha, est.best, share=self.share,
            pseudo_count=pseudo_count, rng=np.random.default_rng(self.seed), draws=draws,
            rule=self.rule,
        )  # fmt: skip
