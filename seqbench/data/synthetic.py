"""The built-in ``synthetic`` data set: learnable sequential structure, no download.

Items are grouped into clusters. Each item has a few successors, mostly random items of its own
cluster; a user's next item follows the chain with probability ``FOLLOW`` and otherwise jumps to a
popularity-weighted random item. A model that learns the transitions ranks the next item far above
what popularity ranking can; item attributes name the cluster (plus noise), so attribute
objectives (S3-Rec) carry real signal. Generation is vectorised over users: one numpy step per
sequence position.

Default size (``SyntheticParams``): 2000 users, 500 items, mean length 30 (about 60,000
interactions), so that a GRU4Rec or SASRec epoch on a laptop CPU takes about a second.

``catalog="full"`` keeps every item id 1..items in the catalogue, including those no user ever
picks (a real shop's long tail; the share is in ``meta.json``), and draws the successor table in
one vectorised step, so 10^6 items and 10^6 interactions take seconds. The default
``catalog="occurring"`` keeps the original draws so that data prepared before stays identical.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from seqbench.data.registry import SyntheticParams
from seqbench.errors import InputError

FOLLOW = 0.85  # probability of following the Markov chain rather than jumping by popularity
SUCCESSORS = 4  # successors per item: 3 from its cluster, 1 from anywhere
CLUSTER_SIZE = 25
ZIPF = 0.8  # popularity ~ 1 / rank^ZIPF
MIN_LENGTH = 5
CATALOGS = ("occurring", "full")
# Bounds that keep generation inside this machine's memory: the walk is users x 5*length int64.
MAX_INTERACTIONS = 100_000_000  # users x length
MAX_ITEMS = 50_000_000
MAX_LENGTH = 10_000


def _check(params: SyntheticParams) -> None:
    if params.users < 1 or params.items < 2 * SUCCESSORS or params.length < MIN_LENGTH:
        raise InputError(
            f"synthetic needs users >= 1, items >= {2 * SUCCESSORS} and length >= {MIN_LENGTH}; "
            f"got users={params.users}, items={params.items}, length={params.length}"
        )
    if params.seed < 0 or params.seed >= 2**63:
        raise InputError(f"synthetic parameter seed={params.seed} is out of range: give 0 <= seed < 2**63")
    if params.catalog not in CATALOGS:
        raise InputError(f"synthetic parameter catalog={params.catalog!r} is not known: choose from {', '.join(CATALOGS)}")
    if params.items > MAX_ITEMS or params.length > MAX_LENGTH or params.users * params.length > MAX_INTERACTIONS:
        raise InputError(
            f"synthetic with users={params.users}, items={params.items}, length={params.length} is larger than seqbench "
            f"generates (items <= {MAX_ITEMS:.0e}, length <= {MAX_LENGTH}, users x length <= {MAX_INTERACTIONS:.0e}): "
            "lower --set users, items or length"
        )


def _popularity(rng: np.random.Generator, items: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, items + 1) ** ZIPF
    return rng.permutation(weights / weights.sum())


def _successors(rng: np.random.Generator, cluster: np.ndarray, popularity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(items x SUCCESSORS) successor ids and the cumulative probabilities of choosing each."""
    items = len(cluster)
    table = np.empty((items, SUCCESSORS), dtype=np.int64)
    for c in np.unique(cluster):  # a loop over clusters (tens), not users
        members = np.flatnonzero(cluster == c)
        # Uniform within the cluster: if successors followed popularity too, popularity ranking
        # would already predict the chain and there would be little left to learn.
        table[members, : SUCCESSORS - 1] = rng.choice(members, size=(len(members), SUCCESSORS - 1))
    table[:, -1] = rng.choice(items, size=items, p=popularity)
    weights = rng.dirichlet(np.ones(SUCCESSORS), size=items)
    return table, np.cumsum(weights, axis=1)


