"""The registry and hyper-parameter validation: clear errors that list what is valid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqbench.errors import InputError
from seqbench.losses.base import LossBatch
from seqbench.losses.registry import LOSSES, build_loss, default_params, loss_class

SPEC_NAMES = ["ce", "cce", "bce", "bpr", "top1", "bpr-max", "sampled-ce", "scaled-ce", "nce", "neg", "gbce", "sce"]


def test_registry_holds_exactly_the_spec_names_with_help_naming_a_paper() -> None:
    assert LOSSES.names() == SPEC_NAMES
    for name in LOSSES.names():
        cls = loss_class(name)
        assert cls.name == name and cls.help and cls.paper


def test_defaults_follow_the_spec() -> None:
    assert default_params("scaled-ce")["alpha"] == 100.0 and default_params("scaled-ce")["num_negatives"] == 100
    assert default_params("scaled-ce")["exclude_history"] is False
    assert default_params("sampled-ce")["num_negatives"] == 256 and default_params("sampled-ce")["exclude_history"] is True
    assert default_params("nce")["c"] == 10.0 and default_params("nce")["num_negatives"] == 100
    assert default_params("gbce")["t"] == 0.75 and default_params("gbce")["num_negatives"] == 256
    for name in ("bce", "bpr"):
        assert default_params(name)["num_negatives"] == 1 and default_params(name)["exclude_history"] is True
    assert default_params("sce") == {"n_b": None, "b_x": None, "b_y": None, "mix": False}
    assert build_loss("sce", 10_000).params.sizes(400, 10_000) == (40, 40, 256)
    assert build_loss("sce", 100).params.sizes(3, 100) == (3, 3, 100)


def test_unknown_loss_lists_the_valid_names() -> None:
    with pytest.raises(InputError) as error:
        build_loss("softmax", 10)
    assert "softmax" in error.value.message and "sampled-ce" in error.value.message and "sce" in error.value.message


@pytest.mark.parametrize(
    "name,params,needle",
    [
        ("sampled-ce", {"K": 0}, "num_negatives (K) must be an integer >= 1"),
        ("bce", {"K": -3}, "num_negatives (K) must be an integer >= 1"),
        ("scaled-ce", {"alpha": 0}, "alpha must be > 0"),
        ("scaled-ce", {"alpha": "-1.5"}, "alpha must be > 0"),
        ("sce", {"b_y": 11}, "b_y must be at most the number of items N = 10"),
        ("sce", {"n_b": 0}, "n_b must be >= 1"),
        ("gbce", {"t": 1.5}, "t must be in [0, 1]"),
        ("ce", {"ce_impl": "fast"}, "valid: dense, chunked, fused, auto, cut"),
        ("cce", {"chunk_size": 0}, "chunk_size must be >= 1"),
        ("bce", {"sampler": "zipf"}, "valid: uniform, popularity"),
        ("bce", {"sampler": "popularity"}, "exclude_history=true needs sampler=uniform"),
        ("nce", {"alpha": 3}, "valid: num_negatives, sampler, exclude_history, shared, pop_power, c"),
        ("bpr-max", {"bpreg": -1}, "bpreg must be >= 0"),
        ("sampled-ce", {"K": "many"}, "num_negatives='many' is not a valid int"),
        ("sce", {"mix": "maybe"}, "is not a valid bool"),
        ("top1", {"sampler": "popularity"}, "needs item counts"),
    ],
)
def test_bad_hyper_parameters_raise_clear_errors(name: str, params: dict, needle: str) -> None:
    with pytest.raises(InputError) as error:
        build_loss(name, 10, params)
    assert needle in error.value.message


def test_cut_backend_without_the_package_or_cuda_is_a_clear_error() -> None:
    from seqbench.losses.cross_entropy import cut_available

    if cut_available():
        pytest.skip("cut-cross-entropy and CUDA are present here")
    with pytest.raises(InputError, match="cut-cross-entropy package and CUDA"):
        build_loss("cce", 10, {"ce_impl": "cut"})


def test_bucket_of_more_positions_than_the_batch_has_is_a_clear_error() -> None:
    loss = build_loss("sce", 10, {"b_x": 5})
    positives = torch.tensor([[0, 0, 1, 2], [0, 0, 0, 3]])  # n = 3 positions
    batch = LossBatch(torch.randn(2, 4, 3), positives, torch.randn(11, 3), generator=torch.Generator())
    with pytest.raises(InputError, match="b_x must be at most the number of loss positions n = 3"):
        loss(batch)


def test_bad_positions_and_popularity_counts() -> None:
    with pytest.raises(InputError, match="valid: all, last"):
        build_loss("cce", 10, positions="first")
    with pytest.raises(InputError, match="N = 10 or N \\+ 1 entries"):
        build_loss("gbce", 10, {"sampler": "popularity"}, item_counts=np.ones(5))
    assert build_loss("gbce", 10, {"sampler": "popularity"}, item_counts=np.ones(11)).positions == "all"


def test_cli_strings_are_converted_to_the_field_types() -> None:
    loss = build_loss("scaled-ce", 1000, {"K": "50", "alpha": "2.5", "shared": "true", "logq": "False"})
    assert (loss.params.num_negatives, loss.params.alpha, loss.params.shared, loss.params.logq) == (50, 2.5, True, False)
    assert build_loss("cce", 10, {"ce_impl": "chunked"}).params.ce_impl == "chunked"
    assert build_loss("sce", 100_000, {"b_y": "1e3", "n_b": "none"}).params.b_y == 1000
    assert build_loss("bpr", 10, positions="last").positions == "last"


def test_k_is_an_alias_of_num_negatives_but_not_twice() -> None:
    assert build_loss("gbce", 1000, {"K": 7}).params.num_negatives == 7
    assert build_loss("gbce", 1000, {"num_negatives": 9}).params.num_negatives == 9
    with pytest.raises(InputError, match="given twice"):
        build_loss("gbce", 1000, {"K": 7, "num_negatives": 9})
    with pytest.raises(InputError, match="unknown parameter 'K' for loss sce"):
        build_loss("sce", 1000, {"K": 7})
