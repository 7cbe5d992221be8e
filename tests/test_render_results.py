"""benchmarks/render_results.py renders the stored numbers, not something else."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _stat(values):
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
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


def render_one(module, tmp_path, name: str, data: dict) -> str:
    """The page rendered from one result file ``name.json`` holding ``data``."""
    results = tmp_path / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(data))
    out = tmp_path / "page.md"
    module.render(results, out, tmp_path / "img")
    return out.read_text()


def test_page_holds_the_json_numbers_and_plots(render_results, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    for name in ("census_baselines.json", "optimizer_synthetic_8epochs.json"):
        if not (RESULTS / name).exists():
            pytest.skip(f"{name} is not in benchmarks/results")
        shutil.copy(RESULTS / name, results / name)
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
    assert f"| pub | {synthetic['-0.5']['pub']['mean_auc_minus_adam']['mean']:+.4f} [" in page
    assert f" | {pub:+.4f} [" in page
    # smoke runs are listed, not rendered
    assert "not rendered: `toy_quick.json`" in page
    assert (
        "| method | seeds | income AUC | married AUC | Δ income vs ew [95 % CI] | Δ married vs ew [95 % CI] |" in page
    )
    assert "| ew | 2 | 0.9100 ± 0.0141 | 0.8100 ± 0.0141 | (reference) | (reference) | – |" in page
    # paired gains: the t-interval of 2 seeds (t = 12.71): -0.02 ± 12.71 * 0.0141 / sqrt(2)
    assert (
        "| pub | 2 | 0.9400 ± 0.0141 | 0.7900 ± 0.0000 | +0.0300 [+0.0300, +0.0300] | -0.0200 [-0.1471, +0.1071] |"
        in page
    )
    pngs = ("census_baselines_tradeoff", "census_baselines_curves", "optimizer_synthetic_8epochs_tradeoff")
    for png in (*pngs, "census_optimizers_tradeoff"):
        assert (img / f"{png}.png").stat().st_size > 1000
        assert f"](img/{png}.png)" in page


def test_a_result_without_a_declared_renderer_stops_the_rendering(render_results, tmp_path):
    data = {"benchmark": "toy_scaling", "rows": [{"n": 10, "seconds": 0.5}]}
    with pytest.raises(ValueError, match=r"no table layout is declared for toy_scaling\.json"):
        render_one(render_results, tmp_path, "toy_scaling", data)


def test_every_stored_result_has_a_declared_renderer(render_results):
    stored = sorted(RESULTS.glob("*.json"))
    undeclared = [
        p.name for p in stored if render_results.renderer_of(json.loads(p.read_text()).get("benchmark", p.stem)) is None
    ]
    assert not undeclared
    assert "render_generic" not in vars(render_results)  # no JSON walker to fall back on


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
    assert "Text: which terms get a deep vector. Model: MMoE; 2 seed(s) requested" in page
    assert "| variant | seeds | recommended AUC | recommended Δ [95 % CI] | epochs | fit s |" in page
    assert "| min_df=1 | 2 | 0.9450 ± 0.0014 | -0.0020 [-0.0040, +0.0000] | 6.0 ± 1.4 | 11.0 ± 1.4 |" in page
    assert "| min_df=100 (reference) | 2 | 0.9450 ± 0.0014 | (reference) |" in page
    assert "the control row is a no-op" not in page  # no control variant in this file
    assert "‡" not in page


def test_variant_rows_measured_before_are_marked_and_seeds_are_those_run(render_results, tmp_path):
    earlier = {
        "auc": {"income": _stat([0.95, 0.96, 0.97])},
        "runs": [{"seed": s, "measured_before": True} for s in (0, 1, 2)],
    }
    data = {
        "benchmark": "weight_averaging_census",
        "config": {"model": "ResFlow", "seeds": 5, "protocol": "EMA or none."},
        "datasets": {
            "census · ResFlow": {
                "tasks": ["income"],
                "reference": "none",
                "variants": {
                    "none": earlier,
                    "ema-1": {
                        "auc": {"income": _stat([0.96, 0.97])},
                        "delta_vs_none": {"income": {"mean": 0.001, "ci95": None, "n": 1}},
                    },
                    "control": {
                        "auc": {"income": _stat([0.95, 0.96])},
                        "delta_vs_none": {"income": {"mean": 0.0, "ci95": [-0.001, 0.001], "n": 2}},
                    },
                },
            }
        },
    }
    page = render_one(render_results, tmp_path, "weight_averaging_census", data)
    assert "## Weight averaging of a default fit (ema_epochs) (census)" in page
    assert "5 seed(s) requested" in page and "the control row is a no-op" in page
    assert "| none (reference) ‡ | 3 | 0.9600 ± 0.0100 | (reference) | – | – |" in page
    assert "| ema-1 | 2 | 0.9650 ± 0.0071 | +0.0010 (n=1, no interval) |" in page
    assert "‡ runs taken from an earlier measurement" in page


def test_variant_tables_pair_with_the_baseline_when_the_file_has_one(render_results, tmp_path):
    ema = {
        "auc": {"income": _stat([0.955, 0.956])},
        "delta_vs_none": {"income": {"mean": 0.001, "ci95": [0.0, 0.002], "n": 2}},
        "delta_vs_baseline": {"income": {"mean": 0.0004, "ci95": [-0.0001, 0.0009], "n": 2}},
    }
    none = {"auc": {"income": _stat([0.954, 0.955])}, "delta_vs_baseline": {"income": {"mean": -0.0007}}}
    data = {
        "benchmark": "weight_averaging_census",
        "config": {"model": "SharedBottom", "seeds": 2, "protocol": "EMA or none."},
        "datasets": {
            "census · SharedBottom": {
                "tasks": ["income"],
                "reference": "none",
                "baseline": {"label": "HGB per task", "auc": {"income": _stat([0.9545, 0.9547])}},
                "variants": {"none": none, "ema-1": ema},
            }
        },
    }
    page = render_one(render_results, tmp_path, "weight_averaging_census", data)
    assert "| variant | seeds | income AUC | income Δ [95 % CI] | income Δ vs baseline [95 % CI] | epochs |" in page
    assert "| ema-1 | 2 | 0.9555 ± 0.0007 | +0.0010 [+0.0000, +0.0020] | +0.0004 [-0.0001, +0.0009] |" in page
    assert "Baseline (HGB per task, the same seeds): 0.9546 ± 0.0001." in page


def test_variant_runs_with_a_validation_curve_get_a_curve_table(render_results, tmp_path):
    runs = [
        {"seed": 0, "valid_auc": [0.90 + 0.001 * e for e in range(12)]},
        {"seed": 1, "valid_auc": [0.90, 0.91, 0.92, 0.93, 0.94, 0.935, 0.934]},
        {"seed": 2, "measured_before": True},
    ]
    data = {
        "benchmark": "weight_averaging_census_cap",
        "config": {"model": "OneRank", "seeds": 3, "protocol": "Epochs."},
        "datasets": {
            "census": {
                "tasks": ["income"],
                "reference": "ema-1",
                "variants": {
                    "ema-1": {"auc": {"income": _stat([0.954, 0.955])}, "runs": [{"seed": 0, "measured_before": True}]},
                    "ema-1-max20": {
                        "auc": {"income": _stat([0.955, 0.956])},
                        "runs": runs,
                        "delta_vs_ema-1": {"income": {"mean": 0.0004, "ci95": [0.0, 0.0008], "n": 2}},
                    },
                },
            }
        },
    }
    page = render_one(render_results, tmp_path, "weight_averaging_census_cap", data)
    assert "## OneRank and GRec on Census: 20 epochs or a faster rate (weight_averaging.py)" in page
    assert "| variant | seed | epoch 5 | epoch 10 | highest (epoch) | epochs run |" in page
    assert "| ema-1-max20 | 0 | 0.9040 | 0.9090 | 0.9110 (12) | 12 |" in page
    assert "| ema-1-max20 | 1 | 0.9400 | – | 0.9400 (5) | 7 |" in page
    assert "| ema-1-max20 | 2 |" not in page  # no curve kept for a run measured before


def test_variant_timing_files_render_epoch_seconds_and_ratios(render_results, tmp_path):
    data = {
        "benchmark": "weight_averaging_timing",
        "config": {"timing_rounds": 2},
        "timing": {
            "SharedBottom": {
                "none": {"seconds": [10.0, 12.0], "ratio_to_none": 1.0},
                "ema-1": {"seconds": [10.5, 12.6], "ratio_to_none": 1.05},
            }
        },
    }
    page = render_one(render_results, tmp_path, "weight_averaging_timing", data)
    assert "2 interleaved rounds" in page
    assert "| model | variant | epoch s | ÷ reference |" in page
    assert "| SharedBottom | ema-1 | 11.6 ± 1.5 | 1.05× |" in page


def test_synthetic_methods_table_and_paired_differences_with_adam(render_results, tmp_path):
    def method(mean_auc, delta):
        return {"n_seeds": len(mean_auc), "mean_auc": _stat(mean_auc), "mean_auc_minus_adam": _stat(delta)}

    data = {
        "benchmark": "optimizer_synthetic_toy",
        "config": {"n_tasks": 2, "epochs": 4, "n_train": 1000, "n_test": 500, "seeds": [0, 1, 2], "methods": []},
        "results": {
            "-0.5": {
                "adam": method([0.80, 0.82, 0.84], [0, 0, 0]),
                "pub": method([0.81, 0.84, 0.85], [0.01, 0.02, 0.01]),
            },
            "0.9": {"adam": method([0.90, 0.90, 0.90], [0, 0, 0]), "pub": method([0.91], [0.01])},
        },
        "runs": {c: {m: [{"test_auc": [0.8, 0.9]}] for m in ("adam", "pub")} for c in ("-0.5", "0.9")},
    }
    page = render_one(render_results, tmp_path, "optimizer_synthetic_toy", data)
    # correlations as headers, not "5" / "9"; seed counts; no ± for one seed
    assert "| method | seeds | ρ = -0.5 | ρ = 0.9 |" in page
    assert "| adam | 3 | 0.8200 ± 0.0200 | 0.9000 ± 0.0000 |" in page
    assert "| pub | 1, 3 | 0.8333 ± 0.0208 | 0.9100 |" in page
    # paired with adam: mean 0.0133, half-width t(0.975, 2) * 0.00577 / sqrt(3) = 0.0143
    assert "| method | Δ vs adam, ρ = -0.5 | Δ vs adam, ρ = 0.9 |" in page
    assert "| pub | +0.0133 [-0.0010, +0.0277] | +0.0100 (n=1, no interval) |" in page
    assert "| adam | +0.0000" not in page  # the reference is not compared with itself


def test_drgrad_ablation_table_per_correlation_with_paired_delta_and_merged_fit_seconds(render_results, tmp_path):
    entry = {"task0_auc": _stat([0.9, 0.92]), "task1_auc": _stat([0.8, 0.8]), "final_train_loss": _stat([0.5, 0.7])}
    data = {
        "benchmark": "drgrad_ablation_synthetic",
        "config": {"epochs": 24, "n_train": 2000, "n_test": 1000, "mmoe": {"n_experts": 4}, "lr": 0.001},
        "runs": [
            {"variant": "adam", "corr": 0.9, "seed": 0, "fit_s": 10.0},
            {"variant": "adam", "corr": 0.9, "seed": 1, "fit_seconds": 14.0},  # the other key of newer runs
            {"variant": "tower", "corr": 0.9, "seed": 0, "fit_s": 30.0},
        ],
        "summary": {
            "0.9": {
                "tower": {**entry, "seeds": [0], "mean_auc_minus_adam": _stat([-0.004])},
                "adam": {**entry, "seeds": [0, 1], "mean_auc_minus_adam": _stat([0.0, 0.0])},
            }
        },
    }
    page = render_one(render_results, tmp_path, "drgrad_ablation_synthetic", data)
    assert "### Task correlation ρ = 0.9" in page
    header = "| variant | seeds | task 0 AUC | task 1 AUC | final train loss | Δ mean AUC vs adam [95 % CI] | fit s |"
    assert header in page
    assert "| adam | 2 (0, 1) | 0.9100 ± 0.0141 | 0.8000 ± 0.0000 | 0.6000 ± 0.1414 | (reference) | 12 ± 3 |" in page
    assert (
        "| tower | 1 (0) | 0.9100 ± 0.0141 | 0.8000 ± 0.0000 | 0.6000 ± 0.1414 | -0.0040 (n=1, no interval) | 30 |"
        in page
    )
    assert page.index("| adam |") < page.index("| tower |")  # the reference first


def test_onerank_accuracy_table_pairs_each_model_with_onerank_by_seed(render_results, tmp_path):
    def run(seed, like, gauc):
        return {"seed": seed, "auc": {"like": like}, "best_epoch": seed + 2, "fit_seconds": 10.0, "parameters": 12345}

    def model(runs):
        return {"summary": {"auc": {"like": _stat([r["auc"]["like"] for r in runs])}}, "runs": runs}

    data = {
        "benchmark": "onerank_accuracy",
        "description": "OneRank vs the others.\n\nMore text.",
        "parts": [{"name": "part_a"}, {"name": "part_b"}],
        "datasets": {
            "toy": {
                "description": "a toy",
                "tasks": ["like"],
                "models": {
                    "OneRank": model([run(0, 0.70, 0), run(1, 0.72, 0)]),
                    "MMoE": model([run(1, 0.74, 0), run(0, 0.71, 0)]),  # seed order differs: paired by seed
                },
            }
        },
    }
    page = render_one(render_results, tmp_path, "onerank_accuracy", data)
    assert "Merged from the runs `part_a`, `part_b`." in page and "| name |" not in page
    assert "| model | seeds | like AUC | Δ like AUC vs OneRank [95 % CI] | epochs | parameters | fit s |" in page
    assert "| OneRank | 2 | 0.7100 ± 0.0141 | (reference) | 2, 3 | 12,345 | 10 ± 0 |" in page
    # differences 0.01 and 0.02: mean 0.015, half-width 12.71 * 0.00707 / sqrt(2) = 0.0635
    assert "| MMoE | 2 | 0.7250 ± 0.0212 | +0.0150 [-0.0485, +0.0785] |" in page


def test_text_wide_scale_table_against_the_baseline_and_scale_1(render_results, tmp_path):
    runs = [
        {"seed": 0, "fit_seconds": 10.0, "epochs_trained": 4},
        {"seed": 1, "fit_seconds": 12.0, "epochs_trained": 5},
    ]
    data = {
        "benchmark": "text_wide_scale",
        "config": {"seeds": 2},
        "description": "clothing reviews",
        "tasks": ["rec"],
        "baseline": {"test_auc": {"rec": 0.9}, "fit_seconds": 40.0},
        "variants": {
            "1": {
                "runs": runs,
                "test_auc": {"rec": _stat([0.89, 0.91])},
                "vs_scale_1": None,
                "minus_logistic_regression": {"rec": _stat([-0.01, 0.01])},
            },
            "10": {
                "runs": runs,
                "test_auc": {"rec": _stat([0.92, 0.92])},
                "vs_scale_1": {"rec": {"mean": 0.02, "low": 0.01, "high": 0.03, "n": 2}},
                "minus_logistic_regression": {"rec": _stat([0.02, 0.02])},
            },
        },
    }
    page = render_one(render_results, tmp_path, "text_wide_scale", data)
    assert "Clothing reviews. MMoE with its defaults" in page
    assert (
        "| wide scale | seeds | rec AUC | rec Δ vs LR [95 % CI] | rec Δ vs scale 1 [95 % CI] | epochs trained | fit s |"
        in page
    )
    assert "| LR baseline | deterministic | 0.9000 | (reference) | – | – | 40.0 |" in page
    assert "| 1 | 2 | 0.9000 ± 0.0141 | +0.0000 [-0.1271, +0.1271] | (reference) | 4, 5 | 11.0 ± 1.4 |" in page
    assert "| 10 | 2 | 0.9200 ± 0.0000 | +0.0200 [+0.0200, +0.0200] | +0.0200 [+0.0100, +0.0300] | 4, 5 |" in page


def test_scaling_tables_have_units_and_ratios(render_results, tmp_path):
    cell = {
        "parameters": 32702,
        "end_to_end_samples_per_s": _stat([50000.0, 60000.0]),
        "model_samples_per_s": _stat([1000.0, 1000.0]),
        "end_to_end_time_ratio_vs_2_tasks": 1.915,
        "model_time_ratio_vs_2_tasks": 1.0,
    }
    grec = {
        "benchmark": "grec_task_scaling",
        "config": {"n_predict": 8192},
        "results": {"sequence_text": {"GRec": {"4": cell}}},
    }
    page = render_one(render_results, tmp_path, "grec_task_scaling", grec)
    assert "### sequence + text inputs" in page
    assert "| model | tasks | parameters | end to end, samples / s | network only, samples / s |" in page
    assert "| GRec | 4 | 32,702 | 55,000 ± 7,071 | 1,000 ± 0 | 1.92× | 1.00× |" in page
    assert "paired [95 % CI]" not in page and "Null control" not in page  # neither is stored

    # paired-by-round ratios, the fastest rounds and the null control (an identical copy timed alongside)
    paired_cell = {
        **cell,
        "end_to_end_time_ratio_vs_2_tasks_paired": {"geometric_mean": 1.044, "ci95": [0.998, 1.092]},
        "model_time_ratio_vs_2_tasks_paired": {"geometric_mean": 1.0, "ci95": [float("nan"), float("nan")]},
        "end_to_end_time_ratio_vs_2_tasks_fastest_rounds": 1.045,
        "model_time_ratio_vs_2_tasks_fastest_rounds": 0.95,
    }
    copy = {
        **paired_cell,
        "end_to_end_time_ratio_vs_GRec[task]": {"geometric_mean": 1.006, "ci95": [0.966, 1.047]},
        "model_time_ratio_vs_GRec[task]": {"geometric_mean": 0.97, "ci95": [0.93, 1.02]},
    }
    routing = {
        "benchmark": "grec_task_scaling_routing",
        "config": {"n_predict": 8192, "tasks": [2, 4]},
        "results": {"tabular": {"GRec[task]": {"4": paired_cell}, "GRec[task]#2": {"4": copy}}},
    }
    page = render_one(render_results, tmp_path / "routing", "grec_task_scaling_routing", routing)
    assert "## GRec, MMoE and PLE prediction throughput as tasks grow (routing)" in page
    assert (
        "| end-to-end time ÷ 2 tasks, paired [95 % CI] | network time ÷ 2 tasks, paired [95 % CI] "
        "| end-to-end time ÷ 2 tasks, fastest rounds | network time ÷ 2 tasks, fastest rounds |"
    ) in page
    assert "| GRec[task] | 4 | 32,702 | 55,000 ± 7,071 | 1,000 ± 0 | 1.92× | 1.00× | 1.04× [1.00, 1.09] " in page
    assert "| 1.00× (n=1, no interval) | 1.04× | 0.95× |" in page
    assert "| *GRec[task]#2 (null control)* | 4 |" in page
    assert "| tasks | end-to-end time, GRec[task]#2 ÷ GRec[task] [95 % CI] |" in page
    assert "| 4 | 1.01× [0.97, 1.05] | 0.97× [0.93, 1.02] |" in page

    row = {
        "candidates": 1024,
        "forward_s": 0.0386,
        "encoder_s": 0.0336,
        "forward_flops": 1,
        "flops_per_candidate": 993862.0,
        "us_per_candidate": 37.66,
        "dense_encoder_s": 0.3895,
        "dense_max_abs_diff": 1.43e-06,
    }
    onerank = {
        "benchmark": "onerank_scaling",
        "config": {"history": 50},
        "parameters": {"total": 336486},
        "rows": [row, {**row, "candidates": 2048, "dense_encoder_s": None, "dense_max_abs_diff": None}],
        "loglog_slope": {"forward": 0.96, "encoder": 1.035, "dense": 2.034},
        "repeats": 7,
    }
    page = render_one(render_results, tmp_path, "onerank_scaling", onerank)
    assert (
        "| candidates N | forward ms | encoder ms | µs / candidate | MFLOP / candidate | dense-mask encoder ms |"
        in page
    )
    assert "| 1,024 | 38.6 | 33.6 | 37.7 | 0.99 | 389.5 | 11.59× | 1.4e-06 |" in page
    assert "| 2,048 | 38.6 | 33.6 | 37.7 | 0.99 | – | – | – |" in page
    assert "dense-mask encoder 2.03 (1 is linear)" in page and "336,486 parameters" in page


def test_flops_table_shows_time_rate_and_share_of_peak(render_results, tmp_path):
    data = {
        "benchmark": "flops_mmoe",
        "config": {"n_experts": 8, "batch_size": 2048, "rounds": 2},
        "flops_per_step": 16612392960,
        "flops_per_sample": 8111520.0,
        "matmul_peak_flops": {"median_over_rounds": 95775150785.0, "per_round": [1, 2], "sizes": [1024]},
        "seconds_per_step": {"ours": _stat([0.25, 0.27])},
        "achieved_flops": {"ours": 64564702582.0},
        "ratio_to_peak": {"ours": 0.6741},
        "ratio_to_peak_median_of_rounds": {"ours": 0.6799},
        "samples_per_second": {"ours": 7959.6},
        "note": "matmuls only",
    }
    page = render_one(render_results, tmp_path, "flops_mmoe", data)
    assert "16.6 GFLOP per step (8.1 MFLOP per sample)" in page and "peak 95.8 GFLOP/s" in page
    assert "Matmuls only." in page
    assert "| contender | ms / step | samples / s | GFLOP/s | of matmul peak | of peak (median of rounds) |" in page
    assert "| ours | 260.0 ± 14.1 | 7,960 | 64.6 | 67.4% | 68.0% |" in page


def test_memory_tables_show_mib_seconds_and_growth(render_results, tmp_path):
    predict = {
        "benchmark": "predict_memory",
        "description": "peak RSS added by predict_proba",
        "model": {"n_experts": 4, "expert_hidden_sizes": [64]},
        "runs": [
            {
                "rows": 1000000,
                "mode": "chunked",
                "input_mib": 33.4,
                "output_mib": 15.3,
                "rss_before_mib": 506.2,
                "peak_rss_mib": 546.6,
                "added_by_predict_mib": 40.4,
                "seconds": 19.31,
                "rows_per_second": 51785,
            }
        ],
    }
    page = render_one(render_results, tmp_path, "predict_memory", predict)
    assert page.count("Peak RSS added by predict_proba.") == 1
    assert (
        "| rows | prediction | input MiB | output MiB | RSS before MiB | peak RSS MiB | added by predict MiB | s |"
        in page
    )
    assert "| 1,000,000 | chunked | 33.4 | 15.3 | 506 | 547 | 40 | 19.3 | 51,785 |" in page

    streaming = {
        "benchmark": "streaming_memory",
        "config": {"part_rows": 100000, "batch_rows": 50000},
        "runs": [
            {
                "mode": "in_memory",
                "rows": 100000,
                "peak_rss_mib": 549.66,
                "rss_after_imports_mib": 366.6,
                "peak_above_imports_mib": 183.08,
                "seconds": 5.49,
                "rows_per_second": 18213.2,
            }
        ],
        "peak_above_imports_growth_10x_rows": {"streaming": 1.066, "in_memory": 3.138},
    }
    page = render_one(render_results, tmp_path / "s", "streaming_memory", streaming)
    assert "| fit | rows | peak RSS MiB | peak above imports MiB | s | rows / s |" in page
    assert "| in memory | 100,000 | 550 | 183 | 5.5 | 18,213 |" in page
    assert "Peak above imports, 10× the rows: streaming 1.07×, in memory 3.14×." in page


def test_threads_demo_table_pairs_the_two_thread_counts_of_each_round(render_results, tmp_path):
    runs = [
        {"round": 0, "threads": 2, "fit_s": 46.2, "load1_before": 5.84, "mean_test_auc": 0.7867},
        {"round": 0, "threads": 1, "fit_s": 1.7, "load1_before": 6.0, "mean_test_auc": 0.7867},
    ]
    data = {
        "benchmark": "threads_demo",
        "command": "demo",
        "runs": runs,
        "fit_s_1_thread": _stat([1.7]),
        "fit_s_2_threads": _stat([46.2]),
        "median_ratio_2_over_1": 27.18,
    }
    page = render_one(render_results, tmp_path, "threads_demo", data)
    assert "| round | fit s, 1 thread | fit s, 2 threads | 2 ÷ 1 threads |" in page
    assert "| 0 | 1.7 | 46.2 | 27.18× | 6.0 | 5.8 | 0.7867 | 0.7867 |" in page
    assert "1 thread 1.7, 2 threads 46.2; median ratio 2 ÷ 1 threads 27.18×." in page  # one round: no ±


def test_dataset_tables_drop_empty_metric_columns_and_list_errors(render_results, tmp_path):
    data = {
        "benchmark": "funnel_models",
        "config": {"seeds": [0, 1]},
        "datasets": {
            "census": {
                "tasks": ["income", "married"],
                "models": {
                    "MMoE": {
                        "auc": {"income": _stat([0.95, 0.96]), "married": _stat([0.99, 0.99])},
                        "fit_seconds": _stat([20.0, 22.0]),
                    },
                    "ESMM": {"errors": ["tasks are not nested"]},
                },
            }
        },
    }
    page = render_one(render_results, tmp_path, "funnel_models", data)
    assert "| model | seeds | income AUC | married AUC | fit s |" in page  # no GAUC / recall columns without requests
    assert "| MMoE | 2 | 0.9550 ± 0.0071 | 0.9900 ± 0.0000 | 21.0 ± 1.4 |" in page
    assert "| ESMM | 0 | – | – | – |" in page and "- ESMM: tasks are not nested" in page


def _run(seed, like, love, gauc=None):
    run = {"seed": seed, "auc": {"like": like, "love": love}}
    return {**run, "gauc": {"like": gauc, "love": gauc}} if gauc is not None else run


def _grec_model(runs):
    out = {"runs": runs, "auc": {t: _stat([r["auc"][t] for r in runs]) for t in ("like", "love")}}
    out["fit_seconds"] = _stat([10.0] * len(runs))
    if "gauc" in runs[0]:
        out["gauc"] = {t: _stat([r["gauc"][t] for r in runs]) for t in ("like", "love")}
    return out


def _grec_file(benchmark, models):
    dataset = {"tasks": ["like", "love"], "rows": {"train": 700}, "max_epochs": 2, "models": models}
    return {
        "benchmark": benchmark,
        "config": {
            "seeds": [0, 1],
            "selection": "best valid epoch",
            "architectures": {"GRec-task": {"routing": "task"}},
        },
        "datasets": {"movielens": dataset},
    }


def test_grec_routing_pairs_each_model_with_task_routing_by_seed(render_results, tmp_path):
    task = _grec_model([_run(0, 0.70, 0.60, 0.7), _run(1, 0.72, 0.62, 0.7)])
    sentence = _grec_model([_run(1, 0.76, 0.62, 0.7), _run(0, 0.72, 0.60, 0.7)])  # other seed order: by seed
    page = render_one(
        render_results,
        tmp_path,
        "grec_routing",
        _grec_file("grec_routing", {"GRec-task": task, "GRec-sentence": sentence}),
    )
    assert "## GRec routing modes: task against sentence routing" in page
    assert "| model | seeds | like AUC | love AUC | like GAUC | love GAUC | fit s |" in page
    assert (
        "| model | paired seeds | Δ like AUC vs GRec-task [95 % CI] | Δ love AUC vs GRec-task [95 % CI] "
        "| Δ like GAUC vs GRec-task [95 % CI] | Δ love GAUC vs GRec-task [95 % CI] |"
    ) in page
    # like: differences 0.02 and 0.04 (seed 0, seed 1): mean 0.03, half-width 12.71 * 0.01414 / sqrt(2) = 0.1271
    assert "| GRec-sentence | 2 | +0.0300 [-0.0971, +0.1571] | +0.0000 [+0.0000, +0.0000] |" in page
    assert "| GRec-task | 2 |" in page and "| GRec-task | 2 | +" not in page  # the reference is not paired with itself


def test_a_merged_grec_study_pairs_with_its_own_reference_and_lists_every_parts_variants(render_results, tmp_path):
    grec = _grec_model([_run(0, 0.70, 0.60, 0.7), _run(1, 0.72, 0.62, 0.7)])
    mmoe = _grec_model([_run(0, 0.72, 0.61, 0.7), _run(1, 0.76, 0.63, 0.7)])
    data = {
        **_grec_file("grec_gap_history", {"GRec": grec, "MMoE": mmoe}),
        "reference": "GRec",
        "parts": [
            {"name": "a", "config": {"architectures": {"GRec": {"estimator": "GRecClassifier"}}}},
            {"name": "b", "config": {"architectures": {"MMoE": {"estimator": "MMoEClassifier", "n_experts": 4}}}},
        ],
    }
    page = render_one(render_results, tmp_path, "grec_gap_history", data)
    assert "- `GRec`: GRecClassifier()" in page and "- `MMoE`: MMoEClassifier(n_experts=4)" in page
    assert "Δ like AUC vs GRec [95 % CI]" in page and "vs GRec-task" not in page
    # like: differences 0.02 and 0.04: mean 0.03
    assert "| MMoE | 2 | +0.0300 [-0.0971, +0.1571] |" in page


def test_grec_gap_ablation_is_paired_with_task_routing_borrowed_from_the_routing_run(render_results, tmp_path):
    task = _grec_model([_run(0, 0.70, 0.60), _run(1, 0.72, 0.62)])
    routing = _grec_file("grec_routing", {"GRec-task": task, "GRec-sentence": task, "MMoE": task})
    d64 = _grec_model([_run(0, 0.69, 0.60), _run(1, 0.71, 0.62)])
    results = tmp_path / "results"
    results.mkdir()
    (results / "grec_routing.json").write_text(json.dumps(routing))
    (results / "grec_gap_ablation.json").write_text(json.dumps(_grec_file("grec_gap_ablation", {"GRec-task-d64": d64})))
    out = tmp_path / "page.md"
    render_results.render(results, out, tmp_path / "img")
    section = out.read_text().split("## GRec's MovieLens gap to MMoE: two ablations")[1]
    assert "`benchmarks/results/grec_gap_ablation.json`, `benchmarks/results/grec_routing.json`" in section
    assert "| GRec-task † | 2 | 0.7100 ± 0.0141 |" in section and "| MMoE † | 2 |" in section
    assert "GRec-sentence" not in section  # only the reference and MMoE are borrowed
    assert "| GRec-task-d64 | 2 | -0.0100 [-0.0100, -0.0100] | +0.0000 [+0.0000, +0.0000] |" in section

    # another protocol (other rows): nothing to pair with
    routing["datasets"]["movielens"]["rows"] = {"train": 999}
    (results / "grec_routing.json").write_text(json.dumps(routing))
    render_results.render(results, out, tmp_path / "img")
    section = out.read_text().split("## GRec's MovieLens gap to MMoE: two ablations")[1]
    assert "No `GRec-task` runs on this data set: no paired differences." in section and "†" not in section


def test_continuation_snapshot_table_shows_overhead_null_control_and_direct_estimate(render_results, tmp_path):
    data = {
        "benchmark": "continuation_snapshot",
        "setup": {"model": "MMoE", "rows": 2048, "batch_size": 256, "steps_per_call": 8, "n_parameters": 817234},
        "snapshot_over_no_snapshot": {"geometric_mean": 1.0696, "low": 0.92153, "high": 1.2414, "n_rounds": 21},
        "control_over_snapshot": {"geometric_mean": 0.9248, "low": 0.8127, "high": 1.0525, "n_rounds": 21},
        "one_plus_snapshot_share_timed_alone": {
            "geometric_mean": 1.0133,
            "low": 1.01149,
            "high": 1.0151,
            "n_rounds": 21,
        },
        "median_seconds_per_call_no_snapshot": 0.7308,
        "snapshot_seconds": 0.0110,
        "snapshot_megabytes": 9.357,
        "rounds": [{"snapshot": 2.0, "no_snapshot": 1.9, "control": 2.0, "snapshots_alone": 0.03}],
    }
    page = render_one(render_results, tmp_path, "continuation_snapshot", data)
    assert "| time ratio | rounds | geometric mean [95 % CI] |" in page
    assert "| snapshot ÷ no snapshot (the overhead) | 21 | 1.070× [0.922, 1.241] |" in page
    assert "| *null control: control ÷ snapshot* | 21 | 0.925× [0.813, 1.052] |" in page
    assert "| 1 + snapshot seconds timed alone ÷ no-snapshot seconds | 21 | 1.013× [1.011, 1.015] |" in page
    assert "731 ms (median over rounds); one snapshot: 11.0 ms (median, timed alone), 9.4 MiB" in page


def test_onerank_requests_table_pairs_with_mmoe_and_shows_the_shuffled_control(render_results, tmp_path):
    def run(seed, auc, shuffled=None):
        out = {"seed": seed, "auc": {"click": auc}, "best_epoch": 3, "fit_seconds": 10.0, "parameters": 1234}
        return {**out, "auc_shuffled": {"click": shuffled}} if shuffled is not None else out

    onerank_runs = [run(0, 0.80, 0.55), run(1, 0.84, 0.53)]
    mmoe_runs = [run(0, 0.54), run(1, 0.56)]
    data = {
        "benchmark": "onerank_requests",
        "description": "OneRank vs MMoE.\n\nMore.",
        "parts": [{"name": "onerank_requests_a"}],
        "datasets": {
            "synthetic_null": {
                "description": "make_request_classification(set_dependence=0.0)",
                "tasks": ["click"],
                "train_requests": {"n": 1000, "mean_size": 20.0, "max_size": 20},
                "models": {
                    "OneRank-add": {
                        "runs": onerank_runs,
                        "summary": {
                            "auc": {"click": _stat([0.80, 0.84])},
                            "auc_shuffled": {"click": _stat([0.55, 0.53])},
                        },
                        "vs_MMoE": {
                            "auc": {"click": _stat([0.26, 0.28])},
                            "auc_shuffled": {"click": _stat([0.01, -0.03])},
                        },
                    },
                    "MMoE": {"runs": mmoe_runs, "summary": {"auc": {"click": _stat([0.54, 0.56])}}},
                },
            }
        },
    }
    results = tmp_path / "results"
    results.mkdir()
    (results / "onerank_requests.json").write_text(json.dumps(data))
    (results / "onerank_requests_a.json").write_text(json.dumps({**data, "parts": []}))  # merged into the above
    out = tmp_path / "page.md"
    render_results.render(results, out, tmp_path / "img")
    page = out.read_text()
    assert page.count("## OneRank against MMoE on request-ranking protocols") == 1
    assert "`onerank_requests_a.json` (in `onerank_requests.json`)" in page
    assert "### synthetic_null (null protocol)" in page
    assert "| metric | model | requests | seeds | click | click Δ vs MMoE [95 % CI] |" in page
    assert "| AUC | MMoE | as given | 2 | 0.5500 ± 0.0141 | (reference) |" in page  # the reference first
    assert "| AUC | OneRank-add | as given | 2 | 0.8200 ± 0.0283 | +0.2700 [+0.1429, +0.3971] |" in page
    # shuffled: differences +0.01 and -0.03, mean -0.01, half-width 12.71 * 0.02828 / sqrt(2) = 0.2541
    assert "| AUC | OneRank-add | *shuffled* | 2 | 0.5400 ± 0.0141 | -0.0100 [-0.2641, +0.2441] |" in page
    assert (
        "| model | seeds | best epochs | parameters | fit s |" in page
        and "| MMoE | 2 | 3, 3 | 1,234 | 10 ± 0 |" in page
    )


def test_pub_drgrad_evidence_tables_pair_with_adam_and_show_the_null_control(render_results, tmp_path):
    def at_lr(lr, test, diff):
        return {
            "lr": lr,
            "test_mean_auc": _stat(test),
            "minus_adam": _stat(diff),
            "minus_adam_task0": _stat(diff),
            "minus_adam_task1": _stat([0.0, 0.0]),
            "best_epoch": _stat([20, 22]),
            "seconds_per_epoch": _stat([1.0, 1.2]),
        }

    data = {
        "benchmark": "pub_drgrad_evidence",
        "config": {
            "question": "PUB vs equal weights",
            "seeds": [0, 1],
            "lrs": [0.002, 0.005],
            "descriptions": {"adam": "equal weights", "adam_half": "0.5 / 0.5 (null control: should change nothing)"},
        },
        "results": {
            "chosen_lr": {
                "adam": {"lr": 0.002, "valid_mean_auc_by_lr": {"0.002": 0.87, "0.005": 0.86}},
                "adam_half": {"lr": 0.005, "valid_mean_auc_by_lr": {"0.002": 0.85, "0.005": 0.86}},
            },
            "at_chosen_lr": {
                "adam": at_lr(0.002, [0.86, 0.88], [0.0, 0.0]),
                "adam_half": at_lr(0.005, [0.85, 0.87], [-0.01, -0.01]),
            },
            "at_each_lr": {"adam_half": {"0.005": {"minus_adam_same_lr": _stat([0.002])}}},
        },
    }
    page = render_one(render_results, tmp_path, "pub_drgrad_evidence", data)
    assert "## PUB and DRGrad against equal weights, lr tuned per method" in page
    assert (
        "| method | chosen lr | seeds | test mean AUC | Δ mean AUC vs adam [95 % CI] | Δ task 0 AUC | Δ task 1 AUC "
        "| best epoch | s / epoch |"
    ) in page
    assert "| adam | 0.002 | 2 | 0.8700 ± 0.0141 | (reference) | (reference) | (reference) | 21.0 ± 1.4 |" in page
    assert (
        "| *adam_half (null control)* | 0.005 | 2 | 0.8600 ± 0.0141 | -0.0100 [-0.0100, -0.0100] "
        "| -0.0100 [-0.0100, -0.0100] | +0.0000 [+0.0000, +0.0000] |"
    ) in page
    assert "| method | lr 0.002: valid mean AUC | lr 0.002: Δ test vs adam | lr 0.005: valid mean AUC |" in page
    assert "| adam_half | 0.8500 | – | 0.8600 (chosen) | +0.0020 (n=1, no interval) |" in page


def test_step_time_ratios_are_paired_by_round_and_checked_against_targets(render_results, tmp_path):
    def method(rounds, median_ratio):
        return {
            "median_ms_per_step": float(np.median(rounds)),
            "ms_per_step": _stat(rounds),
            "ratio_to_adam": 1.0,
            "ratio_to_adam_median_of_rounds": median_ratio,
        }

    data = {
        "benchmark": "optimizer_step_time_pub_drgrad",
        "config": {"batch_size": 512, "rounds": 2, "targets_at_T2": {"pub": 1.15}},
        "small": {"2": {"adam": method([10.0, 20.0], 1.0), "pub": method([11.0, 24.0], 1.15)}},
        "default_size_T2": None,
    }
    page = render_one(render_results, tmp_path, "optimizer_step_time_pub_drgrad", data)
    assert "## Optimizer step time (pub drgrad)" in page
    assert "| method | T=2 ms | T=2 ×adam | T=2 ×adam, paired [95 % CI] |" in page
    # per-round ratios 1.1 and 1.2: geometric mean 1.149, t-interval on the logs [0.661, 1.997]
    assert "| pub | 17.50 | 1.00 | 1.15× [0.66, 2.00] |" in page
    assert "| adam | 15.00 | 1.00 | (reference) |" in page
    assert "`pub` 1.15× (target ≤ 1.15×, met)" in page
    assert "Default-size" not in page


def test_census_methods_choose_the_rate_on_validation_and_pair_with_ew(render_results, tmp_path, monkeypatch):
    import sys

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    census_methods = __import__("census_methods")
    monkeypatch.setattr(sys.modules["_common"], "RESULTS_DIR", tmp_path / "results")

    def runs(test_income, valid):
        return [
            {
                "seed": s,
                "auc": {"income": a, "married": 0.99},
                "valid_auc": [v - 0.01, v],
                "epochs": 9,
                "fit_seconds": 1.0,
            }
            for s, (a, v) in enumerate(zip(test_income, valid))
        ]

    parts = {
        "census_methods_part_a": {
            "ew lr=0.001": runs([0.950, 0.952, 0.951], [0.90, 0.90, 0.90]),
            "ew_half lr=0.001": runs([0.951, 0.951, 0.951], [0.90, 0.90, 0.90]),
            "pub lr=0.001": runs([0.940, 0.940, 0.940], [0.95, 0.95, 0.95]),  # best on validation
        },
        "census_methods_part_b": {
            "ew lr=0.002": runs([0.990, 0.990, 0.990], [0.80, 0.80, 0.80]),  # best on test, never chosen
            "pub lr=0.002": runs([0.960, 0.960, 0.960], [0.85, 0.85, 0.85]),
        },
    }
    (tmp_path / "results").mkdir()
    for name, variants in parts.items():
        info = {"tasks": ["income", "married"], "variants": {v: {"runs": r} for v, r in variants.items()}}
        (tmp_path / "results" / f"{name}.json").write_text(json.dumps({"config": {}, "datasets": {"census": info}}))
    payload = census_methods.summarise(list(parts), "census_methods")
    assert payload["methods"]["ew"]["chosen_lr"] == 0.001 and payload["methods"]["pub"]["chosen_lr"] == 0.001
    delta = payload["methods"]["pub"]["delta_vs_ew"]
    np.testing.assert_allclose(delta["income"]["values"], [-0.010, -0.012, -0.011], atol=1e-12)
    np.testing.assert_allclose(delta["mean"]["values"], [-0.005, -0.006, -0.0055], atol=1e-12)
    out = tmp_path / "page.md"
    render_results.render(tmp_path / "results", out, tmp_path / "img")
    page = out.read_text()
    assert "## Multi-task methods on Census-Income, learning rate tuned per method" in page
    assert "| pub | 0.001 | 3 | 0.9400 ± 0.0000 | 0.9900 ± 0.0000 | -0.0055 [-0.0067, -0.0043] |" in page
    assert "| *ew, weights 1 / n_tasks (null control)* | 0.001 | 3 |" in page
    assert "| pub | 0.9500 (chosen) | -0.0055 [-0.0067, -0.0043] | 0.8500 | -0.0150 [-0.0150, -0.0150] |" in page
    assert "`census_methods_part_a.json` (in `census_methods.json`)" in page  # parts listed, not rendered twice


def test_funnel_lr_grid_table_shows_chosen_rates_paired_deltas_and_the_null_control(render_results, tmp_path):
    def model(aucs, lr, delta=None):
        entry = {"auc": {"a": _stat(aucs), "b": _stat(aucs)}, "fit_seconds": _stat([1.0, 1.0]), "chosen_lr": lr}
        if delta is not None:
            entry["delta_vs_reference"] = {"mean": _stat(delta)}
        return entry

    data = {
        "benchmark": "funnel_models_lr_grid",
        "config": {"lrs": [0.001, 0.003]},
        "datasets": {
            "synthetic": {
                "tasks": ["a", "b"],
                "reference": "ESMM",
                "models": {
                    "ESMM": model([0.70, 0.72], 0.003),
                    "ESCM2": model([0.69, 0.71], 0.001, [-0.01, -0.01]),
                    "null control": model([0.70, 0.72], 0.003, [0.001, -0.001]),
                },
            }
        },
    }
    page = render_one(render_results, tmp_path, "funnel_models_lr_grid", data)
    assert "| model | seeds | a AUC | b AUC | chosen lr | Δ mean AUC vs ESMM [95 % CI] | fit s |" in page
    assert "| ESMM | 2 | 0.7100 ± 0.0141 | 0.7100 ± 0.0141 | 0.003 | (reference) |" in page
    assert "| ESCM2 | 2 | 0.7000 ± 0.0141 | 0.7000 ± 0.0141 | 0.001 | -0.0100 [-0.0100, -0.0100] |" in page
    assert "| *ESMM, task weights 1 / n_tasks (null control)* | 2 |" in page


def test_census_methods_diagnostics_table_has_a_row_per_epoch_and_a_column_per_key(render_results, tmp_path):
    data = {
        "benchmark": "census_methods_diagnostics",
        "config": {"model": "MMoE", "seed": 0, "epochs": 2},
        "diagnostics": {
            "pub lr=0.002": [
                {"weights": [0.5013, 0.4987], "update_cosine": [0.667]},
                {"weights": [0.4991, 0.5009], "update_cosine": [0.702]},
            ]
        },
    }
    page = render_one(render_results, tmp_path, "census_methods_diagnostics", data)
    assert "## What PUB and DRGrad do on Census-Income (their history_ diagnostics)" in page
    assert "| epoch | weights | update_cosine |" in page
    assert "| 1 | 0.501 / 0.499 | 0.667 |" in page
    assert "| 2 | 0.499 / 0.501 | 0.702 |" in page
