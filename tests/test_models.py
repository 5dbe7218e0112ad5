"""Model zoo: the interface contract, causality, padding, initialisation and learning."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seqbench.errors import InputError
from seqbench.models.base import SequentialRecommender
from seqbench.models.registry import build_model, default_params, model_names

SMALL = {"gru4rec": {"embedding_size": 16, "hidden_size": 16}}
CASES = [
    ("gru4rec", {}),
    ("sasrec", {"preset": "s3rec"}),
    ("sasrec", {"preset": "original"}),
    ("sasrec", {"preset": "recbole"}),
    ("bert4rec", {}),
    ("s3rec", {}),
]
CAUSAL = [case for case in CASES if case[0] != "bert4rec"]
IDS = [f"{name}-{params.get('preset', 'default')}" for name, params in CASES]
CAUSAL_IDS = [i for i in IDS if not i.startswith("bert4rec")]


def make(name: str, params: dict, num_items: int = 30, max_len: int = 10, hidden: int = 16, seed: int = 0) -> SequentialRecommender:
    torch.manual_seed(seed)
    sizes = SMALL.get(name, {"hidden_size": hidden})
    return build_model(name, num_items, max_len, {**params, **sizes}, num_attributes=5)


def left_padded(rows: list[list[int]], width: int) -> torch.Tensor:
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            out[i, width - len(row) :] = torch.tensor(row)
    return out


def dense_ce(model: SequentialRecommender, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Full-softmax cross-entropy over every position with a target (what `cce` computes)."""
    hidden = model(inputs)[targets > 0]
    bias = model.item_bias()
    logits = hidden @ model.item_embeddings()[1:].T + (0 if bias is None else bias[1:])
    return F.cross_entropy(logits, targets[targets > 0] - 1)


BATCH = left_padded([[1, 2, 3, 4, 5, 6], [7, 8], [9, 10, 11, 12, 13, 14, 15, 16, 17, 18], [19]], 10)


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_shapes_tied_table_and_score_all(name: str, params: dict) -> None:
    model = make(name, params).eval()
    hidden = model(BATCH)
    table = model.item_embeddings()
    assert hidden.shape == (4, 10, 16)
    assert table.shape == (31, 16)  # exactly N + 1 rows: a [MASK] row is never scored
    assert torch.count_nonzero(hidden[BATCH == 0]) == 0
    empty = model(torch.zeros(2, 10, dtype=torch.long))  # all-padding rows: no NaN, all zero
    assert torch.count_nonzero(empty) == 0 and torch.isfinite(empty).all()
    if model.item_bias() is not None:  # make the bias matter for the check below
        with torch.no_grad():
            model.item_bias().normal_()
    last = hidden[:, -1]
    expected = last @ table[1:].T + (0 if model.item_bias() is None else model.item_bias()[1:])
    assert torch.allclose(model.score_all(last), expected, atol=1e-6)
    # Tied: the scoring table is the input table (BERT4Rec/S3-Rec: its first N + 1 rows).
    input_table = dict(model.named_parameters())["encoder.items.weight" if name != "gru4rec" else "items.weight"]
    assert table.data_ptr() == input_table.data_ptr()


@pytest.mark.parametrize("name,params", CAUSAL, ids=CAUSAL_IDS)
def test_causal_models_ignore_the_future(name: str, params: dict) -> None:
    model = make(name, params).eval()
    changed = BATCH.clone()
    changed[:, 6:] = torch.where(BATCH[:, 6:] > 0, (BATCH[:, 6:] + 7) % 30 + 1, 0)
    before, after = model(BATCH), model(changed)
    assert torch.allclose(before[:, :6], after[:, :6], atol=1e-6)
    assert not torch.allclose(before[:, 6:], after[:, 6:], atol=1e-4)  # the change is visible later on


