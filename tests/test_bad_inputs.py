"""The bad-input corpus: every hostile or careless input of issue 13, through the real CLI.

Each case runs one command in a fresh copy of a small workspace (a prepared toy data set and a
run store holding a *good* run and a *victim* run) after its setup has damaged something, and
asserts the contract: the documented exit code (2 for bad input), exactly one line on stderr
(``error: ...``, or ``warning: ...`` where the command goes on without a damaged file), no
traceback, with ``--json`` one JSON error object on stdout, no partial or temporary file left
behind, and the good run byte-identical afterwards.

The corpus uses nothing but the command line and files, so it also runs against an older
seqbench (``PYTHONPATH=/path/to/checkout``); ``SEQBENCH_CORPUS_REPORT=FILE`` appends one JSON line
per case with what happened, for before/after counts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import write_toy_dataset
from typer.testing import CliRunner

from seqbench.cli import app

runner = CliRunner()
FAST = ["--dataset", "toy", "--model", "gru4rec", "--loss", "bce", "--epochs", "1", "--set", "max_len=10", "--set", "batch_size=64"]
GRID = ["--datasets", "toy", "--models", "gru4rec", "--losses", "bce", "--epochs", "1", "--set", "max_len=10", "--set", "batch_size=64"]
Setup = Callable[["Workspace"], dict[str, str] | None]


@dataclasses.dataclass
class Workspace:
    root: Path
    good: str  # run id of the run that must survive every case untouched
    victim: str  # run id of the run a case may damage

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def mirror(self) -> Path:
        return self.root / "mirror"

    def run_file(self, name: str, run_id: str | None = None) -> Path:
        return self.results / "runs" / (run_id or self.victim) / name


@dataclasses.dataclass
class Case:
    id: str
    args: list[str]
    setup: Setup | None = None
    code: int = 2
    stderr: str = "error:"  # what the one stderr line starts with
    contains: str = ""  # and a fragment it must hold


# --- the workspace --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("corpus-template")
    write_toy_dataset(root / "data")
    ids = []
    for loss in ("bce", "ce"):
        args = ["train", *FAST[:4], "--loss", loss, *FAST[6:], "--data-dir", str(root / "data"), "--results", str(root / "results"), "-q", "--json"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        ids.append(json.loads(result.stdout)["run_id"])
    (root / "mirror").mkdir()
    return Workspace(root, ids[0], ids[1])


@pytest.fixture()
def workspace(template: Workspace, tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    shutil.copytree(template.root, root, symlinks=True)
    return Workspace(root, template.good, template.victim)


def digests(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.rglob("*")) if p.is_file()}


def all_paths(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# --- setups ---------------------------------------------------------------------------------
def write(relative: str, content: bytes | str) -> Setup:
    def setup(ws: Workspace) -> None:
        path = ws.root / relative.format(good=ws.good, victim=ws.victim)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    return setup


def truncate(relative: str, keep: int) -> Setup:
    def setup(ws: Workspace) -> None:
        path = ws.root / relative.format(good=ws.good, victim=ws.victim)
        path.write_bytes(path.read_bytes()[:keep])

    return setup


def run_file(name: str, how: str) -> Setup:
    """Damage one file of the victim run: truncated, empty, garbage, or a valid table of no rows."""

    def setup(ws: Workspace) -> None:
        path = ws.run_file(name)
        if how == "truncated":
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
        elif how == "empty":
            path.write_bytes(b"")
        elif how == "garbage":
            path.write_bytes(b"PAR1 this is not a parquet file at all")
        elif how == "no-rows":
            table = pq.read_table(path)
            pq.write_table(table.slice(0, 0), path)
        elif how == "bad-config":
            table = pq.read_table(path)
            index = table.column_names.index("config_json")
            pq.write_table(table.set_column(index, "config_json", pa.array(["{not json"])), path)

    return setup


def registry(entries: dict[str, Any], files: dict[str, bytes | str] | None = None) -> Setup:
    """A SEQBENCH_DATASETS file with ``entries``, and mirror files (relative to the mirror)."""

    def setup(ws: Workspace) -> dict[str, str]:
        path = ws.root / "datasets.yaml"
        path.write_text(yaml.safe_dump({"datasets": entries}))
        for relative, content in (files or {}).items():
            target = ws.mirror / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode() if isinstance(content, str) else content)
        return {"SEQBENCH_DATASETS": str(path)}

    return setup


def raw_registry(text: bytes) -> Setup:
    def setup(ws: Workspace) -> dict[str, str]:
        path = ws.root / "datasets.yaml"
        path.write_bytes(text)
        return {"SEQBENCH_DATASETS": str(path)}

    return setup


def source(url: str = "https://example.org/d/ratings.csv", fmt: str = "movielens-csv", sha256: str | None = None, folder: str = "tiny", **extra: Any) -> dict[str, Any]:
    return {"role": "interactions", "format": fmt, "url": url, "sha256": sha256, "mirror_folder": folder, **extra}


def entry(*files: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"description": "test", "files": list(files), "recipe": {"dedup": "none", "user_k": 0, "item_k": 0}, **extra}


RATINGS = "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},4.0,{1000 + u * 10 + i}\n" for u in range(1, 6) for i in range(1, 6))
EXTRA_FIELD = "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},4.0,{1000 + i},\n" for u in range(1, 6) for i in range(1, 6))


def mirror_data(fmt: str, content: bytes | str, name: str = "ratings.csv", **extra: Any) -> Setup:
    return registry({"tiny": entry(source(f"https://example.org/d/{name}", fmt), **extra)}, {f"tiny/{name}": content})


def outside_dataset(ws: Workspace) -> None:
    write_toy_dataset(ws.root, name="x")  # a prepared folder next to, not inside, the data dir


def other_store(ws: Workspace) -> None:
    shutil.copytree(ws.results, ws.root / "other" / "results")


def s3rec_cache_corrupted(ws: Workspace) -> None:
    args = ["train", *FAST[:2], "--model", "s3rec", "--loss", "ce", *FAST[6:], "--set", "pretrain_epochs=1",
            "--data-dir", str(ws.data), "--results", str(ws.results), "-q"]
    assert runner.invoke(app, args).exit_code == 0
    for path in (ws.results / "pretrain").glob("*.pt"):
        path.write_bytes(b"not a checkpoint")
    for path in (ws.results / "runs").glob("toy-s3rec-*"):
        shutil.rmtree(path)  # so that the same run trains again


# --- the cases ------------------------------------------------------------------------------
def train(*args: str) -> list[str]:
    return ["train", "--data-dir", "{data}", "--results", "{results}", "-q", *FAST, *args]


def eval_(*args: str) -> list[str]:
    return ["eval", "--data-dir", "{data}", "--results", "{results}", "-q", *args]


def compare(*args: str) -> list[str]:
    return ["compare", "--data-dir", "{data}", "--results", "{results}", "-q", *GRID, *args]


def prepare(*args: str) -> list[str]:
    return ["prepare", "--data-dir", "{data}", "-q", *args]


def prepare_mirror(*args: str) -> list[str]:
    return ["prepare", "--data-dir", "{data}", "--mirror", "{mirror}", "-q", "tiny", *args]


def cases() -> list[Case]:
    found: list[Case] = []

    def add(case_id: str, args: list[str], setup: Setup | None = None, code: int = 2, stderr: str = "error:", contains: str = "") -> None:
        found.append(Case(case_id, args, setup, code, stderr, contains))

    # 1a. messages are plain text, never rich markup
    for text in ("x[/]", "[bold]x", "[/]", "a[red]b"):
        add(f"markup-prepare-{text}", prepare(text), contains=text)
        add(f"markup-train-dataset-{text}", train("--dataset", text), contains=text)
        add(f"markup-eval-{text}", eval_(text), contains=text)
    add("markup-set-key", train("--set", "foo[/]=1"), contains="foo[/]")
    add("markup-train-model", train("--model", "[/]x"), contains="[/]x")
    add("markup-train-loss", train("--loss", "ce[x]"), contains="ce[x]")
    add("markup-compare-losses", compare("--losses", "x[/]"), contains="x[/]")
    add("markup-config-path", train("--config", "{ws}/no[/].yaml"), contains="no[/].yaml")

    # 1b. unchecked values: refused before training
    add("seed-negative", train("--seed", "-1"), contains="seed")
    add("seed-over-2^63", train("--seed", str(2**64)), contains="seed")
    add("set-seed-negative", train("--set", "seed=-5"), contains="seed")
    add("weight-decay-negative", train("--set", "weight_decay=-1"), contains="weight_decay")
    for key, value in [("dropout", "abc"), ("dropout", "2"), ("dropout", "-0.1"), ("dropout", "[1]"), ("num_layers", "abc"),
                       ("num_layers", "0"), ("num_layers", "2.5"), ("num_layers", "true"), ("hidden_size", "abc"), ("hidden_size", "-4"),
                       ("embedding_size", "x"), ("bogus", "1")]:
        add(f"model-{key}={value}", train("--set", f"model.{key}={value}"), contains=key)
    add("sasrec-heads-not-dividing", train("--model", "sasrec", "--set", "model.num_heads=3"), contains="num_heads")
    add("sasrec-dropout-abc", train("--model", "sasrec", "--set", "model.attn_dropout=abc"), contains="attn_dropout")
    add("negatives-over-catalogue", train("--set", "loss.num_negatives=1000"), contains="num_negatives")
    add("K-over-catalogue", train("--set", "loss.K=41"), contains="num_negatives")
    for value in ("abc", "0", "-3", "2.5", "true"):
        add(f"negatives={value}", train("--set", f"loss.num_negatives={value}"), contains="num_negatives")
    add("loss-bogus-key", train("--set", "loss.bogus=1"), contains="bogus")
    add("gbce-t-out-of-range", train("--loss", "gbce", "--set", "loss.t=2"), contains="t must be")
    add("ce-impl-bogus", train("--loss", "ce", "--set", "ce_impl=bogus"), contains="ce_impl")
    add("sampled-ce-alpha-zero", train("--loss", "sampled-ce", "--set", "loss.alpha=0"), contains="alpha")
    add("scoped-typo-train", train("--loss", "sampled-ce", "--set", "sampled-ce.num_negative=64"), contains="num_negative")
    add("scoped-typo-compare", compare("--losses", "bce,sampled-ce", "--set", "sampled-ce.num_negative=64"), contains="num_negative")
    add("scoped-typo-other-loss", train("--set", "gbce.tt=0.5"), contains="tt")
    for key in ("epochs", "patience", "batch_size", "max_len", "eval_every", "eval_batch_size", "pretrain_epochs", "threads", "seed", "augment_stride"):
        for value in ("abc", "1.5", "true", "[1]"):
            add(f"int-{key}={value}", train("--set", f"{key}={value}"), contains=key)
    for key in ("lr", "weight_decay", "time_budget"):
        for value in ("abc", "inf", "nan", "-inf", "[1]"):
            add(f"float-{key}={value}", train("--set", f"{key}={value}"), contains=key)
    for key in ("exclude_seen", "bf16", "compile"):
        add(f"bool-{key}=maybe", train("--set", f"{key}=maybe"), contains=key)
    for key, value in [("epochs", "-1"), ("patience", "-1"), ("batch_size", "0"), ("max_len", "1"), ("lr", "0"), ("lr", "-1"),
                       ("eval_every", "0"), ("eval_batch_size", "0"), ("time_budget", "0"), ("time_budget", "-5"), ("threads", "-1"),
                       ("pretrain_epochs", "-1"), ("ks", "0"), ("ks", "abc"), ("ks", "5,-1"), ("positions", "first"), ("device", "tpu"),
                       ("selection_metric", "bogus"), ("augment", "bogus"), ("augment_stride", "0"), ("bogus", "1"), ("loss", "nope"),
                       ("model", "nope")]:
        add(f"range-{key}={value}", train("--set", f"{key}={value}"), contains=key if key not in ("loss", "model") else "nope")
    add("lr-inf-option", train("--set", "lr=inf"), contains="lr")
    add("compare-augment-sideways", compare("--set", "augment=sideways"), contains="augment")  # was found after training
    add("threads-1e12", train("--set", "threads=1e12"), contains="threads")  # was a ValueError traceback
    add("threads-100000", train("--set", "threads=100000"), contains="threads")  # was a crash (exit 139)
    add("ks-huge", train("--set", "ks=99999999999999999999"), contains="ks")
    add("eval-k-huge", eval_("{good}", "--k", "99999999999999999999"), contains="--k")
    add("train-device-tpu", train("--device", "tpu"), contains="tpu")
    add("train-epochs-abc", train("--epochs", "abc"), contains="epochs")
    add("train-unknown-option", train("--bogus"), contains="--bogus")
    add("set-without-equals", train("--set", "epochs"), contains="key=value")
    add("eval-device-tpu", eval_("{good}", "--device", "tpu"), contains="tpu")
    add("eval-k-zero", eval_("{good}", "--k", "0"), contains="--k")
    add("eval-k-negative", eval_("{good}", "--k", "5,-1"), contains="--k")
    add("eval-k-abc", eval_("{good}", "--k", "abc"), contains="--k")
    add("eval-split-bogus", eval_("{good}", "--split", "train"), contains="split")
    add("eval-unknown-run", eval_("toy-gru4rec-bce-s0-000000000000"), contains="no stored run")
    add("runs-status-bogus", ["runs", "--results", "{results}", "--status", "bogus"], contains="bogus")
    # A results path that is a file or does not exist: one line naming it, never "no stored runs" and exit 0.
    a_file = write("afile", "x")
    for name, args in {"runs": ["runs"], "runs-gc": ["runs", "gc"], "runs-rm": ["runs", "rm", "x"], "runs-show": ["runs", "show", "x"]}.items():
        add(f"{name}-results-missing", [*args, "--results", "{ws}/nodir"], contains="nodir does not exist")
        add(f"{name}-results-file", [*args, "--results", "{ws}/afile"], a_file, contains="afile is not a directory")
    add("compare-no-train-results-file", ["compare", "--data-dir", "{data}", "--results", "{ws}/afile", "-q", "--no-train"], a_file,
        contains="afile is not a directory")
    add("tune-results-file", ["tune", "--data-dir", "{data}", "--results", "{ws}/afile", "-q", "--trials", "1"], a_file,
        contains="afile is not a directory")
    add("compare-proposed-bogus", compare("--proposed", "bogus"), contains="bogus")
    add("compare-baselines-bogus", compare("--baselines", "bogus"), contains="bogus")
    add("compare-table-bogus", compare("--table", "bogus"), contains="bogus")
    add("compare-source-unknown", compare("--source", "nosuch", "--table", "reference"), contains="nosuch")  # was after training
    add("set-lr-100k-digits", train("--set", "lr=1" + "0" * 100_000), contains="100,001 characters")  # was a ValueError traceback
    add("set-lr-600-digits", train("--set", "lr=" + "1" * 600), contains="(600 characters) is not a valid float")
    add("compare-format-bogus", compare("--format", "bogus"), contains="bogus")
    add("compare-executor-bogus", compare("--executor", "bogus"), contains="bogus")
    add("compare-seeds-abc", compare("--seeds", "abc"), contains="seeds")
    add("compare-seeds-negative", compare("--seeds", "-1"), contains="seed")
    add("compare-set-bogus", compare("--set", "bogus=1"), contains="bogus")
    add("compare-model-dropout", compare("--set", "model.dropout=abc"), contains="dropout")
    add("compare-lr-inf", compare("--set", "lr=inf"), contains="lr")
    add("compare-cpus-per-run", compare("--executor", "ray", "--cpus-per-run", "0"), contains="cpus-per-run")

    # 1c. config and registry files
    add("config-not-utf8", train("--config", "{ws}/c.yaml"), write("c.yaml", b"epochs: \xff\xfe\n"), contains="c.yaml")
    add("config-folder", train("--config", "{ws}/data"), contains="data")
    add("config-missing", train("--config", "{ws}/missing.yaml"), contains="missing.yaml")
    add("config-invalid-yaml", train("--config", "{ws}/c.yaml"), write("c.yaml", "epochs: [1\n"), contains="c.yaml")
    add("config-a-list", train("--config", "{ws}/c.yaml"), write("c.yaml", "- 1\n- 2\n"), contains="c.yaml")
    add("config-bad-value", train("--config", "{ws}/c.yaml"), write("c.yaml", "epochs: abc\n"), contains="epochs")
    add("config-bad-model-param", train("--config", "{ws}/c.yaml"), write("c.yaml", "model_params: {dropout: abc}\n"), contains="dropout")
    add("config-params-not-mapping", train("--config", "{ws}/c.yaml"), write("c.yaml", "loss_params: [1]\n"), contains="loss_params")
    ok_source = source()
    add("registry-not-utf8", prepare("tiny"), raw_registry(b"datasets:\n  tiny: {description: \"\xff\"}\n"), contains="datasets.yaml")
    add("registry-invalid-yaml", prepare("tiny"), raw_registry(b"datasets: [\n"), contains="datasets.yaml")
    add("registry-no-datasets", prepare("tiny"), raw_registry(b"other: 1\n"), contains="datasets")
    add("registry-missing-file", prepare("tiny"), lambda ws: {"SEQBENCH_DATASETS": str(ws.root / "nope.yaml")}, contains="nope.yaml")
    add("registry-misspelt-split", prepare("tiny"), registry({"tiny": entry(ok_source, spilt={"kind": "temporal"})}), contains="spilt")
    add("registry-misspelt-recipe", prepare("tiny"), registry({"tiny": entry(ok_source, recipie={"user_k": 5})}), contains="did you mean 'recipe'")
    add("registry-manual-download-string", prepare("tiny"), registry({"tiny": entry(ok_source, manual_download="false")}), contains="manual_download")
    add("registry-quantile-abc", prepare("tiny"), registry({"tiny": entry(ok_source, split={"kind": "temporal", "quantile": "abc"})}), contains="quantile")
    add("registry-quantile-2", prepare("tiny"), registry({"tiny": entry(ok_source, split={"kind": "temporal", "quantile": 2})}), contains="quantile")
    add("registry-sha256-number", prepare("tiny"), registry({"tiny": entry(source(sha256=12345))}), contains="sha256")
    add("registry-sha256-short", prepare("tiny"), registry({"tiny": entry(source(sha256="abc"))}), contains="sha256")
    add("registry-user-k-abc", prepare("tiny"), registry({"tiny": entry(ok_source) | {"recipe": {"user_k": "abc"}}}), contains="user_k")
    add("registry-user-k-negative", prepare("tiny"), registry({"tiny": entry(ok_source) | {"recipe": {"user_k": -1}}}), contains="user_k")
    add("registry-min-rating-abc", prepare("tiny"), registry({"tiny": entry(ok_source) | {"recipe": {"min_rating": "abc"}}}), contains="min_rating")
    add("registry-synthetic-users-abc", prepare("tiny"), registry({"tiny": {"description": "s", "synthetic": {"users": "abc"}}}), contains="users")
    add("registry-synthetic-users-zero", prepare("tiny"), registry({"tiny": {"description": "s", "synthetic": {"users": 0}}}), contains="users")
    add("registry-synthetic-not-mapping", prepare("tiny"), registry({"tiny": {"description": "s", "synthetic": [1]}}), contains="tiny")
    add("registry-recipe-not-mapping", prepare("tiny"), registry({"tiny": entry(ok_source) | {"recipe": "none"}}), contains="tiny")
    add("registry-files-not-list", prepare("tiny"), registry({"tiny": entry() | {"files": "x"}}), contains="files")
    add("registry-file-not-mapping", prepare("tiny"), registry({"tiny": entry() | {"files": ["x"]}}), contains="tiny")
    add("registry-file-unknown-key", prepare("tiny"), registry({"tiny": entry(source(bogus=1))}), contains="bogus")
    add("registry-role-bogus", prepare("tiny"), registry({"tiny": entry(source(role="bogus"))}), contains="role")
    add("registry-split-bogus", prepare("tiny"), registry({"tiny": entry(ok_source, split={"kind": "random"})}), contains="random")
    add("registry-dedup-bogus", prepare("tiny"), registry({"tiny": entry(ok_source) | {"recipe": {"dedup": "all"}}}), contains="dedup")
    add("registry-no-interactions", prepare("tiny"), registry({"tiny": {"description": "x", "files": []}}), contains="interactions")
    add("registry-format-bogus", prepare_mirror(), mirror_data("bogus-format", RATINGS), contains="bogus-format")

    # 1d. malformed sources
    amazon = registry(
        {"tiny": entry(source("https://example.org/d/r.csv", "amazon-ratings-csv"),
                       source("https://example.org/d/meta.json", "amazon-meta") | {"role": "attributes"})},
        {"tiny/r.csv": "".join(f"U{u},I{i},4.0,{1000 + i}\n" for u in range(3) for i in range(3)),
         "tiny/meta.json": "{'asin': 'I1', 'categories': [1]}\n"},
    )
    add("amazon-meta-categories-not-lists", prepare_mirror(), amazon, contains="meta.json")
    add("amazon-meta-not-literal", prepare_mirror(), registry(
        {"tiny": entry(source("https://example.org/d/r.csv", "amazon-ratings-csv"), source("https://example.org/d/meta.json", "amazon-meta") | {"role": "attributes"})},
        {"tiny/r.csv": "U1,I1,4.0,1000\n", "tiny/meta.json": "__import__('os')\n"}), contains="meta.json")
    add("amazon-meta-categories-int", prepare_mirror(), registry(
        {"tiny": entry(source("https://example.org/d/r.csv", "amazon-ratings-csv"), source("https://example.org/d/meta.json", "amazon-meta") | {"role": "attributes"})},
        {"tiny/r.csv": "U1,I1,4.0,1000\n", "tiny/meta.json": "{'asin': 'I1', 'categories': 5}\n"}), contains="meta.json")
    add("csv-extra-trailing-field", prepare_mirror(), mirror_data("movielens-csv", EXTRA_FIELD), contains="ratings.csv:2")
    add("csv-wrong-header", prepare_mirror(), mirror_data("movielens-csv", RATINGS.replace("userId", "user")), contains="header")
    add("csv-one-field-short", prepare_mirror(), mirror_data("movielens-csv", RATINGS + "7,8,4.0\n"), contains="ratings.csv")
    add("csv-user-not-integer", prepare_mirror(), mirror_data("movielens-csv", RATINGS + "x,8,4.0,1\n"), contains="ratings.csv")
    add("csv-rating-not-number", prepare_mirror(), mirror_data("movielens-csv", RATINGS + "7,8,good,1\n"), contains="ratings.csv")
    add("csv-not-utf8", prepare_mirror(), mirror_data("movielens-csv", RATINGS.encode() + b"7,\xff,4.0,1\n"), contains="ratings.csv")
    add("csv-binary", prepare_mirror(), mirror_data("movielens-csv", b"\x00\x01\x02" * 100), contains="ratings.csv")
    add("s3rec-letters", prepare_mirror(), mirror_data("s3rec-sequences", "1 2 3\n2 a b\n", "seq.txt"), contains="seq.txt")
    add("s3rec-duplicate-user", prepare_mirror(), mirror_data("s3rec-sequences", "1 2 3\n1 3 4\n", "seq.txt"), contains="seq.txt")
    add("s3rec-user-alone", prepare_mirror(), mirror_data("s3rec-sequences", "1 2 3\n2\n", "seq.txt"), contains="seq.txt")
    add("gz-corrupt", prepare_mirror(), mirror_data("gowalla-checkins", b"\x1f\x8b\x08\x00garbage", "c.txt.gz"), contains="c.txt.gz")
    add("gowalla-bad-date", prepare_mirror(), mirror_data("gowalla-checkins", "1\tyesterday\t0.0\t0.0\t5\n", "c.txt"), contains="c.txt")
    add("yelp-bad-line", prepare_mirror(), mirror_data("yelp-review-json", '{"user_id": "a"}\n', "r.json"), contains="r.json")
    add("mirror-file-missing", prepare_mirror(), registry({"tiny": entry(source())}), contains="ratings.csv")
    add("mirror-folder-missing", ["prepare", "--data-dir", "{data}", "--mirror", "{ws}/nope", "-q", "tiny"], registry({"tiny": entry(source())}), contains="nope")
    add("checksum-mismatch", prepare_mirror(), registry({"tiny": entry(source(sha256="0" * 64))}, {"tiny/ratings.csv": RATINGS}), contains="checksum")
    add("prepare-set-bogus", prepare("synthetic", "--set", "colours=3"), contains="colours")
    add("prepare-set-abc", prepare("synthetic", "--set", "users=abc"), contains="users")
    add("prepare-synthetic-negative-seed", prepare("synthetic", "--set", "seed=-1"), contains="seed")
    add("prepare-synthetic-huge-users", prepare("synthetic", "--set", "users=1e12"), contains="--set users")
    add("prepare-synthetic-huge-items", prepare("synthetic", "--set", "items=1e9"), contains="items")
    add("prepare-synthetic-bad-catalog", prepare("synthetic", "--set", "catalog=all"), contains="occurring, full")
    add("prepare-no-name", prepare(), contains="data set")
    add("prepare-unknown", prepare("nope"), contains="nope")

    # 1e. damaged store files: skipped with a warning, the rest of the store keeps working
    for how in ("truncated", "empty", "garbage", "no-rows"):
        warned = {"code": 0, "stderr": "warning:", "contains": "run.parquet"}
        add(f"runs-{how}-run-parquet", ["runs", "--results", "{results}"], run_file("run.parquet", how), **warned)
        add(f"runs-json-{how}-run-parquet", ["runs", "--results", "{results}", "--json"], run_file("run.parquet", how), **warned)
        add(f"compare-no-train-{how}-run-parquet", compare("--no-train"), run_file("run.parquet", how), **warned)
        add(f"compare-retrains-{how}-run-parquet", compare("--losses", "bce,ce", "--proposed", "ce"), run_file("run.parquet", how), **warned)
        add(f"eval-{how}-run-parquet", eval_("{victim}"), run_file("run.parquet", how), contains="run.parquet")
    add("eval-bad-config-json", eval_("{victim}"), run_file("run.parquet", "bad-config"), contains="run.parquet")
    for how in ("truncated", "garbage"):
        add(f"paired-test-{how}-ranks", compare("--no-train", "--losses", "bce,ce", "--proposed", "ce"), run_file("ranks.parquet", how),
            code=0, stderr="warning:", contains="ranks.parquet")
        add(f"plots-{how}-epochs", compare("--no-train", "--losses", "bce,ce", "--proposed", "ce", "--plots", "{ws}/plots"), run_file("epochs.parquet", how),
            code=0, stderr="warning:", contains="epochs.parquet")
    add("checkpoint-a-list", eval_("{victim}"), lambda ws: __import__("torch").save([1, 2], ws.run_file("checkpoint.pt")), contains="checkpoint.pt")
    add("checkpoint-garbage", eval_("{victim}"), run_file("checkpoint.pt", "garbage"), contains="checkpoint.pt")
    add("checkpoint-missing", eval_("{victim}"), lambda ws: ws.run_file("checkpoint.pt").unlink(), contains="checkpoint")
    add("train-parquet-truncated", train(), truncate("data/toy/train.parquet", 40), contains="toy")
    add("train-parquet-truncated-eval", eval_("{good}"), truncate("data/toy/train.parquet", 40), contains="toy")
    add("valid-parquet-garbage", train(), write("data/toy/valid.parquet", "garbage"), contains="toy")
    for label, content in [("invalid", "{not json"), ("empty-object", "{}"), ("a-list", "[1]"), ("num-items-abc", '{"num_items": "abc"}'), ("not-utf8", b"\xff\xfe")]:
        add(f"meta-{label}", train(), write("data/toy/meta.json", content), contains="meta.json")
    add("prepare-synthetic-invalid-meta", prepare("synthetic"), write("data/synthetic/meta.json", "{not json"), code=0, stderr="warning:", contains="meta.json")
    add("prepare-synthetic-empty-meta", prepare("synthetic"), write("data/synthetic/meta.json", "{}"), code=0, stderr="warning:", contains="meta.json")
    add("s3rec-pretrain-cache-corrupt", train("--model", "s3rec", "--loss", "ce", "--set", "pretrain_epochs=1"), s3rec_cache_corrupted,
        code=0, stderr="warning:", contains="s3rec-pretrain")
    add("results-is-a-file", train("--results", "{ws}/afile"), write("afile", "x"), contains="afile")
    add("results-runs-is-a-file", train("--results", "{ws}/r2"), write("r2/runs", "x"), contains="r2")
    add("compare-results-is-a-file", compare("--results", "{ws}/afile"), write("afile", "x"), contains="afile")
    add("data-dir-is-a-file", ["train", "--data-dir", "{ws}/afile", "--results", "{results}", "-q", *FAST[2:]], write("afile", "x"), contains="afile")

    # 4. paths never leave their folders
    for name in ("../x", "../../x", "/etc", "a/b", ".hidden", "..", "x\\y", "toy/../toy"):
        add(f"train-dataset-{name}", train("--dataset", name), outside_dataset, contains=name)
        add(f"prepare-{name}", prepare(name), contains=name)
    add("compare-datasets-../x", compare("--datasets", "../x"), outside_dataset, contains="../x")
    add("eval-other-store", eval_("../../other/results/runs/{good}"), other_store, contains="../../other")
    add("eval-absolute", eval_("{results}/runs/{good}"), contains="runs")
    add("eval-dot-dot", eval_(".."), contains="..")
    add("registry-name-../evil", prepare("../evil"), registry({"../evil": entry(ok_source)}, {"tiny/ratings.csv": RATINGS}), contains="../evil")
    add("registry-name-slash", prepare("a/b"), registry({"a/b": entry(ok_source)}), contains="a/b")
    add("registry-mirror-folder-escape", prepare_mirror(), registry({"tiny": entry(source(folder="../../x"))}), contains="../../x")
    add("registry-mirror-folder-absolute", prepare_mirror(), registry({"tiny": entry(source(folder="/tmp"))}), contains="/tmp")
    add("registry-url-file-name-dotdot", prepare_mirror(), registry({"tiny": entry(source("https://example.org/d/.."))}), contains="..")
    add("registry-member-escape", prepare_mirror(), registry({"tiny": entry(source("https://example.org/d/a.zip", member="../../evil.csv"))}), contains="evil")

    # 5. URL schemes
    for url in ("file:///etc/passwd", "ftp://example.org/d/ratings.csv", "gopher://example.org/ratings.csv", "data:text/plain,1", "http://example.org/d/ratings.csv"):
        add(f"url-{url.split(':')[0]}-{len(url)}", prepare("tiny"), registry({"tiny": entry(source(url))}), contains=url.split(":")[0])

    # 8. --json: the error is also one JSON object on stdout
    for case_id, args in [("json-train-bad-seed", train("--seed", "-1", "--json")), ("json-train-markup", train("--dataset", "x[/]", "--json")),
                          ("json-eval-unknown", eval_("nope", "--json")), ("json-prepare-unknown", prepare("nope", "--json")),
                          ("json-compare-bogus", compare("--table", "bogus", "--json")), ("json-runs-status", ["runs", "--results", "{results}", "--status", "x", "--json"]),
                          ("json-usage-error", train("--epochs", "abc", "--json")), ("json-model-param", train("--set", "model.dropout=abc", "--json"))]:
        add(case_id, args)
    return found


CASES = cases()


def test_the_corpus_is_large_and_its_ids_unique() -> None:
    assert len(CASES) >= 150
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, workspace: Workspace) -> None:
    ws = workspace
    env = (case.setup(ws) if case.setup else None) or {}
    good_before = digests(ws.results / "runs" / ws.good)
    paths_before = all_paths(ws.root)
    places = {"data": ws.data, "results": ws.results, "ws": ws.root, "mirror": ws.mirror, "good": ws.good, "victim": ws.victim}
    args = [arg.format(**places) for arg in case.args]
    result = runner.invoke(app, args, env=env)
    traceback = result.exception is not None and not isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if case.code == 0:  # a command that goes on may print its usual notes; problems are one line each
        lines = [line for line in lines if line.startswith(("error", "warning", "Traceback"))]
    leftovers = sorted(
        p for p in all_paths(ws.root) - paths_before
        if ".tmp-" in p or ".old-" in p or (case.code != 0 and (ws.root / p).is_file() and not verified_raw_copy(ws, p))
    )
    report(case, result.exit_code, traceback, lines, leftovers)
    assert not traceback, f"{type(result.exception).__name__}: {result.exception}"
    assert result.exit_code == case.code, result.output
    assert len(lines) == 1, lines
    assert lines[0].startswith(case.stderr) and case.contains in lines[0], lines[0]
    if "--json" in args and case.code != 0:
        assert json.loads(result.stdout) == {"error": lines[0].removeprefix("error: "), "exit_code": case.code}
    assert leftovers == [], leftovers
    assert digests(ws.results / "runs" / ws.good) == good_before
    assert not (ws.root.parent / "x").exists() and not (ws.root.parent / "evil").exists()


def verified_raw_copy(ws: Workspace, relative: str) -> bool:
    """A complete copy of a mirror file in the raw cache: kept by design (a failure writes no other file)."""
    if not relative.startswith("data/.raw/"):
        return False
    original = ws.mirror / relative.removeprefix("data/.raw/")
    return original.is_file() and original.read_bytes() == (ws.root / relative).read_bytes()


def report(case: Case, code: int, traceback: bool, lines: list[str], leftovers: list[str]) -> None:
    target = os.environ.get("SEQBENCH_CORPUS_REPORT")
    if not target:
        return
    clean = not traceback and code == case.code and len(lines) == 1 and lines[0].startswith(case.stderr)
    record = {"id": case.id, "code": code, "expected": case.code, "traceback": traceback, "lines": len(lines), "clean": clean, "leftovers": bool(leftovers)}
    with open(target, "a") as handle:
        handle.write(json.dumps(record) + "\n")


# --- cases that need more than one command ------------------------------------------------------
def test_compare_refuses_negatives_beyond_the_catalogue_before_training(workspace: Workspace) -> None:
    ws = workspace
    before = sorted(p.name for p in (ws.results / "runs").iterdir())
    args = ["compare", "--data-dir", str(ws.data), "--results", str(ws.results), "-q", *GRID, "--losses", "bce,gbce", "--set", "gbce.num_negatives=1000"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "num_negatives=1000" in result.stderr and "40 items" in result.stderr
    assert sorted(p.name for p in (ws.results / "runs").iterdir()) == before  # nothing trained, no failed run stored


def test_hidden_and_temporary_folders_in_the_data_dir_are_not_data_sets(workspace: Workspace) -> None:
    for name in (".raw", ".toy.tmp-123-abc", "with space"):
        (workspace.data / name).mkdir()
    args = ["compare", "--data-dir", str(workspace.data), "--results", str(workspace.results), "-q", *GRID, "--no-train", "--proposed", "bce"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output


def test_a_bad_cached_raw_file_does_not_stick(workspace: Workspace) -> None:
    ws = workspace
    env = registry({"tiny": entry(source())}, {"tiny/ratings.csv": EXTRA_FIELD})(ws)
    args = ["prepare", "--data-dir", str(ws.data), "--mirror", str(ws.mirror), "-q", "tiny"]
    first = runner.invoke(app, args, env=env)
    assert first.exit_code == 2 and "ratings.csv:2" in first.stderr
    assert not (ws.data / ".raw" / "tiny" / "ratings.csv").exists()  # the unparseable copy is not kept
    (ws.mirror / "tiny" / "ratings.csv").write_text(RATINGS)  # the user fixes the mirror
    assert runner.invoke(app, args, env=env).exit_code == 0
    (ws.mirror / "tiny" / "ratings.csv").write_text(RATINGS + "9,1,4.0,5000\n")  # a new version of the source
    forced = runner.invoke(app, [*args, "--force", "--json"], env=env)
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["datasets"][0]["users"] == 6  # --force fetched the file again, not the cached one


def test_a_cpu_allocation_failure_is_one_line_exit_1(monkeypatch: pytest.MonkeyPatch, workspace: Workspace) -> None:
    import seqbench.training.trainer as trainer

    def no_memory(self: object, progress: object = None, resume: object = None) -> None:
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate 4600000000 bytes. Error code 12")

    monkeypatch.setattr(trainer.Trainer, "fit", no_memory)
    result = runner.invoke(app, ["train", "--data-dir", str(workspace.data), "--results", str(workspace.results), "-q", *FAST, "--seed", "7"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("error: out of memory") and len(result.stderr.strip().splitlines()) == 1


def test_bracketed_hints_are_printed_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    from seqbench.cli.common import print_error

    print_error("--executor ray needs Ray, which is not installed: pip install 'seqbench[ray]'", False, 2)
    assert capsys.readouterr().err.strip() == "error: --executor ray needs Ray, which is not installed: pip install 'seqbench[ray]'"
