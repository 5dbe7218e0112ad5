"""The front door (issue 14): piped output, one JSON shape, typos, run management, dry runs,
figures, memprof text and the small things (version, help, README). CLI tests go through the
real entry point with stdout captured (a pipe, never a terminal)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from seqbench.cli import app
from seqbench.configure import make_config
from seqbench.storage.store import RunStore
from seqbench.training.trainer import train_run

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
FAST = {"dataset": "toy", "epochs": 2, "batch_size": 64, "max_len": 10, "eval_batch_size": 128, "threads": 1}


def piped(*args: str, merge: bool = False) -> subprocess.CompletedProcess[str]:
    """``python -m seqbench ARGS`` with stdout (and stderr) as pipes; COLUMNS=80 as a narrow log."""
    env = os.environ | {"PYTHONPATH": str(REPO), "COLUMNS": "80"}
    return subprocess.run([sys.executable, "-m", "seqbench", *args], capture_output=not merge, text=True, env=env,
                          cwd=REPO, timeout=300, **({"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT} if merge else {}))


def cli(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Three completed runs, trained once for the module: gru4rec bce and cce, and gru4rec bce
    again with another max_len."""
    from conftest import write_toy_dataset

    root = tmp_path_factory.mktemp("front")
    write_toy_dataset(root / "data")
    ids = [train_run(make_config(None, FAST | overrides), root / "data", root / "r").run_id
           for overrides in ({"model": "gru4rec", "loss": "bce"}, {"model": "gru4rec", "loss": "cce"},
                             {"model": "gru4rec", "loss": "bce", "max_len": 8})]
    return {"data": root / "data", "results": root / "r", "ids": ids}


@pytest.fixture()
def store(trained: dict[str, object], tmp_path: Path) -> dict[str, object]:
    """A private copy of the trained store (tests may add or remove runs)."""
    shutil.copytree(trained["results"], tmp_path / "r")
    return trained | {"results": tmp_path / "r"}


def common(store: dict[str, object]) -> list[str]:
    return ["--data-dir", str(store["data"]), "--results", str(store["results"])]


# --- 1 and 2: piped output ------------------------------------------------------------------------
def test_piped_runs_table_keeps_whole_rows_and_the_live_table_ends_its_line(store: dict[str, object]) -> None:
    listed = piped("runs", "--results", str(store["results"]))
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if line.startswith("toy-")]
    assert len(rows) == 3 and max(len(line) for line in rows) > 80  # not wrapped at COLUMNS=80
    for run_id, line in zip(sorted(store["ids"]), sorted(rows)):
        assert line.startswith(run_id) and "completed" in line and "MiB" in line and "…" not in line
    grid = ["compare", "--datasets", "toy", "--seeds", "0", "--models", "gru4rec", "--losses", "bce,cce", "--epochs", "2",
            *[f"--set={key}={FAST[key]}" for key in ("batch_size", "max_len", "eval_batch_size", "threads")], *common(store)]
    merged = piped(*grid, merge=True)
    assert merged.returncode == 0, merged.stdout
    assert "toy/gru4rec/bce/seed0" in merged.stdout and "…" not in merged.stdout  # labels whole
    border = next(line for line in merged.stdout.splitlines() if line.startswith("└"))
    assert border.rstrip().endswith("┘")  # the next output starts on a line of its own


def test_runs_formats_keep_raw_values_in_csv_and_units_in_markdown(store: dict[str, object]) -> None:
    results = str(store["results"])
    csv = cli("runs", "--results", results, "--format", "csv", "--columns", "run_id,peak_memory_bytes,train_seconds")
    assert csv.exit_code == 0, csv.output
    frame = pd.read_csv(pd.io.common.StringIO(csv.stdout))
    stored = RunStore(store["results"]).table().set_index("run_id")
    assert list(frame.columns) == ["run_id", "peak_memory_bytes", "train_seconds"]
    for row in frame.itertuples():
        assert row.peak_memory_bytes == stored.loc[row.run_id, "peak_memory_bytes"]
        assert row.train_seconds == pytest.approx(stored.loc[row.run_id, "train_seconds"])
    markdown = cli("runs", "--results", results, "--format", "markdown")
    assert markdown.stdout.startswith("| run_id") and " MiB" in markdown.stdout and re.search(r"\d s +\|", markdown.stdout)


