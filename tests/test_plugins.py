"""A loss and a model from a file outside the repository, through the real entry point (stdout a pipe):
trained by `compare --jobs 2`, in every table, retrained when their source changes; a broken plugin
is one line and exit 2 before anything trains; entry points of an installed package; the code identity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from seqbench.config import RunConfig
from seqbench.configure import make_config
from seqbench.losses.cross_entropy import CumulativeCrossEntropy
from seqbench.plugins import resolve

PLUGIN = textwrap.dedent('''
    from dataclasses import dataclass

    import torch.nn.functional as F
    from torch import nn

    from seqbench.errors import InputError
    from seqbench.losses.base import Loss, LossOutput, gather_selected
    from seqbench.models.base import SequentialRecommender
    from seqbench.plugins import register_loss, register_model


    @dataclass
    class FocalParams:
        gamma: float = 2.0

        def validate(self, num_items):
            if self.gamma < 0:
                raise InputError(f"loss.gamma must be >= 0, got {self.gamma}")


    @register_loss()
    class FocalCE(Loss):
        name = "focal-ce"
        Params = FocalParams

        def compute(self, batch, mask):
            selected = gather_selected(batch, mask)
            log_p = F.log_softmax(selected.hidden @ batch.item_embeddings[1:].T, dim=-1)
            log_p = log_p.gather(1, (selected.targets - 1)[:, None]).squeeze(1)
            return LossOutput(-((1 - log_p.exp()) ** self.params.gamma * log_p).mean())


    @dataclass
    class BagConfig:
        embedding_size: int = 16


    @register_model()
    class Bag(SequentialRecommender):
        """The mean of the items so far, mixed by one linear layer."""

        name = "bag"
        Config = BagConfig

        def __init__(self, config, num_items, max_len):
            super().__init__(config, num_items, max_len)
            self.items = nn.Embedding(num_items + 1, config.embedding_size, padding_idx=0)
            self.mix = nn.Linear(config.embedding_size, config.embedding_size)

        def forward(self, input_ids):
            real = (input_ids > 0).unsqueeze(-1).float()
            mean = self.items(input_ids).cumsum(1) / real.cumsum(1).clamp(min=1)
            return self.mix(mean) * real

        def item_embeddings(self):
            return self.items.weight
''')


def seqbench(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "SEQBENCH_PLUGINS"} | (env or {})
    return subprocess.run([sys.executable, "-m", "seqbench", *args], cwd=cwd, capture_output=True, text=True, env=environment, timeout=600)


@pytest.fixture()
def outside(tmp_path: Path, toy_data: Path) -> Path:
    """A folder outside the repository with the plugin file and the toy data set."""
    (tmp_path / "mine.py").write_text(PLUGIN)
    return tmp_path


def grid_args(toy_data: Path, *extra: str) -> list[str]:
    return ["compare", "--datasets", "toy", "--seeds", "0", "--epochs", "1", "--set", "batch_size=32", "--set", "max_len=10",
            "--data-dir", str(toy_data), "--results", "results", *extra]


def plan(outside: Path, toy_data: Path, *extra: str) -> dict[str, str]:
    done = seqbench(*grid_args(toy_data, *extra, "--dry-run", "--json"), cwd=outside)
    assert done.returncode == 0, done.stderr
    return {row["run_id"]: row["action"] for row in json.loads(done.stdout)["runs"]}


def test_a_plugin_loss_and_model_train_in_workers_show_in_every_table_and_retrain_when_edited(outside: Path, toy_data: Path) -> None:
    args = grid_args(toy_data, "--plugin", "mine.py", "--models", "gru4rec,bag", "--losses", "cce,focal-ce", "--jobs", "2", "--table", "all")
    done = seqbench(*args, cwd=outside)
    assert done.returncode == 0, done.stderr
    assert "focal-ce" in done.stdout and "bag" in done.stdout.lower()
    assert "Frontier" in done.stdout or "frontier" in done.stdout.lower()
    stored = json.loads(seqbench("runs", "--results", "results", "--json", cwd=outside).stdout)["runs"]
    assert sorted((r["model"], r["loss"], r["status"]) for r in stored) == [
        ("bag", "cce", "completed"), ("bag", "focal-ce", "completed"), ("gru4rec", "cce", "completed"), ("gru4rec", "focal-ce", "completed")]
    plugin_runs = [r for r in stored if r["loss"] == "focal-ce" or r["model"] == "bag"]
    assert all("mine.py" in (r["code"]["loss"] + r["code"]["model"]) for r in plugin_runs)

    # The import-path form is the same loss, so the same run ids: nothing to train.
    assert set(plan(outside, toy_data, "--models", "gru4rec", "--losses", "cce,./mine.py:FocalCE").values()) == {"skip"}

    # Edit the plugin: every run that uses its code trains again; the built-in pair does not.
    (outside / "mine.py").write_text(PLUGIN + "\n# gamma's meaning unchanged, code changed\n")
    actions = plan(outside, toy_data, "--plugin", "mine.py", "--models", "gru4rec,bag", "--losses", "cce,focal-ce")
    assert sorted(actions.values()) == ["skip", "train", "train", "train"]
    assert [action for run_id, action in actions.items() if run_id.startswith("toy-gru4rec-cce")] == ["skip"]


@pytest.mark.parametrize("source, words", [
    ("import not_a_module_anywhere\n", "failed to import: ModuleNotFoundError"),
    ("from seqbench.losses.base import Loss\nfrom seqbench.plugins import register_loss\n\n"
     "@register_loss()\nclass NoParams(Loss):\n    name = 'no-params'\n    def compute(self, batch, mask):\n        pass\n",
     "has no `Params` dataclass"),
    (PLUGIN.replace('name = "focal-ce"', 'name = "cce"'), "is taken by a built-in"),
    ("from seqbench.plugins import register_loss\n\n@register_loss('x')\nclass NotALoss:\n    pass\n", "is not a subclass of"),
])
def test_a_broken_plugin_is_one_line_and_exit_2_before_any_training(outside: Path, toy_data: Path, source: str, words: str) -> None:
    (outside / "broken.py").write_text(source)
    done = seqbench(*grid_args(toy_data, "--plugin", "broken.py", "--models", "gru4rec", "--losses", "cce"), cwd=outside)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], done.stderr
    assert not (outside / "results" / "runs").exists()


def test_a_missing_plugin_file_and_a_missing_class_are_input_errors(outside: Path, toy_data: Path) -> None:
    missing = seqbench(*grid_args(toy_data, "--plugin", "nowhere.py"), cwd=outside)
    assert missing.returncode == 2 and "nowhere.py does not exist" in missing.stderr
    no_class = seqbench(*grid_args(toy_data, "--losses", "cce,mine.py:Nothing"), cwd=outside)
    assert no_class.returncode == 2 and "has no Nothing" in no_class.stderr


def test_an_installed_package_registers_its_loss_through_an_entry_point(outside: Path, toy_data: Path) -> None:
    site = outside / "site"
    (site / "focalpkg").mkdir(parents=True)
    (site / "focalpkg" / "__init__.py").write_text(PLUGIN.replace("@register_loss()", "").replace("@register_model()", ""))
    info = site / "focalpkg-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: focalpkg\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text("[seqbench.losses]\nfocal = focalpkg:FocalCE\n\n[seqbench.models]\nbag = focalpkg:Bag\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    done = seqbench("train", "--dataset", "toy", "--model", "bag", "--loss", "focal", "--epochs", "1", "--batch-size", "32",
                    "--max-len", "10", "--data-dir", str(toy_data), "--results", "results", "--json", "--quiet", cwd=outside, env=env)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["status"] == "completed" and "module focalpkg" in record["code"]["loss"] and "version 1.2" in record["code"]["loss"]


def test_a_built_in_code_version_enters_the_run_id_only_once_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    before = make_config(None, {"loss": "cce", "ce_impl": "dense"})
    assert before.code == {} and "code" not in before.hash_payload()
    monkeypatch.setattr(CumulativeCrossEntropy, "code_version", 2)
    after = make_config(None, {"loss": "cce", "ce_impl": "dense"})
    assert after.code == {"loss": "v2"} and after.run_id("cpu") != before.run_id("cpu")
    assert make_config(None, {"loss": "cce"}).code == {"loss": "v2+auto-rule-2"}  # both tags
    assert make_config(None, {"loss": "bce"}).run_id("cpu") == RunConfig(loss="bce").run_id("cpu")


def test_code_cannot_be_set_by_hand() -> None:
    assert make_config(None, {"loss": "bce", "code": {"loss": "sha256:forged"}}).code == {}


def test_resolve_keeps_brackets_and_plain_names() -> None:
    assert resolve("cce,sampled-ce[K=64,alpha=1],sce", "loss") == "cce,sampled-ce[K=64,alpha=1],sce"

