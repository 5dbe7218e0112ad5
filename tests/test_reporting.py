"""Reporting: improvement grid, significance, reference table, frontier and renderers on stores
filled with known metrics (no training)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reporting_store import new_store, ranks_run, run_row, write
from scipy import stats

from seqbench.errors import InputError
from seqbench.measure.metrics import hit_rate, ndcg
from seqbench.reporting import (
    frame_records,
    frontier_table,
    improvement_grid,
    pareto_mask,
    reference_table,
    render,
    significance_frame,
)
from seqbench.reporting.reference import paper_csv_path
from seqbench.reporting.runs import METRICS
from seqbench.storage.store import StoredRun

SPEC_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "spec" / "paper_results.csv"


def metrics_of(value: float) -> dict[str, float]:
    """Distinct, known values per metric: value scaled per metric so rows differ."""
    return {m: value * (1 + i / 10) for i, m in enumerate(METRICS)}


@pytest.fixture()
def seeded(tmp_path):
    """lastfm x {gru4rec, sasrec} x {bce, ce, cce} x 3 seeds with known metrics, plus noise runs."""
    store = new_store(tmp_path)
    base = {"bce": 0.10, "ce": 0.20, "cce": 0.25}
    values: dict[tuple, list[float]] = {}
    for m, model in enumerate(["gru4rec", "sasrec"]):
        for loss, level in base.items():
            for seed in range(3):
                value = level + 0.01 * seed + 0.05 * m
                values.setdefault((model, loss), []).append(value)
                write(store, run_row(f"{model}-{loss}-{seed}", "lastfm", model, loss, seed, metrics_of(value)))
    # A failed run with absurd metrics must not count anywhere.
    write(store, run_row("failed", "lastfm", "sasrec", "bce", 7, metrics_of(0.99), status="failed"))
    return store, values


# --- the grid ----------------------------------------------------------------------------------
def test_grid_shape_and_numbers_match_stored_runs(seeded):
    store, values = seeded
    grid = improvement_grid(store.table(), store)
    assert grid.columns == {"gru4rec": ["bce", "ce", "cce"], "sasrec": ["bce", "ce", "cce"]}
    assert len(grid.cells) == 2 * 3 * len(METRICS)
    for (model, loss), seeds in values.items():
        for i, metric in enumerate(METRICS):
            cell = grid.cells.set_index(["model", "loss", "metric"]).loc[(model, loss, metric)]
            expected = np.array(seeds) * (1 + i / 10)
            assert cell["mean"] == pytest.approx(expected.mean())
            assert cell["std"] == pytest.approx(expected.std(ddof=1))
            assert cell["n_seeds"] == 3
    display = grid.display()
    assert len(display.rows) == len(METRICS)  # one data set
    assert [len(names) for _, names in display.groups] == [4, 4]  # three losses + Improve.
    assert "±" in display.rows[0][1][0].text
    text = render(grid, "text")  # nothing cropped or wrapped: every cell appears whole
    assert all(cell.text in text for _, cells in display.rows for cell in cells)


def test_improve_and_bold_follow_the_definition(tmp_path):
    store = new_store(tmp_path)
    # gru4rec: cce best; sasrec: bce best, so Improve. is negative and bold sits on bce.
    known = {("gru4rec", "bce"): 0.20, ("gru4rec", "ce"): 0.25, ("gru4rec", "cce"): 0.30,
             ("sasrec", "bce"): 0.40, ("sasrec", "ce"): 0.30, ("sasrec", "cce"): 0.35}
    for (model, loss), value in known.items():
        write(store, run_row(f"{model}-{loss}", "beauty", model, loss, 0, {m: value for m in METRICS}))
    grid = improvement_grid(store.table(), store)
    improve = grid.improvements.set_index(["model", "metric"])
    assert improve.loc[("gru4rec", "HR@10"), "improve"] == pytest.approx((0.30 - 0.25) / 0.25)
    assert improve.loc[("gru4rec", "HR@10"), "best_baseline"] == "ce"
    assert improve.loc[("sasrec", "NDCG@5"), "improve"] == pytest.approx((0.35 - 0.40) / 0.40)
    best = grid.cells[grid.cells["best"]].set_index(["model", "metric"])["loss"]
    assert set(best.xs("gru4rec")) == {"cce"} and set(best.xs("sasrec")) == {"bce"}
    markdown = render(grid, "markdown")
    assert "**0.3000**" in markdown and "**0.4000**" in markdown and "**0.3500**" not in markdown
    assert "+20.00%" in markdown and "-12.50%" in markdown


def test_ties_are_all_bold_and_explicit_baselines_limit_the_columns(tmp_path):
    store = new_store(tmp_path)
    for loss, value in {"bce": 0.3, "ce": 0.1, "cce": 0.3}.items():
        write(store, run_row(loss, "toys", "gru4rec", loss, 0, {m: value for m in METRICS}))
    grid = improvement_grid(store.table(), store)
    assert set(grid.cells.loc[grid.cells["best"], "loss"]) == {"bce", "cce"}
    only_ce = improvement_grid(store.table(), store, baselines=["ce"])
    assert only_ce.columns == {"gru4rec": ["ce", "cce"]}
    assert only_ce.improvements["improve"].iloc[0] == pytest.approx((0.3 - 0.1) / 0.1)
    other = improvement_grid(store.table(), store, proposed="bce")
    assert other.improvements["best_baseline"].iloc[0] == "cce"


def test_welch_option_matches_scipy_and_marks_after_holm(tmp_path):
    store = new_store(tmp_path)
    rng = np.random.default_rng(3)
    samples = {"cce": 0.30 + 0.002 * rng.standard_normal(5), "ce": 0.20 + 0.004 * rng.standard_normal(5),
               "bce": 0.10 + 0.01 * rng.standard_normal(5)}
    for loss, seeds in samples.items():
        for seed, value in enumerate(seeds):
            write(store, run_row(f"{loss}-{seed}", "yelp", "sasrec", loss, seed, {m: value for m in METRICS}))
    grid = improvement_grid(store.table(), store, test="welch")
    row = grid.improvements.set_index("metric").loc["NDCG@10"]
    expected = stats.ttest_ind(samples["cce"], samples["ce"], equal_var=False)
    assert row["test"] == "welch" and row["best_baseline"] == "ce"
    assert row["p_value"] == pytest.approx(expected.pvalue, rel=1e-9)
    # Six comparisons with equal p-values: Holm multiplies each by six.
    assert row["p_adjusted"] == pytest.approx(min(1.0, 6 * expected.pvalue), rel=1e-9)
    assert row["direction"] == 1
    interval = expected.confidence_interval(0.95)
    assert row["improve_low"] == pytest.approx(interval.low / samples["ce"].mean(), rel=1e-9)
    assert "%]▲" in render(grid, "text")


def test_welch_not_significant_without_marker(tmp_path):
    store = new_store(tmp_path)
    samples = {"cce": [0.30, 0.20, 0.25], "ce": [0.26, 0.22, 0.21]}
    for loss, seeds in samples.items():
        for seed, value in enumerate(seeds):
            write(store, run_row(f"{loss}-{seed}", "yelp", "sasrec", loss, seed, {m: value for m in METRICS}))
    grid = improvement_grid(store.table(), store)  # no ranks stored: Welch over the seeds' metrics
    expected = stats.ttest_ind(samples["cce"], samples["ce"], equal_var=False).pvalue
    assert grid.improvements["p_value"].to_numpy() == pytest.approx(np.full(len(METRICS), expected))
    assert (grid.improvements["direction"] == 0).all()
    markdown = render(grid, "markdown")
    assert "]▲" not in markdown and "]▼" not in markdown
    assert "Welch" in markdown  # the legend names the test actually used (no ranks: Welch)
    assert "3 seeds per cell" in markdown


def test_one_seed_tests_cover_users_only_and_say_so(tmp_path):
    store = new_store(tmp_path)
    rng = np.random.default_rng(0)
    ranks = {"cce": rng.geometric(0.15, 400) - 1, "ce": rng.geometric(0.08, 400) - 1, "bce": rng.geometric(0.02, 400) - 1}
    for loss, values in ranks.items():
        ranks_run(store, loss, "beauty", "gru4rec", loss, values)
    # Store the best baseline's users in another order: pairing must be by user id, not position.
    row = store.row("ce")
    order = rng.permutation(400)
    shuffled = pd.DataFrame({"split": "test", "user": order.astype(np.int64), "rank": ranks["ce"][order].astype(np.int64)})
    store.write(StoredRun("ce", row, store.epochs("ce"), shuffled))
    expected = stats.ttest_rel(ndcg(ranks["cce"], 10), ndcg(ranks["ce"], 10))
    for test in ("hierarchical", "paired"):  # with one seed the default reduces to the paired test
        grid = improvement_grid(store.table(), store, test=test)
        table = grid.improvements.set_index("metric")
        assert table.loc["NDCG@10", "covers"] == "users"
        assert table.loc["NDCG@10", "p_value"] == pytest.approx(expected.pvalue, rel=1e-6)
    hr = stats.ttest_rel(hit_rate(ranks["cce"], 5), hit_rate(ranks["ce"], 5))
    assert table.loc["HR@5", "p_value"] == pytest.approx(hr.pvalue, rel=1e-9)
    # Stored metrics came from the same ranks: the grid's cell is the mean per-user NDCG@10, and
    # its interval is a bootstrap over users (marked).
    cell = grid.cells.set_index(["loss", "metric"]).loc[("cce", "NDCG@10")]
    assert cell["mean"] == pytest.approx(ndcg(ranks["cce"], 10).mean())
    assert cell["interval"] == "users" and cell["low"] < cell["mean"] < cell["high"]
    text = render(grid, "text")
    assert "†" in text and "user sampling only" in text


def test_no_test_without_ranks_and_one_seed(tmp_path):
    store = new_store(tmp_path)
    for loss, value in {"ce": 0.2, "cce": 0.3}.items():
        write(store, run_row(loss, "beauty", "sasrec", loss, 0, {m: value for m in METRICS}))
    grid = improvement_grid(store.table(), store)
    assert grid.improvements["p_value"].isna().all() and (grid.improvements["direction"] == 0).all()


def test_failed_runs_duplicates_and_variants(tmp_path):
    store = new_store(tmp_path)
    write(store, run_row("cce-dense", "lastfm", "sasrec", "cce", 0, {m: 0.3 for m in METRICS}))
    write(store, run_row("cce-chunked", "lastfm", "sasrec", "cce", 0, {m: 0.3 for m in METRICS},
                         ce_impl="chunked", loss_params={"ce_impl": "chunked"}))
    for k, value in ((64, 0.1), (256, 0.2)):
        write(store, run_row(f"s{k}", "lastfm", "sasrec", "sampled-ce", 0, {m: value for m in METRICS},
                             loss_params={"num_negatives": k}))
    write(store, run_row("bad", "lastfm", "sasrec", "ce", 0, {m: 0.9 for m in METRICS}, status="interrupted"))
    grid = improvement_grid(store.table(), store)
    assert grid.columns["sasrec"] == ["sampled-ce[num_negatives=256]", "sampled-ce[num_negatives=64]", "cce"]
    assert (grid.cells.loc[grid.cells["loss"] == "cce", "n_seeds"] == 1).all()  # dense + chunked = one seed
    assert grid.improvements["best_baseline"].iloc[0] == "sampled-ce[num_negatives=256]"
    assert "ce" not in set(grid.cells["loss"])  # only an interrupted run


def test_grid_bad_input(tmp_path):
    store = new_store(tmp_path)
    with pytest.raises(InputError, match="no stored runs"):
        improvement_grid(store.table(), store)
    write(store, run_row("x", "lastfm", "sasrec", "ce", 0, {m: 0.1 for m in METRICS}, status="failed"))
    with pytest.raises(InputError, match="no completed runs"):
        improvement_grid(store.table(), store)
    write(store, run_row("y", "lastfm", "sasrec", "bce", 0, {m: 0.1 for m in METRICS}))
    write(store, run_row("z", "lastfm", "sasrec", "ce", 1, {m: 0.2 for m in METRICS}))
    grid = improvement_grid(store.table(), store)  # no cce: a grid without Improve. numbers, and a note
    assert grid.improvements.empty and any("proposed" in note for note in grid.notes)
    assert "Improve." in render(grid, "text")


# --- significance table and JSON --------------------------------------------------------------
def test_records_are_json_and_significance_frame_renders(seeded):
    store, _ = seeded
    grid = improvement_grid(store.table(), store)
    text = json.dumps({"grid": grid.records(), "frontier": frame_records(frontier_table(store.table()))}, allow_nan=False)
    rows = json.loads(text)["grid"]
    assert len(rows) == len(grid.cells) + len(grid.improvements)
    assert {r["loss"] for r in rows} == {"bce", "ce", "cce", "Improve."}
    assert "welch" in render(significance_frame(grid), "text")


# --- the frontier -------------------------------------------------------------------------------
def brute_force(memory: list[float], score: list[float]) -> list[bool]:
    def dominated(i: int) -> bool:
        return any(memory[j] <= memory[i] and score[j] >= score[i] and (memory[j] < memory[i] or score[j] > score[i])
                   for j in range(len(memory)))
    return [not dominated(i) for i in range(len(memory))]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.integers(0, 8)), min_size=1, max_size=30))
def test_pareto_mask_is_exactly_the_non_dominated_set(points):
    memory, score = [float(m) for m, _ in points], [s / 8 for _, s in points]
    assert pareto_mask(np.array(memory), np.array(score)).tolist() == brute_force(memory, score)


def test_frontier_table_per_dataset_matches_brute_force(tmp_path):
    store = new_store(tmp_path)
    rng = np.random.default_rng(1)
    for i in range(24):
        dataset = "beauty" if i % 2 else "lastfm"
        loss = ["bce", "ce", "cce"][i % 3]
        write(store, run_row(f"r{i}", dataset, "sasrec", loss, i, {"NDCG@10": float(rng.integers(0, 6)) / 10},
                             memory=int(rng.integers(1, 6)) * 2**20, ce_impl="chunked" if loss == "cce" and i % 4 == 1 else ""))
    write(store, run_row("failed", "lastfm", "sasrec", "ce", 99, {"NDCG@10": 1.0}, memory=1, status="failed"))
    table = frontier_table(store.table())
    assert len(table) == 24 and "failed" not in set(table["run_id"])
    for _, group in table.groupby("dataset"):
        expected = brute_force(group["peak_memory_bytes"].tolist(), group["test_NDCG@10"].tolist())
        assert group["on_frontier"].tolist() == expected
    assert "cce[chunked]" in set(table["loss"])
    assert table.groupby("dataset")["peak_memory_bytes"].apply(lambda s: s.is_monotonic_increasing).all()


def test_frontier_names_the_setting_of_a_sweep(tmp_path):
    # Two runs of one (model, loss, seed) that differ in patience are two points, each with its setting.
    store = new_store(tmp_path)
    for patience, value in ((10, 0.2), (40, 0.3)):
        row = run_row(f"p{patience}", "lastfm", "sasrec", "bce", 0, {"NDCG@10": value})
        row["config_json"] = json.dumps({"patience": patience})
        write(store, row)
    table = frontier_table(store.table())
    assert "setting" in table.columns
    assert dict(zip(table["setting"], table["test_NDCG@10"])) == {"patience=10": 0.2, "patience=40": 0.3}
    plain = frontier_table(store.table().query("run_id == 'p10'"))
    assert "setting" not in plain.columns  # one config: no setting column


# --- the reference table --------------------------------------------------------------------------
def test_packaged_paper_csv_is_the_spec_copy():
    if not SPEC_CSV.is_file():
        pytest.skip("shared spec not present")
    assert paper_csv_path().read_bytes() == SPEC_CSV.read_bytes()


def test_reference_matches_csv_and_shows_missing_rows(tmp_path):
    store = new_store(tmp_path)
    write(store, run_row("g-ce", "lastfm", "gru4rec", "ce", 0, metrics_of(0.05)))
    write(store, run_row("g-ce1", "lastfm", "gru4rec", "ce", 1, metrics_of(0.07)))
    write(store, run_row("g-sce", "lastfm", "gru4rec", "sampled-ce", 0, metrics_of(0.04)))
    paper = pd.read_csv(paper_csv_path())
    li = paper[(paper["source"] == "li2023_cce_table2") & (paper["dataset"] == "LastFM")]
    table = reference_table(store.table())
    assert set(table["dataset"]) == {"lastfm"}
    both = table[table["status"] == "both"].set_index(["model", "loss", "metric"])
    assert len(both) == len(METRICS)
    for i, metric in enumerate(METRICS):
        published = li[(li["model"] == "GRU4Rec") & (li["loss"] == "ce") & (li["metric"] == metric)]["value"].item()
        reproduced = 0.06 * (1 + i / 10)
        assert both.loc[("gru4rec", "ce", metric), "published"] == published
        assert both.loc[("gru4rec", "ce", metric), "reproduced"] == pytest.approx(reproduced)
        assert both.loc[("gru4rec", "ce", metric), "rel_diff"] == pytest.approx((reproduced - published) / published)
    missing_ours = table[table["status"] == "not reproduced"]
    assert len(missing_ours) == len(li) - len(METRICS) and missing_ours["reproduced"].isna().all()
    assert {"s3rec", "sasrec", "gru4rec"} == set(missing_ours["model"])
    missing_paper = table[table["status"] == "not published"]
    assert set(missing_paper["loss"]) == {"sampled-ce"} and missing_paper["published"].isna().all()
    assert "not reproduced" in render(table, "text")


def test_reference_other_source_scopes_and_bad_source(tmp_path):
    store = new_store(tmp_path)
    write(store, run_row("y", "yelp", "sasrec", "cce", 0, metrics_of(0.04)))
    table = reference_table(store.table(), source="xu2024_table5")
    llama = table[table["model"] == "llamarec"]
    assert len(llama) == 4 and set(llama["loss"]) == {"-"} and (llama["status"] == "not reproduced").all()
    ours = table[(table["model"] == "sasrec") & (table["loss"] == "cce")]
    assert ours.set_index("metric").loc["NDCG@10", "published"] == 0.0415
    assert ours["status"].eq("not published").sum() == 2  # HR@20/NDCG@20 are not in Table 5
    only_runs = reference_table(store.table(), source="xu2024_table5", scope="runs")
    assert set(only_runs["model"]) == {"sasrec"}
    assert len(reference_table(store.table(), scope="all")) >= 270
    with pytest.raises(InputError, match="unknown reference source"):
        reference_table(store.table(), source="nope")


# --- formats ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["text", "markdown", "latex", "csv"])
def test_every_format_renders_every_table(seeded, fmt):
    store, _ = seeded
    runs = store.table()
    grid = improvement_grid(runs, store)
    for table in (grid, reference_table(runs), frontier_table(runs)):
        out = render(table, fmt)
        assert out.strip()
        has_bold = table is grid or "bold_where" in table.attrs  # the reference table bolds nothing
        if fmt == "markdown":
            assert "|" in out and ("| **0." in out) == has_bold
        if fmt == "latex":
            assert r"\begin{tabular}" in out and r"\bottomrule" in out and (r"\textbf{0." in out) == has_bold
        if fmt == "csv":
            assert "**" not in out and r"\textbf" not in out
            assert len(pd.read_csv(io.StringIO(out))) == (len(grid.tidy()) if table is grid else len(table))
    if fmt == "latex":
        assert r"\multicolumn{4}{c}{GRU4Rec}" in render(grid, "latex")


def test_unknown_format_and_latex_escaping(seeded):
    store, _ = seeded
    with pytest.raises(InputError, match="unknown format"):
        render(frontier_table(store.table()), "html")
    out = render(reference_table(store.table()), "latex")
    assert r"\%" in out and "rel\\_diff" in out