# --- 3: one JSON shape ----------------------------------------------------------------------------
def test_train_runs_show_and_compare_print_the_same_run_record(toy_data: Path, tmp_path: Path) -> None:
    args = ["--data-dir", str(toy_data), "--results", str(tmp_path / "r")]
    trained = cli("train", "--dataset", "toy", "--model", "gru4rec", "--loss", "cce", "--epochs", "1", "--set", "max_len=10", "--json", *args)
    assert trained.exit_code == 0, trained.output
    record = json.loads(trained.stdout)
    assert record["kind"] == "run" and record["schema_version"] == 1
    assert isinstance(record["config"], dict) and record["config"]["max_len"] == 10 and isinstance(record["config"]["loss_params"], dict)
    assert set(record["metrics"]) == {"valid", "test"} and "NDCG@10" in record["metrics"]["test"]
    assert not any(isinstance(value, str) and value.startswith("{") for value in record.values())  # no JSON in JSON
    listed = json.loads(cli("runs", "--json", "--results", str(tmp_path / "r")).stdout)
    assert listed["kind"] == "runs" and listed["runs"] == [record]
    compared = json.loads(cli("compare", "--datasets", "toy", "--seeds", "0", "--models", "gru4rec", "--losses", "cce", "--epochs", "1",
                              "--set", "max_len=10", "--no-train", "--json", *args).stdout)
    assert compared["kind"] == "compare" and {"runs", "tables", "figures"} <= set(compared)
    assert compared["runs"] == [record]
    shown = json.loads(cli("runs", "show", record["run_id"][:12], "--json", "--results", str(tmp_path / "r")).stdout)
    assert {key: shown[key] for key in record} == record and len(shown["epochs"]) == 1
    evaluated = json.loads(cli("eval", record["run_id"], "--json", *args).stdout)
    assert evaluated["kind"] == "evaluation" and evaluated["metrics"]["NDCG@10"] == pytest.approx(record["metrics"]["test"]["NDCG@10"])


# --- 5: typos, statuses, prefixes -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--dataset", "toy", "--loss", "bcee"], "unknown loss 'bcee' - did you mean 'bce'?"),
        (["train", "--dataset", "toy", "--model", "sasrc"], "did you mean 'sasrec'?"),
        (["train", "--dataset", "lastfn"], "did you mean 'lastfm'?"),
        (["train", "--dataset", "toy", "--set", "selection_metric=NDCG@1O"], "did you mean 'NDCG@10'?"),
        (["train", "--dataset", "toy", "--set", "pateince=3"], "did you mean 'patience'?"),
        (["compare", "--datasets", "toy", "--seeds", "0", "--losses", "bce,sampled-cee"], "did you mean 'sampled-ce'?"),
        (["runs", "--status", "complete"], "unknown status 'complete' - did you mean 'completed'? (choose from completed, failed, interrupted, pruned)"),
    ],
)
def test_mistyped_names_suggest_the_near_one(toy_data: Path, tmp_path: Path, args: list[str], message: str) -> None:
    extra = ["--results", str(tmp_path)] if args[0] == "runs" else ["--data-dir", str(toy_data), "--results", str(tmp_path)]
    result = cli(*args, *extra)
    assert result.exit_code == 2 and result.stdout == ""
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_run_id_prefixes_resolve_when_unique_and_list_candidates_otherwise(store: dict[str, object]) -> None:
    bce_runs = [run_id for run_id in store["ids"] if "-bce-" in run_id]
    cce_run = next(run_id for run_id in store["ids"] if "-cce-" in run_id)
    evaluated = cli("eval", cce_run[:len("toy-gru4rec-cce")], *common(store))
    assert evaluated.exit_code == 0 and evaluated.stdout.startswith(cce_run)
    ambiguous = cli("runs", "show", "toy-gru4rec-bce", "--results", str(store["results"]))
    assert ambiguous.exit_code == 2 and all(run_id in ambiguous.stderr for run_id in bce_runs)
    missing = cli("runs", "show", "nope", "--results", str(store["results"]))
    assert missing.exit_code == 2 and "no stored run 'nope'" in missing.stderr


# --- 6: run management ----------------------------------------------------------------------------
def test_runs_show_prints_config_curve_files_and_the_run_log(store: dict[str, object]) -> None:
    run_id = store["ids"][2]
    log = RunStore(store["results"]).run_dir(run_id) / "run.log"
    assert log.is_file()
    lines = log.read_text().splitlines()
    assert run_id in lines[0] and [line.split()[1] for line in lines if line.startswith("epoch ")] == ["1", "2"]
    assert lines[-1].startswith("completed")
    shown = cli("runs", "show", run_id[:-4], "--results", str(store["results"]))
    assert shown.exit_code == 0, shown.output
    text = shown.stdout
    assert f"run {run_id}  completed" in text and "max_len=8" in text and "per-epoch curve" in text
    assert all(name in text for name in ("run.parquet", "epochs.parquet", "checkpoint.pt", "run.log"))


