"""SASRec in Xu et al.'s layout (``preset=xu``) against an independent transcription of their
code's forward pass (CE-SCE-LLMRec ``SASRec/main.py``: ``nn.MultiheadAttention`` with a causal mask
only, pads zeroed after the embedding and every block, ``attn(LN(x), x, x) + x``)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from seqbench.errors import InputError
from seqbench.models.sasrec import SASRec, SASRecConfig

N, L, D = 50, 10, 16


def xu_forward(model: SASRec, ids: torch.Tensor) -> torch.Tensor:
    """Their forward, with this model's weights copied into a torch MultiheadAttention."""
    enc = model.encoder
    pad = (ids == 0).unsqueeze(-1)
    x = enc.items(ids) * math.sqrt(D) + enc.positions(torch.arange(L))[None]
    x = x.masked_fill(pad, 0.0)
    blocked = torch.ones(L, L, dtype=torch.bool).triu(1)
    for block in enc.blocks:
        a = block.attention
        mha = nn.MultiheadAttention(D, 1, batch_first=True).eval()
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([a.query.weight, a.key.weight, a.value.weight]))
            mha.in_proj_bias.copy_(torch.cat([a.query.bias, a.key.bias, a.value.bias]))
            mha.out_proj.weight.copy_(a.out.weight)
            mha.out_proj.bias.copy_(a.out.bias)
        q = block.attn_norm(x)
        x = mha(q, x, x, attn_mask=blocked, need_weights=False)[0] + x
        y = block.ffn_norm(x)
        x = (y + block.ffn(y)).masked_fill(pad, 0.0)
    return enc.norm(x)


def histories() -> torch.Tensor:
    ids = torch.zeros(4, L, dtype=torch.long)
    for row, length in enumerate([2, 5, 8, 10]):
        ids[row, L - length:] = torch.randint(1, N + 1, (length,))
    return ids


def test_xu_layout_is_their_forward_pass() -> None:
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(preset="xu", hidden_size=D, dropout=0.0, attn_dropout=0.0), N, L).eval()
    ids = histories()
    with torch.no_grad():
        ours, theirs = model(ids), xu_forward(model, ids)
    real = ids > 0
    assert torch.allclose(ours[real], theirs[real], atol=1e-5)
    # Kang's layout (the 'original' preset) is another function of the same weights.
    kang = SASRec(SASRecConfig(preset="original", hidden_size=D, dropout=0.0, attn_dropout=0.0), N, L).eval()
    kang.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert (kang(ids)[real] - theirs[real]).abs().max() > 1e-3


def test_visible_pads_make_padding_part_of_the_input() -> None:
    """With visible pad keys the model is not left-padding free: short histories are padded to
    max_len before encoding, so a trimmed batch scores exactly as a full-width one."""
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(preset="xu", hidden_size=D, dropout=0.0, attn_dropout=0.0), N, L).eval()
    assert not model.left_padding_free
    ids = histories()
    with torch.no_grad():
        full = model.encode_last(ids)
        trimmed = model.encode_last(ids[:, -5:][:1])  # the 2-item history cut to 5 columns
        assert torch.allclose(trimmed, full[:1], atol=1e-6)
        assert not torch.allclose(model(ids[:1, -5:])[:, -1], full[:1], atol=1e-4)  # unpadded differs
    assert SASRec(SASRecConfig(preset="original", hidden_size=D), N, L).left_padding_free


def test_xavier_initialisation_matches_their_scales() -> None:
    """Xavier-normal embeddings (positions ~ sqrt(2 / (L + d))), the stacked q/k/v projection
    Xavier-uniform over 3d x d, the FFN at torch's Linear default."""
    torch.manual_seed(0)
    d, max_len, items = 64, 50, 12101
    enc = SASRec(SASRecConfig(preset="xu", hidden_size=d), items, max_len).encoder
    assert enc.positions.weight.std().item() == pytest.approx(math.sqrt(2 / (max_len + d)), rel=0.05)
    assert enc.items.weight[1:].std().item() == pytest.approx(math.sqrt(2 / (items + 1 + d)), rel=0.05)
    assert enc.items.weight[0].abs().sum().item() == 0.0
    attention = enc.blocks[0].attention
    assert attention.query.weight.std().item() == pytest.approx(math.sqrt(2 / (4 * d)), rel=0.1)
    assert attention.out.weight.std().item() == pytest.approx(math.sqrt(2 / (2 * d)), rel=0.1)
    assert enc.blocks[0].ffn.fc1.weight.abs().max().item() <= 1 / math.sqrt(d)
    normal = SASRec(SASRecConfig(preset="original", hidden_size=d), items, max_len).encoder
    assert normal.positions.weight.std().item() == pytest.approx(0.02, rel=0.1)


@pytest.mark.parametrize("field", ["init", "residual", "pad_keys"])
def test_an_unknown_switch_value_is_refused(field: str) -> None:
    with pytest.raises(InputError, match=f"model.{field}"):
        SASRec(SASRecConfig(preset="xu", **{field: "sideways"}), N, L)