def test_bert4rec_is_bidirectional() -> None:
    model = make("bert4rec", {}).eval()
    changed = BATCH.clone()
    changed[:, -1] = torch.where(BATCH[:, -1] > 0, BATCH[:, -1] % 30 + 1, 0)
    before, after = model(BATCH), model(changed)
    real = BATCH[:, :-1] > 0
    assert not torch.allclose(before[:, :-1][real], after[:, :-1][real], atol=1e-4)


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_left_padding_does_not_change_real_positions(name: str, params: dict) -> None:
    model = make(name, params, max_len=12).eval()
    rows = [[3, 1, 4, 1, 5], [9, 2], [6, 5, 3, 5, 8, 9, 7], [2]]
    short, long = left_padded(rows, 7), left_padded(rows, 12)
    hidden_short, hidden_long = model(short), model(long)[:, -7:]
    assert torch.allclose(hidden_short, hidden_long, atol=1e-5)


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_untrained_cross_entropy_is_close_to_ln_n(name: str, params: dict) -> None:
    num_items = 2000
    torch.manual_seed(0)
    model = build_model(name, num_items, 20, params).eval()  # published sizes (hidden 64)
    inputs = torch.randint(1, num_items + 1, (8, 20))
    inputs[:, :5] = 0
    targets = torch.where(inputs > 0, torch.randint(1, num_items + 1, inputs.shape), 0)
    with torch.no_grad():
        loss = dense_ce(model, inputs, targets).item()
    assert abs(loss - math.log(num_items)) < 0.5


def structured_windows(num_items: int, users: int, width: int) -> torch.Tensor:
    """Each user walks the catalogue with a fixed step from a random start: learnable next items."""
    start = torch.randint(1, num_items + 1, (users, 1))
    step = torch.randint(1, 3, (users, 1))
    windows = (start + step * torch.arange(width)) % num_items + 1
    lengths = torch.randint(3, width + 1, (users, 1))
    return torch.where(torch.arange(width) >= width - lengths, windows, 0)


