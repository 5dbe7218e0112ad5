"""Paper presets pinned to the spec (``shared/spec/protocol.md``, "Xu et al. 2024, exactly") and
shown by ``compare --preset NAME --dry-run`` through the real entry point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from seqbench.configure import make_config
from seqbench.errors import InputError
from seqbench.presets import preset_values

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO.parent / "shared" / "spec" / "protocol.md"
DATASETS = {"Beauty": "beauty", "ML-1M": "ml-1m", "Yelp": "yelp"}


def xu_section() -> str:
    if not SPEC.is_file():
        pytest.skip("shared/spec is not beside this checkout")
    text = SPEC.read_text()
    return text[text.index("## Xu et al. 2024, exactly"):].split("\n## ", 1)[0]


def settings(section: str, heading: str) -> dict[str, tuple[float, int, float, float]]:
    """``Beauty 0.6, 512, 5e-4, 1e-8; ML-1M ...`` after ``heading`` -> data set -> (dropout, batch, lr, wd)."""
    part = section[section.index(heading) + len(heading):]
    found = re.findall(r"(Beauty|ML-1M|Yelp) ([\d.]+), (\d+), (\d+(?:\.\d+)?(?:e-?\d+)?), (\d+(?:\.\d+)?(?:e-?\d+)?)", part)
    return {DATASETS[name]: (float(d), int(b), float(lr), float(wd)) for name, d, b, lr, wd in found[:3]}


@pytest.mark.parametrize(("heading", "losses"), [("for CE / NCE / scaled CE:", ["cce", "nce", "scaled-ce"]),
                                                 ("Retuned BCE:", ["bce"]), ("Retuned BPR:", ["bpr"])])
def test_xu2024_sets_the_spec_settings_per_data_set_and_loss(heading: str, losses: list[str]) -> None:
    spec = settings(xu_section(), heading)
    assert set(spec) == set(DATASETS.values())
    for dataset, (dropout, batch, lr, weight_decay) in spec.items():
        for loss in losses:
            values = preset_values("xu2024", dataset, loss)
            assert (values["sasrec.dropout"], values["sasrec.attn_dropout"], values["batch_size"], values["lr"], values["weight_decay"]) \
                == (dropout, dropout, batch, lr, weight_decay), (dataset, loss)


def test_xu2024_schedule_negatives_and_layout_as_the_spec_says() -> None:
    section = xu_section()
    assert "CE 200 epochs; BCE, BPR, NCE, scaled CE 300" in section and "Validation every 5 epochs" in section
    assert "K = 500 on Beauty, 100 on ML-1M and Yelp" in section and "Scaled CE alpha = 100; NCE c = 10" in section
    cce = make_config(None, {"dataset": "beauty", "model": "sasrec", "loss": "cce", "paper_preset": "xu2024"})
    assert (cce.epochs, cce.eval_every, cce.patience, cce.selection_metric, cce.max_len) == (200, 5, 0, "NDCG@10", 50)
    assert cce.model_params == {"preset": "xu", "dropout": 0.6, "attn_dropout": 0.6}
    assert (cce.batch_size, cce.lr, cce.weight_decay, cce.exclude_seen) == (512, 5e-4, 1e-8, True)
    for loss, key in (("nce", "num_negatives"), ("scaled-ce", "num_negatives")):
        assert make_config(None, {"dataset": "beauty", "model": "sasrec", "loss": loss, "paper_preset": "xu2024"}).loss_params[key] == 500
        assert make_config(None, {"dataset": "yelp", "model": "sasrec", "loss": loss, "paper_preset": "xu2024"}).loss_params[key] == 100
    bce = make_config(None, {"dataset": "beauty", "model": "sasrec", "loss": "bce", "paper_preset": "xu2024"})
    assert bce.epochs == 300 and bce.model_params["dropout"] == 0.4
    assert make_config(None, {"dataset": "yelp", "model": "sasrec", "loss": "cce", "paper_preset": "xu2024"}).exclude_seen is False
    assert make_config(None, {"dataset": "ml-1m", "model": "sasrec", "loss": "cce", "paper_preset": "xu2024"}).max_len == 200


def test_explicit_values_win_over_the_preset() -> None:
    config = make_config(None, {"dataset": "beauty", "model": "sasrec", "loss": "cce", "paper_preset": "xu2024", "epochs": 40,
                                "sasrec.preset": "original"})
    assert config.epochs == 40 and config.model_params["preset"] == "original" and config.eval_every == 5


def test_an_unknown_preset_names_the_valid_ones() -> None:
    with pytest.raises(InputError, match="mezentsev2024"):
        preset_values("xu2023", "beauty", "cce")


def test_dry_run_lists_what_the_preset_sets_and_cannot_know(tmp_path: Path) -> None:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    data = tmp_path / "data"
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import write_toy_dataset

    write_toy_dataset(data, name="beauty")  # a stand-in: the dry run only reads the registry of names and the store
    args = ["compare", "--preset", "xu2024", "--dry-run", "--datasets", "beauty", "--models", "sasrec", "--losses", "cce",
            "--seeds", "0", "--epochs", "40", "--data-dir", str(data), "--results", str(tmp_path / "r")]
    text = subprocess.run([sys.executable, "-m", "seqbench", *args], capture_output=True, text=True, env=env, timeout=120)
    assert text.returncode == 0, text.stderr
    for field in ("eval_every=5", "patience=0", "sasrec.preset=xu", "sasrec.dropout=0.6", "sasrec.attn_dropout=0.6", "batch_size=512",
                  "lr=0.0005", "weight_decay=1e-08", "epochs=40", "overridden by your options: epochs", "not set by the preset"):
        assert field in text.stdout, field
    document = json.loads(subprocess.run([sys.executable, "-m", "seqbench", *args, "--json"], capture_output=True, text=True, env=env,
                                         timeout=120).stdout)
    (cell,) = document["preset"]["cells"]
    assert cell["values"]["patience"] == 0 and cell["overridden"] == ["epochs"] and document["preset"]["seeds"] == [0, 1, 2, 3, 4]
