"""Validation curve of this study's runs beside Xu et al.'s own five Beauty SASRec-CE logs.

    python results/beauty-xu2024/curve_table.py [--every 10]

``xu2024_logs_curve.csv``: validation NDCG@10 and mean training loss every 5 epochs, copied from
MTandHJ/CE-SCE-LLMRec ``SASRec/benchmarks/beauty-ce-5/AmazonBeauty_550_Chron/*/log.txt``
(commit 9ebc8e7; seeds 0-4). Ours: ``runs/*/epochs.parquet`` of this folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=10, help="show every this many epochs (and each run's best epoch)")
    args = parser.parse_args()
    xu = pd.read_csv(HERE / "xu2024_logs_curve.csv")
    table = xu.pivot(index="epoch", columns="seed", values="valid_ndcg10")
    frame = pd.DataFrame({"Xu seed 0: valid": table[0], "Xu 5 seeds: valid mean": table.mean(axis=1)})
    frame["Xu seed 0: loss"] = xu[xu["seed"] == 0].set_index("epoch")["train_loss"]
    best_epochs = set()
    for run in sorted(HERE.glob("runs/*/")):
        seed = pd.read_parquet(run / "run.parquet")["seed"].iloc[0]
        epochs = pd.read_parquet(run / "epochs.parquet").set_index("epoch")
        frame[f"ours s{seed}: valid"] = epochs["valid_NDCG@10"]
        frame[f"ours s{seed}: test"] = epochs["test_NDCG@10"]
        frame[f"ours s{seed}: loss"] = epochs["train_loss"]
        best_epochs.add(int(epochs["valid_NDCG@10"].idxmax()))
    best_epochs |= {int(table[seed].idxmax()) for seed in table.columns}
    shown = frame[(frame.index % args.every == 0) | frame.index.isin(best_epochs)].drop(index=0, errors="ignore")
    print(shown.to_markdown(floatfmt=".4f"))


if __name__ == "__main__":
    main()
