import numpy as np
import pytest

from audiomae.classify.adapt import cluster_refine, enrolment_mask, group_standardize


def test_each_group_is_standardised_by_its_own_statistics():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((40, 3))
    groups = np.repeat(["a", "b"], 20)
    shifted = base + np.where(groups == "b", 5.0, 0.0)[:, None] * np.array([1.0, -2.0, 0.5])
    scaled = shifted * np.where(groups == "b", 3.0, 1.0)[:, None]
    out = group_standardize(scaled, groups)
    for g in ("a", "b"):
        rows = out[groups == g]
        np.testing.assert_allclose(rows.mean(0), 0.0, atol=1e-9)
        np.testing.assert_allclose(rows.std(0), 1.0, atol=1e-5)
    # the within-group pattern is kept: b's rows are a's rows' transform up to the z-score
    np.testing.assert_allclose(out[groups == "b"], group_standardize(base[20:], groups[20:]), atol=1e-5)


def test_reference_rows_set_the_statistics_for_all_rows_of_their_group():
    x = np.arange(10, dtype=float)[:, None]
    groups = ["s"] * 10
    ref = np.zeros(10, dtype=bool)
    ref[:2] = True  # rows 0 and 1: mean 0.5, std 0.5
    out = group_standardize(x, groups, ref)
    np.testing.assert_allclose(out[:, 0], (np.arange(10) - 0.5) / (0.5 + 1e-6))


def test_a_group_without_two_reference_rows_is_an_error():
    with pytest.raises(ValueError, match="group .b. has 1 reference rows; standardising needs 2 or more"):
        group_standardize(np.ones((3, 2)), ["a", "a", "b"])
    with pytest.raises(ValueError, match="one group per row"):
        group_standardize(np.ones((3, 2)), ["a", "b"])


def test_enrolment_mask_picks_per_group_rows_reproducibly():
    groups = np.array(["a"] * 8 + ["b"] * 3)
    m = enrolment_mask(groups, 5, seed=1)
    assert m[groups == "a"].sum() == 5 and m[groups == "b"].sum() == 3
    assert np.array_equal(m, enrolment_mask(groups, 5, seed=1))


def test_cluster_refine_relabels_clips_by_the_clusters_they_form():
    rng = np.random.default_rng(0)
    centres = np.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]])
    truth = np.repeat([0, 1, 2], 20)
    x = centres[truth] + rng.standard_normal((60, 3)) * 0.5
    logits = np.eye(3)[truth] * 2.0
    wrong = rng.choice(60, 12, replace=False)  # a fifth confidently mislabelled
    logits[wrong] = np.eye(3)[(truth[wrong] + 1) % 3] * 2.0
    assert (logits.argmax(1) == truth).mean() == pytest.approx(0.8)
    np.testing.assert_array_equal(cluster_refine(x, logits), truth)


def test_cluster_refine_keeps_an_empty_class_out_and_checks_shapes():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    logits = np.array([[3.0, 0.0, -9.0], [3.0, 0.0, -9.0], [0.0, 3.0, -9.0], [0.0, 3.0, -9.0]])
    np.testing.assert_array_equal(cluster_refine(x, logits), [0, 0, 1, 1])
    with pytest.raises(ValueError, match="rounds"):
        cluster_refine(x, logits, rounds=0)
    with pytest.raises(ValueError, match="logits"):
        cluster_refine(x, logits[:3])
