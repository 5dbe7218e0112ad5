"""memprof library: prediction equals measurement, the dense logits formula, chunked CE and SCE memory."""

from __future__ import annotations

import pytest
import torch

from seqbench.errors import InputError
from seqbench.memprof import profile as profile_module
from seqbench.memprof.analytic import DenseLogits, overflows_int64, sce_loss_elements
from seqbench.memprof.profile import (
    ProfileRecord,
    parse_loss_spec,
    profile_step,
    split_loss_list,
)
from seqbench.memprof.report import human_bytes, peak_table

ALL_LOSSES = ["ce", "cce", "cce[chunked]", "sce", "sampled-ce", "bce", "gbce"]


def stages_of(record: ProfileRecord) -> dict[str, object]:
    return {stage.name: stage for stage in record.stages}


def loss_stage_peak(record: ProfileRecord) -> int:
    """Bytes the loss adds on top of the encoder: forward transient, or what forward keeps + backward's."""
    stages = stages_of(record)
    forward, backward = stages["loss forward"], stages["loss backward"]
    return max(forward.transient_bytes, forward.held_bytes + backward.transient_bytes)


@pytest.mark.parametrize("loss", ALL_LOSSES)
def test_predicted_peak_equals_measured_peak(loss: str) -> None:
    shape = dict(catalog=400, batch_size=4, max_len=8, hidden=16, device="cpu", breakdown=True)
    measured = profile_step("sasrec", loss, mode="measure", **shape)
    predicted = profile_step("sasrec", loss, mode="predict", **shape)
    assert (measured.mode, predicted.mode) == ("measured", "predicted")
    assert measured.peak_bytes and predicted.peak_bytes
    assert abs(predicted.peak_bytes - measured.peak_bytes) <= 0.02 * measured.peak_bytes
    assert predicted.flops == measured.flops > 0
    assert measured.seconds is not None and measured.seconds > 0
    names = [stage.name for stage in measured.stages]
    for name in ["parameters", "optimizer state", "inputs", "encoder activations", "loss forward",
                 "loss backward", "encoder backward", "gradients", "optimizer step", "whole step"]:
        assert name in names


def test_prediction_handles_packed_rnn_models() -> None:
    shape = dict(catalog=300, batch_size=4, max_len=6, hidden=8, device="cpu")
    measured = profile_step("gru4rec", "cce", mode="measure", **shape)
    predicted = profile_step("gru4rec", "cce", mode="predict", **shape)
    assert measured.peak_bytes is not None
    assert abs(predicted.peak_bytes - measured.peak_bytes) <= 0.02 * measured.peak_bytes


def test_dense_cce_peak_grows_with_the_formula_slope() -> None:
    batch, length, hidden = 8, 16, 16
    small, large = 2000, 6000
    peaks = {
        catalog: profile_step("sasrec", "cce", catalog, batch, length, hidden, "measure", "cpu").peak_bytes
        for catalog in (small, large)
    }
    expected = DenseLogits(batch, length, hidden).peak_difference(small, large)
    assert abs((peaks[large] - peaks[small]) - expected) <= 0.02 * expected


def test_chunked_ce_loss_stage_does_not_grow_with_positions_times_items() -> None:
    batch, length, hidden = 8, 16, 16
    loss = "cce[chunked;chunk_size=256]"
    records = {
        catalog: profile_step("sasrec", loss, catalog, batch, length, hidden, "predict", "cpu", breakdown=True)
        for catalog in (2000, 8000)
    }
    growth = loss_stage_peak(records[8000]) - loss_stage_peak(records[2000])
    extra_items = 8000 - 2000
    # Only per-item terms may grow (the item table's gradient, d floats per item)...
    assert growth <= 2 * extra_items * hidden * 4
    # ...never a B x L x N term: one logits copy of the extra items would be 8x larger than that.
    assert growth < batch * length * extra_items * 4 / 4