@pytest.mark.parametrize("name,params", CASES, ids=IDS)
def test_a_few_adam_steps_lower_the_full_softmax_loss(name: str, params: dict) -> None:
    # Lighter dropout; BERT4Rec gets more steps, as only its masked positions carry a loss.
    overrides = {"gru4rec": {}}.get(name, {"dropout": 0.1})
    steps = 70 if name == "bert4rec" else 40
    model = make(name, {**params, **overrides}, num_items=40, hidden=32)
    torch.manual_seed(1)
    windows = structured_windows(40, 64, 11)
    generator = torch.Generator().manual_seed(0)

    def evaluation_loss() -> float:
        model.eval()
        with torch.no_grad():
            inputs, targets = model.training_batch(windows, torch.Generator().manual_seed(5))
            return dense_ce(model, inputs, targets).item()

    before = evaluation_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        model.train()
        inputs, targets = model.training_batch(windows, generator)
        loss = dense_ce(model, inputs, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert evaluation_loss() < 0.7 * before


def test_bert4rec_training_batch_masks_and_targets() -> None:
    model = make("bert4rec", {"mask_prob": 0.2}, max_len=10)
    torch.manual_seed(3)
    windows = torch.randint(1, 31, (4000, 11))
    windows[::7, :6] = 0  # some shorter rows
    windows[5] = 0  # an empty row
    windows[6, :-1] = 0  # a single item
    inputs, targets = model.training_batch(windows, torch.Generator().manual_seed(0))
    items = windows[:, 1:]
    masked = targets > 0
    assert inputs.shape == targets.shape == items.shape
    assert torch.equal(inputs[masked], torch.full_like(inputs[masked], model.mask_id))
    assert torch.equal(targets[masked], items[masked])
    assert torch.equal(inputs[~masked], items[~masked])
    assert not masked[items == 0].any()
    assert masked[items.gt(0).any(1)].any(1).all() and not masked[5].any() and masked[6, -1]
    assert abs(masked.sum().item() / items.gt(0).sum().item() - 0.2) < 0.02
    again, _ = model.training_batch(windows, torch.Generator().manual_seed(0))
    assert torch.equal(again, inputs)


def test_bert4rec_encode_last_reads_an_appended_mask() -> None:
    model = make("bert4rec", {}, max_len=10).eval()
    histories = left_padded([[1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]], 12)
    expected_inputs = torch.cat([histories[:, -9:], torch.full((2, 1), model.mask_id)], dim=1)
    assert torch.allclose(model.encode_last(histories), model(expected_inputs)[:, -1], atol=1e-6)
    short = left_padded([[1, 2, 3]], 3)  # a full-width short history keeps all its items
    expected_short = torch.tensor([[1, 2, 3, model.mask_id]])
    assert torch.allclose(model.encode_last(short), model(expected_short)[:, -1], atol=1e-6)


@pytest.mark.parametrize("name", ["sasrec", "s3rec", "gru4rec"])
def test_encode_last_of_causal_models_uses_the_most_recent_max_len_items(name: str) -> None:
    model = make(name, {}, max_len=10).eval()
    histories = left_padded([list(range(1, 16)), [4, 5]], 15)
    assert torch.allclose(model.encode_last(histories), model(histories[:, -10:])[:, -1], atol=1e-5)


def test_seeded_initialisation_is_reproducible() -> None:
    first, second, other = make("sasrec", {}, seed=4), make("sasrec", {}, seed=4), make("sasrec", {}, seed=5)
    for (name, a), b, c in zip(first.state_dict().items(), second.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(first.item_embeddings(), other.item_embeddings())


def test_registry_names_errors_and_presets() -> None:
    assert model_names() == ["gru4rec", "sasrec", "bert4rec", "s3rec"]
    with pytest.raises(InputError, match="gru4rec, sasrec, bert4rec, s3rec"):
        build_model("caser", 10, 5)
    with pytest.raises(InputError, match="valid are .*hidden_size"):
        build_model("sasrec", 10, 5, {"hiden_size": 32})
    with pytest.raises(InputError, match="preset"):
        build_model("sasrec", 10, 5, {"preset": "kang"})
    model = build_model("sasrec", 10, 5, {"preset": "original", "dropout": 0.5})
    assert (model.config.preset, model.config.num_heads, model.config.inner_size) == ("original", 1, 64)
    assert (model.config.dropout, model.config.attn_dropout, model.config.scale_embeddings) == (0.5, 0.2, True)
    assert build_model("sasrec", 10, 5).config.inner_size == 256
    assert default_params("s3rec")["mip_weight"] == 1.0 and default_params("bert4rec")["mask_prob"] == 0.2
    assert build_model("s3rec", 10, 5, num_attributes=7).attributes.weight.shape == (8, 64)


# Beauty (S3-Rec files): 12101 items, 1221 attributes. Counts derived by hand in docs/models.md.
BEAUTY_COUNTS = [
    ("gru4rec", {}, 803_648),
    ("sasrec", {"preset": "original"}, 828_288),
    ("sasrec", {"preset": "s3rec"}, 877_824),
    ("sasrec", {"preset": "recbole"}, 877_824),
    ("bert4rec", {}, 894_278),
    ("s3rec", {}, 877_888 + 1222 * 64 + 4 * 4160),
]


def test_parameter_counts_at_beauty_size(capsys: pytest.CaptureFixture[str]) -> None:
    lines = []
    for name, params, expected in BEAUTY_COUNTS:
        model = build_model(name, 12101, 50, params, num_attributes=1221)
        count = sum(p.numel() for p in model.parameters())
        lines.append(f"{name:8s} {params.get('preset', ''):8s} {count:>9,d}")
        assert count == expected, (name, params, count)
    with capsys.disabled():
        print("\nparameters at d=64, Beauty (N=12101, max_len 50):\n" + "\n".join(lines))
