"""Large catalogues: a run's measured CPU peak is the memory profiler's figure for the same step."""

from __future__ import annotations

from pathlib import Path

import seqbench
from seqbench.memprof.profile import profile_step


def test_a_runs_cpu_peak_is_what_memprof_predicts_when_the_catalogue_dominates(tmp_path: Path) -> None:
    # 200,000 items x d 16: weights, Adam's moments and gradients (~64 MB) dwarf the activations of
    # batches of 8 x 6, so the trainer's tracked peak and memprof's step must agree closely. The
    # trainer once counted the weights and Adam's state twice (in-place updates looked new): +60%.
    items, batch, length, hidden = 200_000, 8, 6, 16
    seqbench.prepare(name="synthetic", data_dir=tmp_path / "data", items=items, users=40, length=8, catalog="full")
    record = seqbench.train(data_dir=tmp_path / "data", results=tmp_path / "results", dataset="synthetic", model="sasrec",
                            loss="sampled-ce", epochs=1, batch_size=batch, max_len=length, hidden_size=hidden, threads=1)
    assert record["training"]["num_items"] == items
    measured = record["training"]["peak_memory_bytes"]
    predicted = profile_step("sasrec", "sampled-ce", items, batch, length, hidden, mode="predict").peak_bytes
    assert predicted is not None
    assert abs(measured / predicted - 1) < 0.05, (measured, predicted)
