"""Pre-train S3-Rec on an S3-Rec-format data set from the offline mirror and time each epoch.

    PYTHONPATH=. python scripts/pretrain_s3rec_mirror.py --mirror ../shared/datasets --name LastFM --epochs 1

(``PYTHONPATH=.`` unless seqbench is installed.)

Reads ``s3rec/<name>.txt`` (``user item item ...`` per line) and ``s3rec/<name>_item2attributes.json``
straight from the mirror into an in-memory :class:`PreparedDataset` (leave-one-out: the last two
items are validation and test, as in S3-Rec's own pre-training data), without writing anything.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from seqbench.data.sequences import EvalSplit, PreparedDataset, Ragged
from seqbench.training.pretrain import pretrain_s3rec
from seqbench.models.s3rec import S3RecConfig


def _eval_split(users: np.ndarray, rows: list[list[int]], target: int) -> EvalSplit:
    """History = everything before position ``target`` (-2 = validation, -1 = test)."""
    histories = Ragged.from_lists([r[:target] for r in rows])
    return EvalSplit(users, histories, np.array([r[target] for r in rows], dtype=np.int64))


def load_s3rec_dataset(mirror: Path, name: str) -> PreparedDataset:
    lines = (Path(mirror) / "s3rec" / f"{name}.txt").read_text().split("\n")
    rows = [[int(x) for x in line.split()[1:]] for line in lines if line.strip()]
    rows = [r for r in rows if len(r) >= 3]
    users = np.arange(len(rows), dtype=np.int64)
    num_items = max(max(r) for r in rows)
    raw = json.loads((Path(mirror) / "s3rec" / f"{name}_item2attributes.json").read_text())
    per_item: list[list[int]] = [[] for _ in range(num_items + 1)]
    for item, attrs in raw.items():
        if int(item) <= num_items:
            per_item[int(item)] = sorted(set(int(a) for a in attrs))
    num_attributes = max((max(a) for a in per_item if a), default=0)
    return PreparedDataset(
        name=name,
        num_items=num_items,
        train_users=users,
        train=Ragged.from_lists([r[:-2] for r in rows]),
        valid=_eval_split(users, rows, -2),
        test=_eval_split(users, rows, -1),
        item_attributes=Ragged.from_lists(per_item),
        num_attributes=num_attributes,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    parser.add_argument("--name", default="LastFM")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    dataset = load_s3rec_dataset(args.mirror, args.name)
    print(f"{args.name}: {len(dataset.train)} users, {dataset.num_items} items, {dataset.num_attributes} attributes")
    last = time.perf_counter()

    def report(epoch: int, losses: dict[str, float]) -> None:
        nonlocal last
        now = time.perf_counter()
        print(f"epoch {epoch}: {now - last:.1f} s  " + "  ".join(f"{k} {v:.4f}" for k, v in losses.items()), flush=True)
        last = now

    result = pretrain_s3rec(dataset, S3RecConfig(), args.epochs, args.seed, args.device, report)
    print(f"total {result.seconds:.1f} s for {args.epochs} epoch(s); objectives: {', '.join(result.objectives)}")


if __name__ == "__main__":
    main()