def test_config_column_sort_and_columns(store: dict[str, object]) -> None:
    results = str(store["results"])
    table = cli("runs", "--results", results, "--columns", "run_id,loss,config", "--sort", "config")
    assert table.exit_code == 0, table.output
    rows = [line for line in table.stdout.splitlines() if line.startswith("toy-")]
    bce = [line for line in rows if " bce " in line]
    assert len(bce) == 2 and "max_len=10" in bce[0] + bce[1] and "max_len=8" in bce[0] + bce[1]  # told apart
    order = cli("runs", "--results", results, "--format", "csv", "--columns", "run_id,train_seconds", "--sort", "train_seconds", "--reverse")
    seconds = pd.read_csv(pd.io.common.StringIO(order.stdout))["train_seconds"].tolist()
    assert seconds == sorted(seconds, reverse=True)
    bad = cli("runs", "--results", results, "--columns", "run_id,test_ndcg@10")
    assert bad.exit_code == 2 and "did you mean 'test_NDCG@10'?" in bad.stderr


def test_rm_and_gc_remove_only_what_no_report_uses(store: dict[str, object]) -> None:
    results = store["results"]
    run_store = RunStore(results)
    failed = run_store.row(store["ids"][0]) | {"run_id": "toy-gru4rec-bce-s9-failed000000", "status": "failed"}
    from seqbench.storage.store import StoredRun

    run_store.write(StoredRun(failed["run_id"], failed, pd.DataFrame({"epoch": [1]})))
    stray = run_store.runs_dir / ".toy-x.tmp-abc"
    stray.mkdir()
    old = time.time() - 2 * 3600
    os.utime(stray, (old, old))
    fresh = run_store.runs_dir / ".toy-y.tmp-def"  # a write in progress: never touched
    fresh.mkdir()
    dry = cli("runs", "gc", "--dry-run", "--results", str(results))
    assert dry.exit_code == 0 and "would remove toy-gru4rec-bce-s9-failed000000 (failed)" in dry.stdout and ".toy-x.tmp-abc" in dry.stdout
    assert run_store.has(failed["run_id"]) and stray.exists()
    done = json.loads(cli("runs", "gc", "--json", "--results", str(results)).stdout)
    assert done["kind"] == "removed" and {item["name"] for item in done["removed"]} == {failed["run_id"], stray.name}
    assert not run_store.has(failed["run_id"]) and not stray.exists() and fresh.exists()
    assert sorted(run_store.run_ids()) == sorted(store["ids"])  # completed runs are never collected
    refused = cli("runs", "rm", store["ids"][0], "--results", str(results))
    assert refused.exit_code == 2 and "--force" in refused.stderr and run_store.has(store["ids"][0])
    removed = cli("runs", "rm", store["ids"][0], "--force", "--results", str(results))
    assert removed.exit_code == 0 and f"removed {store['ids'][0]}" in removed.stdout and not run_store.has(store["ids"][0])


def test_compare_dry_run_shows_the_plan_and_trains_nothing(store: dict[str, object]) -> None:
    grid = ["compare", "--datasets", "toy", "--seeds", "0", "--models", "gru4rec", "--losses", "bce,cce,ce", "--epochs", "4",
            *[f"--set={key}={FAST[key]}" for key in ("batch_size", "max_len", "eval_batch_size", "threads")], *common(store)]
    before = RunStore(store["results"]).table()
    plan = json.loads(cli(*grid, "--dry-run", "--json").stdout)
    assert plan["kind"] == "plan" and [row["action"] for row in plan["runs"]] == ["train"] * 3  # epochs 4: new run ids
    rates = before.set_index("loss").loc["cce"]
    cce = next(row for row in plan["runs"] if row["run"].startswith("toy/gru4rec/cce"))
    assert cce["estimated_seconds"] == pytest.approx(rates["train_seconds"] / rates["epochs_run"] * 4)
    assert next(row for row in plan["runs"] if "/ce/" in row["run"])["estimate_basis"] == "same dataset/model"
    same = ["compare", "--datasets", "toy", "--seeds", "0", "--models", "gru4rec", "--losses", "bce,cce,ce", "--epochs", "2",
            *[f"--set={key}={FAST[key]}" for key in ("batch_size", "max_len", "eval_batch_size", "threads")], *common(store)]
    text = cli(*same, "--dry-run")
    assert text.exit_code == 0, text.output
    assert "3 runs in the grid, 2 stored, 1 would train" in text.stdout and "skip" in text.stdout
    after = RunStore(store["results"]).table()
    assert sorted(after["run_id"]) == sorted(before["run_id"])