def test_sce_stays_below_dense_by_the_expected_factor() -> None:
    batch, length, hidden, catalog = 16, 16, 16, 20000
    dense = profile_step("sasrec", "cce", catalog, batch, length, hidden, "predict", "cpu", breakdown=True)
    sce = profile_step("sasrec", "sce", catalog, batch, length, hidden, "predict", "cpu", breakdown=True)
    positions = batch * length
    expected = DenseLogits(batch, length, hidden).logits_bytes(catalog) / (4 * sce_loss_elements(positions, catalog))
    measured = loss_stage_peak(dense) / loss_stage_peak(sce)
    assert expected / 2 <= measured <= expected * 2
    assert sce.peak_bytes < dense.peak_bytes / 4


def test_auto_measures_what_fits_and_predicts_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    small = profile_step("sasrec", "bce", 300, 4, 6, 8, "auto", "cpu")
    assert small.mode == "measured" and small.predicted_bytes == small.peak_bytes
    monkeypatch.setattr(profile_module, "available_bytes", lambda device: 1000)
    squeezed = profile_step("sasrec", "bce", 300, 4, 6, 8, "auto", "cpu")
    assert squeezed.mode == "predicted" and "free memory" in squeezed.note and squeezed.peak_bytes > 1000


def test_out_of_memory_becomes_an_oom_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    def exhausted(state: object, stages: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB")

    monkeypatch.setattr(profile_module, "_train_step", exhausted)
    record = profile_step("sasrec", "cce", 300, 4, 6, 8, "measure", "cpu")
    assert record.status == "OOM" and record.peak_bytes is None
    assert "OOM" in peak_table([record])


def test_loss_labels() -> None:
    assert split_loss_list("cce,cce[chunked],sce[b_y=128;mix=true]") == ["cce", "cce[chunked]", "sce[b_y=128;mix=true]"]
    assert parse_loss_spec("cce").params == {"ce_impl": "dense"}
    assert parse_loss_spec("cce[chunked]").params == {"ce_impl": "chunked"}
    assert parse_loss_spec("sce[b_y=128;mix=true]").params == {"b_y": 128, "mix": True}
    with pytest.raises(InputError):
        parse_loss_spec("sce[chunked]")
    with pytest.raises(InputError):
        parse_loss_spec("c c e")


@pytest.mark.parametrize(
    ("catalog", "batch_size", "loss"),
    [(1, 4, "cce"), (300, 0, "cce"), (300, 4, "nope"), (10**18, 256, "cce")],
)
def test_bad_shapes_and_names_are_input_errors(catalog: int, batch_size: int, loss: str) -> None:
    with pytest.raises(InputError):
        profile_step("sasrec", loss, catalog, batch_size, 50, 8, "predict", "cpu")


def test_units_and_overflow() -> None:
    assert human_bytes(512) == "512 B"
    assert human_bytes(3 * 2**30) == "3.00 GiB"
    assert human_bytes(1020 * 2**20) == "1020 MiB"
    assert human_bytes(int(14.46 * 2**30)) == "14.5 GiB"
    assert human_bytes(None) == "-"
    assert overflows_int64(256, 200, 10**15) and not overflows_int64(256, 200, 10**9)


def test_chunked_loops_are_extrapolated_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    # A tiny operator budget forces the fold (three small catalogs, affine extrapolation) that a
    # tiled chunked CE triggers at 10^6 items; it must agree with the direct fake-tensor step.
    monkeypatch.setattr(profile_module, "FOLD_OP_BUDGET", 500)
    shape = dict(catalog=2**16, batch_size=4, max_len=8, hidden=8, mode="predict", device="cpu", breakdown=True)
    folded = profile_step("sasrec", "cce[chunked]", **shape)
    assert "extrapolated" in folded.note
    monkeypatch.setattr(profile_module, "FOLD_CATALOGS", (2**16 + 1,) * 3)  # disables the fold
    direct = profile_step("sasrec", "cce[chunked]", **shape)
    assert "extrapolated" not in direct.note
    assert (folded.peak_bytes, folded.flops) == (direct.peak_bytes, direct.flops)
    assert [s.peak_bytes for s in folded.stages] == [s.peak_bytes for s in direct.stages]
