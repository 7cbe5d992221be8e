"""scikit-learn's estimator checks on every public estimator."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_mtr import MMoEClassifier, PLEClassifier, SharedBottomClassifier

# Small and quick: one batch per epoch on the checks' data sets (tens of rows).
SMALL = dict(embedding_dim=4, tower_hidden_sizes=(8,), max_epochs=15, lr=0.03, batch_size=512, random_state=0)
ESTIMATORS = [
    SharedBottomClassifier(bottom_hidden_sizes=(16,), **SMALL),
    MMoEClassifier(n_experts=2, expert_hidden_sizes=(16,), **SMALL),
    PLEClassifier(n_levels=2, expert_hidden_sizes=(16,), **SMALL),
]


def expected_failed_checks(estimator):
    return {
        "check_sample_weight_equivalence_on_dense_data": (
            "mini-batch training: repeating a row twice changes the batches and the number of "
            "steps, so it cannot equal a weight of 2 exactly (MLPClassifier is in the same case)."
        ),
    }


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