# --- 7: figures -----------------------------------------------------------------------------------
def test_figures_share_one_colour_per_loss_and_label_the_per_timestamp_figure(store: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    import seqbench.reporting.figures as figures
    from seqbench.colors import loss_color
    from seqbench.memprof.profile import ProfileRecord
    from seqbench.memprof.report import peaks_figure
    from seqbench.reporting.runs import completed_runs

    saved = {}
    monkeypatch.setattr(figures, "save_figure", lambda figure, stem: saved.setdefault(stem.name, figure) and [stem])
    runs = completed_runs(RunStore(store["results"]).table())
    curves = {run_id: [{"position": t, "NDCG@10": 0.1 * t} for t in range(1, 6)] for run_id in runs["run_id"]}
    figures.write_figures(RunStore(store["results"]), runs, Path("unused"), per_timestamp=curves)
    figure = saved["per_timestamp"]
    assert "toy, test split" in figure.get_suptitle() and figure.legends  # a figure legend: outside the axes
    lines = figure.axes[0].get_lines()
    by_loss = dict(zip(runs["run_id"], runs["loss"]))
    assert {line.get_color() for line in lines} == {loss_color(loss) for loss in by_loss.values()}
    time_lines = saved["ndcg_vs_time_toy"].axes[0].get_lines()
    assert {line.get_color() for line in time_lines} == {loss_color("bce"), loss_color("cce")}
    records = [ProfileRecord(loss, "sasrec", n, 4, 5, 8, peak, "predicted", "cpu")
               for loss, scale in (("cce", 3), ("cce[chunked]", 1), ("bce", 1)) for n, peak in ((10**4, scale * 2**21), (10**5, scale * 2**24))]
    axes = peaks_figure(records).axes[0]
    assert "MiB" in axes.get_ylabel() and "bytes" not in axes.get_ylabel()
    plotted = [line for line in axes.get_lines() if line.get_label() in ("cce", "cce[chunked]", "bce")]
    assert [line.get_color() for line in plotted] == [loss_color("cce"), loss_color("cce"), loss_color("bce")]
    chunked, bce = plotted[1], plotted[2]  # equal peaks: told apart by marker and position
    assert chunked.get_marker() != bce.get_marker() and list(chunked.get_xdata()) != list(bce.get_xdata())
    assert plotted[0].get_linestyle() != chunked.get_linestyle()  # a variant of a loss: another line style


def test_memprof_plot_says_where_it_wrote(tmp_path: Path) -> None:
    target = tmp_path / "peaks.png"
    result = cli("memprof", "--catalog", "1e3", "--losses", "bce", "--batch-size", "2", "--max-len", "4", "--hidden", "8",
                 "--mode", "predict", "--plot", str(target), "--quiet")
    assert result.exit_code == 0, result.output
    assert f"wrote {target}" in result.stderr and target.read_bytes().startswith(b"\x89PNG")
    # 8: the step's shape stands above the table
    assert result.stdout.startswith("one training step of sasrec: batch B = 2 sequences, length L = 4, hidden size d = 8")


# --- 8: memprof text ------------------------------------------------------------------------------
def test_memprof_text_explains_its_columns_in_plain_words() -> None:
    from seqbench.memprof.report import plain_note

    result = cli("memprof", "--catalog", "1e3", "--losses", "ce", "--batch-size", "2", "--max-len", "4", "--hidden", "8",
                 "--mode", "predict", "--breakdown", "--quiet")
    assert result.exit_code == 0, result.output
    assert "held: memory a stage leaves allocated" in result.stdout and "negative when the stage frees more" in result.stdout
    assert "transient:" in result.stdout and "live peak:" in result.stdout
    note = plain_note("upper bound: unknown mask in index.Tensor taken as all true")
    assert "index.Tensor" not in note and "boolean-mask selection" in note
    helped = cli("memprof", "--help")
    assert "exact CE without the logits" not in " ".join(helped.stdout.split())


def test_rendered_help_keeps_its_brackets() -> None:
    # Rich markup once ate "[...]": "cce = cce computed in chunks" (the opposite of the truth), "needs seqbench;".
    memprof = " ".join(cli("memprof", "--help").stdout.split())
    assert "cce[chunked] = cce computed in chunks" in memprof and "NAME[key=value;...]" in memprof
    compare = " ".join(cli("compare", "--help").stdout.split())
    assert "needs seqbench[mlflow];" in compare
    for option in ("--cpus-per-run", "--gpus-per-run"):
        assert option in compare and "Ray:" in compare.split(option, 1)[1][:80], option
    train = " ".join(cli("train", "--help").stdout.split())
    assert "cce[chunked], sce[b_y=128]" in train


# --- 9: small things ------------------------------------------------------------------------------
def test_version_help_defaults_and_readme_links() -> None:
    import seqbench

    version = piped("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"seqbench {seqbench.__version__}"
    helped = cli("train", "--help")
    text = " ".join(helped.stdout.split())
    for option, default in (("--epochs", "150"), ("--patience", "10"), ("--batch-size", "256"), ("--max-len", "50"), ("--seed", "0"), ("--loss", "cce")):
        assert option in text and f"[default: ({default})]" in text.split(option, 1)[1][:260], option
    readme = (REPO / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        assert target.startswith("http") or (REPO / target).exists(), target
    assert "../shared" not in readme and "benchmarks/reproduce_cce_table2.sh" in readme
    assert "minutes" in readme.split("Main job", 1)[1][:400]


# --- 10: experiment tracking (MLflow's local file store, a real MLflow) --------------------------
def test_unknown_tracker_is_an_input_error(toy_data: Path, tmp_path: Path) -> None:
    result = cli("train", "--dataset", "toy", "--log-to", "mlfow", "--data-dir", str(toy_data), "--results", str(tmp_path))
    assert result.exit_code == 2 and "unknown --log-to tracker 'mlfow' - did you mean 'mlflow'?" in result.stderr


def test_log_to_mlflow_mirrors_epochs_and_the_final_record(toy_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    results = tmp_path / "r"
    args = ["--data-dir", str(toy_data), "--results", str(results), "--log-to", "mlflow", "--set", "max_len=10", "--set", "threads=1"]
    trained = cli("train", "--dataset", "toy", "--model", "gru4rec", "--loss", "bce", "--epochs", "2", "--json", *args)
    assert trained.exit_code == 0, trained.output
    record = json.loads(trained.stdout)
    client = mlflow.MlflowClient(tracking_uri=(results / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("seqbench")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == record["run_id"] and run.info.status == "FINISHED"
    assert run.data.params["max_len"] == "10" and run.data.tags["seqbench.status"] == "completed"
    epochs = RunStore(results).epochs(record["run_id"])
    history = client.get_metric_history(run.info.run_id, "valid_NDCG_at_10")
    history = sorted(history, key=lambda m: m.step)
    assert [m.step for m in history] == epochs["epoch"].tolist()
    assert [m.value for m in history] == pytest.approx(epochs["valid_NDCG@10"].tolist())
    assert run.data.metrics["final_test_NDCG_at_10"] == pytest.approx(record["metrics"]["test"]["NDCG@10"])
    artifact = Path(client.download_artifacts(run.info.run_id, "seqbench_run.json", str(tmp_path)))
    assert json.loads(artifact.read_text()) == record
    grid = cli("compare", "--datasets", "toy", "--seeds", "0", "--models", "gru4rec", "--losses", "bce,cce", "--epochs", "1", "--quiet", *args)
    assert grid.exit_code == 0, grid.output
    names = sorted(r.info.run_name for r in client.search_runs([experiment.experiment_id]))
    assert len(names) == 3 and set(names) <= set(RunStore(results).run_ids())


@pytest.mark.parametrize(("args", "message"), [
    (["--executor", "bogus"], "unknown executor 'bogus'"),
    (["--jobs", "0"], "--jobs must be >= 1"),
    (["--executor", "ray", "--jobs", "2"], "--jobs is for the local executor"),
])
def test_tune_execution_options_refuse_bad_input_in_one_line_through_the_entry_point(tmp_path: Path, args: list[str], message: str) -> None:
    pytest.importorskip("optuna")
    result = piped("tune", "--dataset", "synthetic", "--trials", "1", "--results", str(tmp_path / "r"), *args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "r" / "studies").exists()
