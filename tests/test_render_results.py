"""benchmarks/render_results.py renders the stored numbers, not something else."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _stat(values):
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return {"mean": mean, "std": std, "n": len(values), "values": values}


CENSUS_OPTIMIZERS = {
    "config": {"methods": ["pub"]},
    "summary": {
        "MMoE": {
            "ew": {"seeds": [0, 1], "test_auc": {"income": _stat([0.90, 0.92]), "married": _stat([0.80, 0.82])}},
            "pub": {
                "seeds": [0, 1],
                "test_auc": {"income": _stat([0.93, 0.95]), "married": _stat([0.79, 0.79])},
                "paired_gain_vs_ew": {"seeds": [0, 1], "income": _stat([0.03, 0.03]), "married": _stat([-0.01, -0.03])},
            },
        }
    },
}


@pytest.fixture(scope="module")
def render_results():
    spec = importlib.util.spec_from_file_location("render_results", ROOT / "benchmarks" / "render_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_page_holds_the_json_numbers_and_plots(render_results, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for name in ("census_baselines.json", "optimizer_synthetic_8epochs.json"):
        if not (RESULTS / name).exists():
            pytest.skip(f"{name} is not in benchmarks/results")
        shutil.copy(RESULTS / name, results / name)
    (results / "toy_scaling.json").write_text(
        json.dumps({"benchmark": "toy_scaling", "rows": [{"n": 10, "seconds": 0.5}, {"n": 100000, "seconds": 4.25}]})
    )
    (results / "census_optimizers.json").write_text(json.dumps({"benchmark": "census_optimizers", **CENSUS_OPTIMIZERS}))
    (results / "toy_quick.json").write_text(json.dumps({"benchmark": "toy", "config": {"quick": True}}))
    out, img = tmp_path / "docs" / "page.md", tmp_path / "docs" / "img"
    out.parent.mkdir()
    render_results.render(results, out, img)
    page = out.read_text()

    census = json.loads((RESULTS / "census_baselines.json").read_text())["models"]["MMoE"]["test_auc"]["income"]
    assert f"| MMoE | {census['mean']:.4f} ± {census['std']:.4f} |" in page
    synthetic = json.loads((RESULTS / "optimizer_synthetic_8epochs.json").read_text())["results"]
    pub = synthetic["0.0"]["pub"]["mean_auc_minus_adam"]["mean"]
    assert f"{pub:+.4f}" in page
    # Generic rendering of an unknown benchmark; smoke runs are listed, not rendered.
    assert "| n | seconds |" in page and "| 100,000 | 4.25 |" in page
    assert "not rendered: `toy_quick.json`" in page
    assert "| ew | 2 | 0.9100 ± 0.0141 | 0.8100 ± 0.0141 | – | – | – |" in page
    assert "| pub | 2 | 0.9400 ± 0.0141 | 0.7900 ± 0.0000 | +0.0300 | -0.0200 | – |" in page
    pngs = ("census_baselines_tradeoff", "census_baselines_curves", "optimizer_synthetic_8epochs_tradeoff")
    for png in (*pngs, "census_optimizers_tradeoff"):
        assert (img / f"{png}.png").stat().st_size > 1000
        assert f"](img/{png}.png)" in page


def test_throughput_page_shows_every_cell_and_its_ratios(render_results, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    rates = {"ours": _stat([100.0, 120.0]), "plain": _stat([110.0, 110.0]), "rechub": _stat([40.0, 50.0])}
    cell = {
        "model": "mmoe",
        "configuration": "rechub",
        "samples_per_second": {"fit": rates, "predict": rates},
        "ratios_median_of_rounds": {"fit ours/rechub": 2.45, "fit ours/plain": 0.99, "predict ours/rechub": 8.5},
    }
    data = {
        "benchmark": "throughput_census",
        "configurations": {"rechub": {"description": "the peer's own example"}},
        "config": {"rows": 1000, "rounds": 2},
        "cells": [cell],
    }
    (results / "throughput_census.json").write_text(json.dumps(data))
    out, img = tmp_path / "page.md", tmp_path / "img"
    render_results.render(results, out, img)
    page = out.read_text()
    assert "`rechub`: the peer's own example" in page
    assert "| model | configuration | phase | ours | plain | rechub | ours/plain | ours/rechub |" in page
    assert "| mmoe | rechub | fit | 110 ± 14 | 110 ± 0 | 45 ± 7 | 0.99 | 2.45 |" in page
    assert "| mmoe | rechub | predict | 110 ± 14 | 110 ± 0 | 45 ± 7 | – | 8.50 |" in page
    assert (img / "throughput_census_ratios.png").stat().st_size > 1000


def test_vs_sklearn_table_has_auc_paired_delta_fit_ratio_and_null_control(render_results, tmp_path):
    results = tmp_path / "results"
    results.mkdir()

    def delta(values, ci):
        return {**_stat(values), "ci95": ci}

    data = {
        "benchmark": "vs_sklearn",
        "config": {"seeds": [0, 1], "max_train_rows": 5000},
        "datasets": {
            "toy": {
                "description": "a toy data set",
                "tasks": ["click", "buy"],
                "rows": {"train": 5000, "test": 1000},
                "baseline_label": "HGB, one per task",
                "null_control_label": "HGB with another seed",
                "skipped": {"ESMM": "tasks are not nested"},
                "baseline": {
                    "auc": {"click": _stat([0.80, 0.82]), "buy": _stat([0.70, 0.70])},
                    "fit_seconds": _stat([2.0, 2.0]),
                },
                "models": {
                    "MMoE": {
                        "auc": {"click": _stat([0.83, 0.85]), "buy": _stat([0.69, 0.71])},
                        "delta_vs_baseline": {
                            "click": delta([0.03, 0.03], [0.03, 0.03]),
                            "buy": delta([-0.01, 0.01], [-0.1371, 0.1371]),
                        },
                        "fit_seconds": _stat([8.0, 10.0]),
                        "fit_time_ratio": 4.5,
                    }
                },
                "null_control": {
                    "auc": {"click": _stat([0.80, 0.82]), "buy": _stat([0.70, 0.70])},
                    "delta_vs_baseline": {"click": delta([0.0, 0.0], [0.0, 0.0]), "buy": delta([0.0, 0.0], [0.0, 0.0])},
                    "fit_seconds": _stat([2.0, 2.0]),
                    "fit_time_ratio": 1.0,
                },
            }
        },
    }
    (results / "vs_sklearn.json").write_text(json.dumps(data))
    (results / "vs_sklearn_quick.json").write_text(json.dumps({**data, "config": {"quick": True}}))
    out, img = tmp_path / "page.md", tmp_path / "img"
    render_results.render(results, out, img)
    page = out.read_text()
    assert "## Defaults against scikit-learn baselines" in page and "### toy" in page
    header = (
        "| model | click AUC | click Δ vs baseline [95 % CI] | buy AUC | buy Δ vs baseline [95 % CI] "
        "| fit s | fit time ÷ baseline |"
    )
    assert header in page
    baseline = (
        "| scikit-learn baseline | 0.8100 ± 0.0141 | (reference) | 0.7000 ± 0.0000 | (reference) | 2.0 ± 0.0 | 1 |"
    )
    assert baseline in page
    assert (
        "| MMoE | 0.8400 ± 0.0141 | +0.0300 [+0.0300, +0.0300] | 0.7000 ± 0.0141 | +0.0000 [-0.1371, +0.1371] "
        "| 9.0 ± 1.4 | 4.50× |"
    ) in page
    assert "| *null control: baseline vs itself* | 0.8100 ± 0.0141 | +0.0000 [+0.0000, +0.0000] |" in page
    assert "- ESMM skipped: tasks are not nested." in page
    assert "not rendered: `vs_sklearn_quick.json`" in page


def test_numeric_encoding_and_defaults_grid_tables_show_paired_intervals(render_results, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    runs = [{"seed": 0, "epochs_trained": 4}, {"seed": 1, "epochs_trained": 6}]
    numeric = {
        "benchmark": "numeric_encoding",
        "config": {"seeds": 2, "max_epochs": 6, "patience": 2},
        "tasks": ["income"],
        "models": {
            "MMoEClassifier": {
                "standard": {"test_auc": {"income": _stat([0.951, 0.953])}, "paired_difference": None},
                "piecewise-32": {
                    "test_auc": {"income": _stat([0.954, 0.956])},
                    "paired_difference": {"income": {"mean": 0.0035, "low": 0.0011, "high": 0.0059, "n": 2}},
                    "paired_vs": "standard",
                },
                "control": {
                    "test_auc": {"income": _stat([0.955, 0.955])},
                    "paired_difference": {"income": {"mean": -0.0005, "low": -0.0010, "high": 0.0000, "n": 2}},
                    "paired_vs": "piecewise-32",
                },
            }
        },
    }
    grid = {
        "benchmark": "defaults_grid_census",
        "config": {"seeds": 2, "max_epochs": 12, "patience": 2},
        "description": "Census",
        "tasks": ["income"],
        "models": {
            "MMoEClassifier": {
                "best_grid_point": "lr=0.003 batch=1024 wd=0",
                "points": {
                    "lr=0.003 batch=1024 wd=0": {"test_auc": {"income": _stat([0.956, 0.958])}, "runs": runs},
                    "default": {
                        "test_auc": {"income": _stat([0.955, 0.957])},
                        "runs": runs,
                        "paired_vs_best": {"income": {"mean": -0.001, "low": -0.003, "high": 0.001, "n": 2}},
                    },
                },
            }
        },
    }
    (results / "numeric_encoding.json").write_text(json.dumps(numeric))
    (results / "defaults_grid_census.json").write_text(json.dumps(grid))
    out = tmp_path / "page.md"
    render_results.render(results, out, tmp_path / "img")
    page = out.read_text()
    assert "## Numeric encodings on Census-Income" in page
    assert "| MMoEClassifier | piecewise-32 | 0.9550 ± 0.0014 | +0.0035 [+0.0011, +0.0059] |" in page
    assert "| MMoEClassifier | control (vs piecewise-32) | 0.9550 ± 0.0000 | -0.0005 [-0.0010, +0.0000] |" in page
    assert "## Training defaults: a small grid against the default fit (census)" in page
    assert "| MMoEClassifier | lr=0.003 batch=1024 wd=0 (best) | 0.9570 ± 0.0014 | – | 4, 6 |" in page
    assert "| MMoEClassifier | default | 0.9560 ± 0.0014 | -0.0010 [-0.0030, +0.0010] | 4, 6 |" in page


def test_variant_tables_show_the_reference_and_paired_intervals(render_results, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    variant = {"auc": {"recommended": _stat([0.944, 0.946])}, "epochs": _stat([5, 7]), "fit_seconds": _stat([10, 12])}
    deep = {
        "benchmark": "text_deep_min_df",
        "config": {"model": "MMoE", "seeds": 2, "protocol": "Text: which terms get a deep vector.\n\nMore."},
        "datasets": {
            "clothing": {
                "tasks": ["recommended"],
                "reference": "min_df=100",
                "variants": {
                    "min_df=1": {
                        **variant,
                        "delta_vs_min_df=100": {"recommended": {"mean": -0.002, "ci95": [-0.004, 0.0], "n": 2}},
                    },
                    "min_df=100": variant,
                },
            }
        },
    }
    (results / "text_deep_min_df.json").write_text(json.dumps(deep))
    out = tmp_path / "page.md"
    render_results.render(results, out, tmp_path / "img")
    page = out.read_text()
    assert "## Text and sparse X: which terms get a deep vector" in page
    assert "Text: which terms get a deep vector. Model: MMoE; 2 seed(s)" in page
    assert "| min_df=1 | 0.9450 ± 0.0014 | -0.0020 [-0.0040, +0.0000] | 6.0 ± 1.4 | 11.0 ± 1.4 |" in page
    assert "| min_df=100 (reference) | 0.9450 ± 0.0014 | (reference) |" in page
