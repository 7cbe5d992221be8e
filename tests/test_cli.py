"""The command line, run in-process on tiny tables."""

import json
import pickle
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GroupShuffleSplit

from sklearn_mtr import MMoEClassifier, PLEClassifier
from sklearn_mtr.cli import main, parse_param
from sklearn_mtr.datasets import make_multitask_classification
from sklearn_mtr.metrics import group_auc_score, per_task_log_loss, per_task_roc_auc
from sklearn_mtr.optim import PUB
from sklearn_mtr.persistence import load

TINY = ["--max-epochs", "1", "--batch-size", "64", "--param", "n_experts=2", "--param", "expert_hidden_sizes=(8,)"]


def _table(n=240, seed=0) -> pd.DataFrame:
    X, Y = make_multitask_classification(n_samples=n, n_tasks=2, n_categorical=1, as_frame=True, random_state=seed)
    frame = X.iloc[:, :4].copy()
    frame["city"] = X["cat0"].astype(str).radd("c")  # a string column: categorical
    frame["user"] = np.arange(n) // 8
    frame["row_id"] = np.arange(n) + 1000
    frame[["click", "buy"]] = Y.to_numpy()
    return frame


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A CSV, the model fitted on it by the CLI, and its report."""
    folder = tmp_path_factory.mktemp("cli")
    data = folder / "train.csv"
    _table().to_csv(data, index=False)
    model = folder / "model.mtr"
    args = ["fit", str(data), "--targets", "click,buy", "--exclude", "row_id", "--groups", "user", "-o", str(model)]
    assert (
        main([*args, *TINY, "--optimizer", "pub", "--optimizer-param", "refresh_every=5", "--random-state", "3"]) == 0
    )
    report = json.loads((folder / "model.metrics.json").read_text())
    return data, model, report


def test_fit_writes_a_model_and_its_metrics(trained):
    data, model_path, report = trained
    model = load(model_path)
    assert isinstance(model, MMoEClassifier)
    assert list(model.task_names_) == ["click", "buy"]
    assert list(model.feature_names_in_) == ["x0", "x1", "x2", "x3", "city"]  # targets, groups, row_id left out
    assert (model.n_experts, model.expert_hidden_sizes, model.random_state) == (2, (8,), 3)
    assert isinstance(model.optimizer, PUB) and model.optimizer.refresh_every == 5
    assert report["model"] == "MMoEClassifier" and report["params"]["expert_hidden_sizes"] == [8]
    assert report["params"]["optimizer"] == "PUB(refresh_every=5)"
    assert zipfile.is_zipfile(model_path) and report["format"] == "safe"  # the safe format by default

    # The holdout keeps whole users out of training; the report scores it with the saved model.
    frame = pd.read_csv(data)
    train, valid = next(GroupShuffleSplit(n_splits=1, test_size=0.2, random_state=3).split(frame, groups=frame["user"]))
    assert (report["n_train"], report["n_valid"]) == (len(train), len(valid))
    assert not set(frame["user"].iloc[train]) & set(frame["user"].iloc[valid])
    for subset, rows in (("train", train), ("valid", valid)):
        part = frame.iloc[rows]
        y, proba = part[["click", "buy"]].to_numpy(float), model.predict_proba(part[list(model.feature_names_in_)])
        np.testing.assert_allclose(list(report[subset]["auc"].values()), per_task_roc_auc(y, proba))
        np.testing.assert_allclose(list(report[subset]["log_loss"].values()), per_task_log_loss(y, proba))
        np.testing.assert_allclose(list(report[subset]["gauc"].values()), group_auc_score(y, proba, part["user"]))
        assert report[subset]["mean_auc"] == pytest.approx(np.mean(per_task_roc_auc(y, proba)))


def test_evaluate_prints_per_task_metrics(trained, capsys, tmp_path):
    data, model_path, _ = trained
    assert main(["evaluate", str(model_path), str(data), "--groups", "user"]) == 0
    report = json.loads(capsys.readouterr().out)
    frame = pd.read_csv(data)
    model = load(model_path)
    y, proba = frame[["click", "buy"]].to_numpy(float), model.predict_proba(frame[list(model.feature_names_in_)])
    assert report["n_rows"] == len(frame) and list(report["auc"]) == ["click", "buy"]
    np.testing.assert_allclose(list(report["auc"].values()), per_task_roc_auc(y, proba))
    np.testing.assert_allclose(list(report["gauc"].values()), group_auc_score(y, proba, frame["user"]))
    # Renamed label columns, written to a file.
    frame.rename(columns={"click": "c", "buy": "b"}).to_csv(tmp_path / "renamed.csv", index=False)
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(model_path), str(tmp_path / "renamed.csv"), "--targets", "c,b", "-o", str(out)]) == 0
    np.testing.assert_allclose(list(json.loads(out.read_text())["auc"].values()), per_task_roc_auc(y, proba))


@pytest.mark.parametrize(
    "labels, message",
    [
        (lambda c: np.where(c == 1, "yes", "no"), "label column 'click' holds non-numeric labels ('no', 'yes')"),
        (lambda c: c * 2, "label column 'click' holds labels [2.0]"),
    ],
)
def test_evaluate_refuses_labels_that_are_not_0_1_with_a_one_line_error(trained, tmp_path, capsys, labels, message):
    # Read as missing, text labels left the other task's AUC as the mean, with exit status 0.
    data, model_path, _ = trained
    frame = pd.read_csv(data)
    frame["click"] = labels(frame["click"])
    frame.to_csv(tmp_path / "text.csv", index=False)
    assert main(["evaluate", str(model_path), str(tmp_path / "text.csv")]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("sklearn-mtr evaluate: error: ") and message in err
    assert err.count("\n") == 1  # one line, no traceback
    # fit reads labels by the same rule
    assert (
        main(["fit", str(tmp_path / "text.csv"), "--targets", "click,buy", "-o", str(tmp_path / "m.mtr"), *TINY]) == 1
    )
    assert "task 'click' holds" in capsys.readouterr().err


def test_evaluate_leaves_empty_label_cells_out_as_missing(trained, tmp_path, capsys):
    data, model_path, _ = trained
    frame = pd.read_csv(data)
    frame.loc[::3, "click"] = np.nan
    frame.to_csv(tmp_path / "gaps.csv", index=False)
    assert main(["evaluate", str(model_path), str(tmp_path / "gaps.csv")]) == 0
    report = json.loads(capsys.readouterr().out)
    model = load(model_path)
    y, proba = frame[["click", "buy"]].to_numpy(float), model.predict_proba(frame[list(model.feature_names_in_)])
    assert report["n_labelled"] == {"click": int((~np.isnan(y[:, 0])).sum()), "buy": len(frame)}
    np.testing.assert_allclose(list(report["auc"].values()), per_task_roc_auc(y, proba))


def test_evaluate_maps_the_two_classes_of_a_binary_classifier_as_its_fit_did(tmp_path, capsys):
    from sklearn.metrics import roc_auc_score

    from sklearn_mtr.persistence import save

    frame = _table()
    frame["bought"] = np.where(frame["buy"] == 1, "yes", "no")
    features = ["x0", "x1", "x2", "x3", "city"]
    model = MMoEClassifier(n_experts=2, expert_hidden_sizes=(8,), max_epochs=1, random_state=0)
    model.fit(frame[features], frame["bought"])  # a 1-D y: any two labels, classes_ = ['no', 'yes']
    save(model, tmp_path / "binary.mtr")
    frame.to_csv(tmp_path / "binary.csv", index=False)
    assert main(["evaluate", str(tmp_path / "binary.mtr"), str(tmp_path / "binary.csv"), "--targets", "bought"]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = roc_auc_score(frame["bought"] == "yes", model.predict_proba(frame[features])[:, 1])
    assert report["auc"]["bought"] == pytest.approx(expected) and report["positive_rate"]["bought"] == pytest.approx(
        (frame["bought"] == "yes").mean()
    )
    frame.loc[5, "bought"] = "maybe"
    frame.to_csv(tmp_path / "binary.csv", index=False)
    assert main(["evaluate", str(tmp_path / "binary.mtr"), str(tmp_path / "binary.csv"), "--targets", "bought"]) == 1
    assert (
        "label column 'bought' holds 'maybe', not one of the model's classes ['no', 'yes']" in capsys.readouterr().err
    )


def test_predict_writes_probabilities_with_ids(trained, tmp_path, capsys):
    data, model_path, _ = trained
    frame = pd.read_csv(data).drop(columns=["click", "buy"])  # labels are not needed
    frame.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(model_path), str(tmp_path / "new.csv"), "--id-column", "row_id", "-o", str(out)]) == 0
    pred = pd.read_csv(out)
    model = load(model_path)
    assert list(pred.columns) == ["row_id", "click", "buy"]
    np.testing.assert_array_equal(pred["row_id"], frame["row_id"])
    np.testing.assert_allclose(pred[["click", "buy"]], model.predict_proba(frame[list(model.feature_names_in_)]))
    # "-" writes CSV to standard output.
    assert main(["predict", str(model_path), str(tmp_path / "new.csv"), "-o", "-"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "click,buy"


def test_parquet_in_and_out(tmp_path):
    pytest.importorskip("pyarrow")
    data = tmp_path / "train.parquet"
    _table(n=120).to_parquet(data, index=False)
    model = tmp_path / "m.mtr"
    args = ["fit", str(data), "--targets", "click,buy", "--features", "x0,x1,city", "-o", str(model), "--holdout", "0"]
    assert main([*args, *TINY, "--report", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert "valid" not in report and report["n_train"] == 120
    assert main(["predict", str(model), str(data), "--id-column", "row_id", "-o", str(tmp_path / "p.parquet")]) == 0
    pred = pd.read_parquet(tmp_path / "p.parquet")
    assert list(pred.columns) == ["row_id", "click", "buy"] and len(pred) == 120


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, monkeypatch, capsys):
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    assert main(["fit", str(tmp_path / "x.parquet"), "--targets", "a", "-o", str(tmp_path / "m")]) == 1
    assert "pip install sklearn-mtr[parquet]" in capsys.readouterr().err


def test_categorical_columns_safe_format_and_other_models(tmp_path):
    data = tmp_path / "train.tsv"
    _table(n=120).to_csv(data, sep="\t", index=False)
    model = tmp_path / "m.mtr"
    args = ["fit", str(data), "--targets", "click,buy", "--model", "PLEClassifier", "--exclude", "row_id"]
    args += ["--categorical-features", "user", "--format", "safe", "-o", str(model), "--max-epochs", "1"]
    assert main([*args, "--param", "expert_hidden_sizes=(8,)", "--param", "tower_hidden_sizes=(4,)"]) == 0
    clf = load(model)
    assert isinstance(clf, PLEClassifier)
    assert clf.categorical_features == ["user", "city"]  # declared + the string columns
    assert main(["evaluate", str(model), str(data), "-o", str(tmp_path / "e.json")]) == 0
    assert set(json.loads((tmp_path / "e.json").read_text())["auc"]) == {"click", "buy"}


def _reviews(n=240) -> pd.DataFrame:
    """_table plus a free-text column: a different review of several words on every row."""
    frame = _table(n=n)
    frame["review"] = [f"the plot was {'good' if i % 2 else 'slow'} said viewer {i}" for i in range(n)]
    return frame


def test_text_features_are_left_out_of_the_automatic_categorical_list(tmp_path):
    # --categorical-features adds the string columns; a --text-features column is not one of them
    # (it used to be, and the estimator then refused a column both categorical and text).
    data, model = tmp_path / "train.csv", tmp_path / "m.mtr"
    _reviews().to_csv(data, index=False)
    args = ["fit", str(data), "--targets", "click,buy", "--exclude", "row_id", "-o", str(model), *TINY]
    assert main([*args, "--categorical-features", "user", "--text-features", "review"]) == 0
    clf = load(model)
    assert clf.categorical_features == ["user", "city"] and clf.text_features == ["review"]
    assert clf.feature_encoder_.roles_["review"] == "text"
    # the same with text_features given through --param
    assert main([*args, "--categorical-features", "user", "--param", "text_features=['review']"]) == 0
    assert load(model).categorical_features == ["user", "city"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--categorical-features", "review", "--text-features", "review"], "['review'] are given both to"),
        (["--text-features", "review", "--param", "text_features=['city']"], "'text_features' is set twice"),
        (["--text-features", "nope"], "--text-features column(s) ['nope'] not found"),
    ],
)
def test_text_features_errors_are_clear(tmp_path, capsys, extra, message):
    data = tmp_path / "train.csv"
    _reviews(n=40).to_csv(data, index=False)
    assert main(["fit", str(data), "--targets", "click", "-o", str(tmp_path / "m.mtr"), *TINY, *extra]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("extra", [[], ["--categorical-features", "user"]])
def test_fit_warns_about_a_free_text_column_made_categorical(tmp_path, extra):
    data, model = tmp_path / "train.csv", tmp_path / "m.mtr"
    _reviews().to_csv(data, index=False)
    args = ["fit", str(data), "--targets", "click,buy", "--exclude", "row_id", "-o", str(model), *TINY, *extra]
    with pytest.warns(UserWarning, match=r"column 'review' looks like free text.*text_features=\['review'\]"):
        assert main(args) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert main([*args, "--text-features", "review"]) == 0


def test_request_models_get_the_groups(tmp_path):
    from sklearn_mtr.cli import _estimators

    if "onerank" not in _estimators():
        pytest.skip("OneRankClassifier is not in this checkout")
    data = tmp_path / "train.csv"
    _table(n=96).to_csv(data, index=False)
    model = tmp_path / "onerank.mtr"
    args = ["fit", str(data), "--targets", "click,buy", "--model", "onerank", "--exclude", "row_id", "--groups", "user"]
    assert main([*args, "-o", str(model), "--max-epochs", "1", "--param", "d_model=8", "--param", "n_layers=1"]) == 0
    out = tmp_path / "p.csv"
    assert main(["predict", str(model), str(data), "--groups", "user", "-o", str(out)]) == 0
    clf, frame = load(model), pd.read_csv(data)
    expected = clf.predict_proba(frame[list(clf.feature_names_in_)], groups=frame["user"].to_numpy())
    np.testing.assert_allclose(pd.read_csv(out)[["click", "buy"]], expected)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--targets", "click,purchase"], "target column(s) ['purchase'] not found"),
        (["--targets", "click", "--model", "xgboost"], "unknown model 'xgboost'; choose one of"),
        (["--targets", "click", "--param", "n_expert=3"], "'n_expert': MMoEClassifier has no such parameter"),
        (["--targets", "click", "--param", "n_experts=(3,"], "cannot read '(3,'"),
        (["--targets", "click", "--param", "n_experts"], "is not KEY=VALUE"),
        (["--targets", "click", "--param", "lr=0.1", "--lr", "0.2"], "'lr' is set twice (also by --lr)"),
        (
            ["--targets", "click", "--param", "n_threads=1", "--threads", "1"],
            "'n_threads' is set twice (also by --threads)",
        ),
        (["--targets", "click", "--features", "x0,click"], "both as features and as targets"),
        (["--targets", "click", "--exclude", "click"], "both to --exclude and as targets"),
        (["--targets", "click", "--exclude", "city", "--features", "x0"], "either --features or --exclude"),
        (["--targets", "click", "--holdout", "1.5"], "--holdout must be in [0, 1)"),
        (["--targets", "click,,buy"], "empty column name"),
        (["--targets", "click", "--optimizer", "sgd"], "optimizer='sgd' is not supported"),
        (["--targets", "click", "--optimizer", "pub", "--optimizer-param", "lr=1"], "'lr': PUB has no such parameter"),
        (["--targets", "click", "--optimizer", "sgd", "--optimizer-param", "x=1"], "needs a registered --optimizer"),
    ],
)
def test_fit_errors_are_clear(tmp_path, capsys, extra, message):
    data = tmp_path / "train.csv"
    _table(n=40).to_csv(data, index=False)
    assert main(["fit", str(data), "-o", str(tmp_path / "m.mtr"), "--max-epochs", "1", *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sklearn-mtr fit: error: ") and message in err
    assert not (tmp_path / "m.mtr").exists()


def test_file_errors_are_clear(trained, tmp_path, capsys):
    data, model_path, _ = trained
    assert main(["predict", str(model_path), str(tmp_path / "none.csv"), "-o", str(tmp_path / "p.csv")]) == 1
    assert "data file" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "none.mtr"), str(data), "-o", str(tmp_path / "p.csv")]) == 1
    assert "model file" in capsys.readouterr().err
    assert main(["predict", str(model_path), str(data), "-o", str(tmp_path / "p.xlsx")]) == 1
    assert "unknown file type" in capsys.readouterr().err
    pd.read_csv(data).drop(columns=["city"]).to_csv(tmp_path / "nocity.csv", index=False)
    assert main(["predict", str(model_path), str(tmp_path / "nocity.csv"), "-o", str(tmp_path / "p.csv")]) == 1
    assert "feature column(s) ['city'] not found" in capsys.readouterr().err
    assert main(["evaluate", str(model_path), str(data), "--targets", "click"]) == 1
    assert "the model has 2 tasks" in capsys.readouterr().err


class _Payload:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_pickle_model_file_is_refused_without_trusted_joblib_and_never_run(
    trained, tmp_path, monkeypatch, capsys, command
):
    data = trained[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.mtr").write_bytes(pickle.dumps(_Payload()))
    assert main([command, "model.mtr", str(data), "-o", str(tmp_path / "out.csv")]) == 1
    err = capsys.readouterr().err
    assert f"sklearn-mtr {command}: error: model file 'model.mtr' is not a safe-format model" in err
    assert "pass --trusted-joblib: loading such a file runs code from it" in err
    assert not (tmp_path / "PWNED").exists()


def test_a_joblib_model_written_by_fit_is_read_back_with_trusted_joblib(tmp_path, capsys):
    data, model = tmp_path / "train.csv", tmp_path / "m.joblib"
    _table(n=60).to_csv(data, index=False)
    args = ["fit", str(data), "--targets", "click,buy", "--exclude", "row_id", "--holdout", "0", *TINY]
    assert main([*args, "-o", str(model), "--format", "joblib"]) == 0
    assert "evaluate / predict read it with --trusted-joblib" in capsys.readouterr().out
    predict = ["predict", str(model), str(data), "-o", str(tmp_path / "p.csv")]
    assert main(predict) == 1 and "--trusted-joblib" in capsys.readouterr().err
    assert main([*predict, "--trusted-joblib"]) == 0
    clf, frame = joblib.load(model), pd.read_csv(data)
    np.testing.assert_allclose(pd.read_csv(tmp_path / "p.csv"), clf.predict_proba(frame[list(clf.feature_names_in_)]))


def _damaged_deflate(path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("config.json")
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 10 : start + 60] = bytes(50)
    return bytes(data)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_damaged_deflate, "not a valid sklearn-mtr model file: config.json cannot be read"),
        (lambda path: path.read_bytes()[: path.stat().st_size // 2], "is not a safe-format model"),
    ],
)
def test_a_corrupt_model_file_gives_a_one_line_error(trained, tmp_path, capsys, damage, message):
    data, model_path, _ = trained
    (tmp_path / "bad.mtr").write_bytes(damage(model_path))
    assert main(["predict", str(tmp_path / "bad.mtr"), str(data), "-o", str(tmp_path / "p.csv")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sklearn-mtr predict: error: ") and message in err and err.count("\n") == 1


def test_fit_keeps_early_stopping_off_unless_asked():
    # The command's behaviour does not follow the estimators' early_stopping="auto" default.
    from sklearn_mtr.cli import _estimator_params, build_parser

    X = _table(n=10)[["x0", "city"]]

    def params(*extra):
        args = build_parser().parse_args(["fit", "d.csv", "--targets", "click", "-o", "m", *extra])
        return _estimator_params(MMoEClassifier, args, X)

    assert params()["early_stopping"] is False
    assert params("--early-stopping")["early_stopping"] is True
    assert params("--param", "early_stopping=auto")["early_stopping"] == "auto"


def test_threads_option_sets_n_threads_in_every_command(tmp_path, monkeypatch, capsys):
    import torch

    data, model = tmp_path / "train.csv", tmp_path / "m.mtr"
    _table(n=60).to_csv(data, index=False)
    args = ["fit", str(data), "--targets", "click,buy", "--exclude", "row_id", "-o", str(model), *TINY]
    assert main([*args, "--threads", "1"]) == 0
    assert load(model).n_threads == 1  # saved with the model

    n = 1 if torch.get_num_threads() != 1 else 2  # differs from torch's setting, so it shows
    seen = []
    original = MMoEClassifier._predict_logits

    def spy(self, frame, *a, **k):
        if len(frame) > 2:  # not the two-row check that persistence.load makes
            seen.append(torch.get_num_threads())
        return original(self, frame, *a, **k)

    monkeypatch.setattr(MMoEClassifier, "_predict_logits", spy)
    assert main(["predict", str(model), str(data), "-o", str(tmp_path / "p.csv"), "--threads", str(n)]) == 0
    assert main(["evaluate", str(model), str(data), "-o", str(tmp_path / "e.json"), "--threads", str(n)]) == 0
    assert seen == [n, n]
    assert main(["predict", str(model), str(data), "-o", str(tmp_path / "p.csv"), "--threads", "0"]) == 1
    assert "n_threads must be None or a positive integer, got 0" in capsys.readouterr().err
    assert main(["demo", "--n-samples", "200", "--max-epochs", "1", "--threads", "1"]) == 0
    assert "1 torch thread(s)" in capsys.readouterr().out


def test_predict_and_evaluate_run_a_saved_pipeline(tmp_path, capsys):
    """A Pipeline saved with persistence.save (Python) is a model file for predict / evaluate:
    the whole pipeline predicts, the task names come from its last step, --threads reaches it."""
    pytest.importorskip("skops")
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from sklearn_mtr.persistence import save

    frame = _table(n=120)
    features = ["x0", "x1", "x2", "x3", "city"]
    pre = ColumnTransformer([("num", StandardScaler(), features[:4]), ("city", OneHotEncoder(), ["city"])])
    model = make_pipeline(pre, MMoEClassifier(max_epochs=1, batch_size=64, n_experts=2, random_state=0))
    model.fit(frame[features], frame[["click", "buy"]])
    save(model, tmp_path / "pipe.mtr")
    frame.to_csv(tmp_path / "data.csv", index=False)
    out = tmp_path / "pred.csv"
    args = ["predict", str(tmp_path / "pipe.mtr"), str(tmp_path / "data.csv"), "--id-column", "row_id", "-o", str(out)]
    assert main([*args, "--threads", "1"]) == 0
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["row_id", "click", "buy"]
    np.testing.assert_allclose(pred[["click", "buy"]], model.predict_proba(frame[features]))
    assert main(["evaluate", str(tmp_path / "pipe.mtr"), str(tmp_path / "data.csv")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "Pipeline" and set(report["auc"]) == {"click", "buy"}


def test_parse_param_reads_literals_only():
    assert parse_param("expert_hidden_sizes=(64, 32)") == ("expert_hidden_sizes", (64, 32))
    assert parse_param("task_weights=[1.0, 0.5]") == ("task_weights", [1.0, 0.5])
    assert parse_param("early_stopping=True") == ("early_stopping", True)
    assert parse_param("activation=gelu") == ("activation", "gelu")
    assert parse_param("device='cuda:1'") == ("device", "cuda:1")
    with pytest.raises(ValueError, match="cannot read"):
        parse_param("lr=__import__('os').getcwd()")


def test_usage_errors_return_2(capsys):
    assert main([]) == 2
    assert main(["train"]) == 2
    assert main(["fit", "data.csv"]) == 2  # --targets and -o are required
    assert "required" in capsys.readouterr().err


def test_demo_prints_per_task_test_metrics(capsys):
    assert main(["demo", "--n-samples", "400", "--max-epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("MMoEClassifier: 300 train / 100 test rows, 2 tasks")
    assert "test AUC" in out and out.splitlines()[-1].startswith("mean")


def test_python_dash_m_help():
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "sklearn_mtr", "--help"],
        check=False,
        capture_output=True,
        text=True,
        cwd=root,
        timeout=120,
        env={"PYTHONPATH": str(root), "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m sklearn_mtr")
    for command in ("demo", "fit", "evaluate", "predict"):
        assert command in result.stdout