def _successors_vectorised(rng: np.random.Generator, cluster: np.ndarray, popularity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same table as ``_successors`` (uniform within the cluster, one by popularity), drawn for
    all items at once: O(N log N) where the per-cluster loop is O(N^2 / CLUSTER_SIZE)."""
    items = len(cluster)
    members = np.argsort(cluster, kind="stable")  # items grouped by cluster
    counts = np.bincount(cluster)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    own = cluster[:, None]
    offset = (rng.random((items, SUCCESSORS - 1)) * counts[own]).astype(np.int64)
    table = np.empty((items, SUCCESSORS), dtype=np.int64)
    table[:, : SUCCESSORS - 1] = members[starts[own] + offset]
    table[:, -1] = rng.choice(items, size=items, p=popularity)
    weights = rng.dirichlet(np.ones(SUCCESSORS), size=items)
    return table, np.cumsum(weights, axis=1)


def _lengths(rng: np.random.Generator, params: SyntheticParams) -> np.ndarray:
    # MIN_LENGTH plus a geometric tail: mean = params.length, long tail like real logs.
    extra = rng.geometric(1.0 / (params.length - MIN_LENGTH + 1), size=params.users) - 1
    return np.minimum(MIN_LENGTH + extra, 5 * params.length)


def _walk(rng: np.random.Generator, lengths: np.ndarray, successors: np.ndarray, cumulative: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    users, steps = len(lengths), int(lengths.max())
    walk = np.zeros((users, steps), dtype=np.int64)
    current = rng.choice(len(popularity), size=users, p=popularity)
    walk[:, 0] = current
    for t in range(1, steps):
        pick = (rng.random(users)[:, None] > cumulative[current]).sum(axis=1)
        chained = successors[current, np.minimum(pick, SUCCESSORS - 1)]
        jumped = rng.choice(len(popularity), size=users, p=popularity)
        current = np.where(rng.random(users) < FOLLOW, chained, jumped)
        walk[:, t] = current
    return walk


def _attributes(rng: np.random.Generator, cluster: np.ndarray) -> pd.DataFrame:
    """Each item: its cluster's attribute, one of 2 cluster sub-attributes, and sometimes 1 of 10
    global attributes (noise)."""
    items, clusters = len(cluster), int(cluster.max()) + 1
    own = cluster
    sub = clusters + 2 * cluster + rng.integers(0, 2, size=items)
    noise = 3 * clusters + rng.integers(0, 10, size=items)
    has_noise = rng.random(items) < 0.3
    item = np.concatenate([np.arange(items), np.arange(items), np.flatnonzero(has_noise)])
    attribute = np.concatenate([own, sub, noise[has_noise]])
    return pd.DataFrame({"item": item + 1, "attribute": attribute + 1})


def generate(params: SyntheticParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Interactions (``user``, ``item``; rows chronological per user) and item attributes."""
    _check(params)
    rng = np.random.default_rng(params.seed)
    cluster = rng.integers(0, max(params.items // CLUSTER_SIZE, 2), size=params.items)
    popularity = _popularity(rng, params.items)
    draw_successors = _successors_vectorised if params.catalog == "full" else _successors
    successors, cumulative = draw_successors(rng, cluster, popularity)
    lengths = _lengths(rng, params)
    walk = _walk(rng, lengths, successors, cumulative, popularity)
    mask = np.arange(walk.shape[1])[None, :] < lengths[:, None]
    users = np.repeat(np.arange(1, params.users + 1, dtype=np.int64), lengths)
    interactions = pd.DataFrame({"user": users, "item": walk[mask] + 1})  # row-major: per user, in order
    return interactions, _attributes(rng, cluster)


def full_catalog(params: SyntheticParams) -> np.ndarray | None:
    """The item ids of the catalogue when it is every id (``catalog="full"``), else None."""
    return np.arange(1, params.items + 1, dtype=np.int64) if params.catalog == "full" else None
