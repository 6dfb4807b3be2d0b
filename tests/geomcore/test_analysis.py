"""DirectProbe's measures against independent ground truth.

Oracles: clarabel's QP of the nearest-point problem and closed forms
(tests/ground_truth.py), scipy.stats.pearsonr, scipy's pdist brute force, and
scikit-learn's NearestCentroid.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr
from sklearn.neighbors import NearestCentroid

from geomcore.analysis import (
    LABEL_PAIR_ORDER,
    DistanceVector,
    analyze_probe,
    cluster_pair_distances,
    distance_vector,
    inside_distances,
    label_centroids,
    label_pair_distances,
    min_distance_per_label,
    pearson_r,
    spatial_similarity,
)
from geomcore.distances import label_distances
from tests.ground_truth import qp_distance, simplices_at_gap


def _clustered(rng, d=3):
    """5 clusters of 3 labels in d dims: label 0 has 2 clusters, label 1 has 2, label 2 has 1.

    Cluster 3 (label 1) is placed on top of cluster 0 (label 0) so that one
    different-label pair overlaps.
    """
    centers = np.array([[0, 0, 0], [6, 0, 0], [0, 6, 0], [0.2, 0.1, 0], [6, 6, 1]], float)[:, :d]
    sizes = [7, 5, 6, 4, 8]
    cluster_label = np.array([0, 0, 1, 1, 2])
    X = np.vstack([c + rng.normal(scale=0.7, size=(s, d)) for c, s in zip(centers, sizes)])
    cluster_of = np.repeat(np.arange(5), sizes)
    # shuffle rows so clusters are not contiguous
    perm = rng.permutation(X.shape[0])
    return X[perm], cluster_of[perm], cluster_label


def test_cluster_pair_distances_match_qp_and_skip_same_label_pairs():
    rng = np.random.default_rng(0)
    X, cluster_of, cluster_label = _clustered(rng)
    cd = cluster_pair_distances(X, cluster_of, cluster_label, tol=1e-6, rtol=1e-6)
    expected_pairs = [
        (i, j) for i in range(5) for j in range(i + 1, 5) if cluster_label[i] != cluster_label[j]
    ]
    assert [tuple(p) for p in cd.pairs.tolist()] == expected_pairs
    assert np.array_equal(cd.label_pairs, cluster_label[cd.pairs])
    for (i, j), d, sep in zip(cd.pairs, cd.distance, cd.separable):
        truth = qp_distance(X[cluster_of == i], X[cluster_of == j])
        if truth < 1e-7:
            assert not sep and d == 0.0, (i, j, d, truth)
        else:
            assert sep
            assert d == pytest.approx(truth, rel=1e-3, abs=1e-8), (i, j)
    # the overlapping pair (0, 3) is reported, not dropped
    k = expected_pairs.index((0, 3))
    assert not cd.separable[k] and cd.distance[k] == 0.0


def test_label_pair_distances_are_means_and_mins_over_cluster_pairs():
    rng = np.random.default_rng(1)
    X, cluster_of, cluster_label = _clustered(rng)
    cd = cluster_pair_distances(X, cluster_of, cluster_label, rtol=1e-6)
    ld = label_pair_distances(cd, ["A", "B", "C"])
    q = {
        (i, j): qp_distance(X[cluster_of == i], X[cluster_of == j])
        for i in range(5)
        for j in range(5)
        if cluster_label[i] != cluster_label[j]
    }
    for a in range(3):
        for b in range(3):
            if a == b:
                assert ld.matrix[a, b] == 0.0
                continue
            ds = [
                v if v > 1e-7 else 0.0
                for (i, j), v in q.items()
                if cluster_label[i] == a and cluster_label[j] == b
            ]
            assert ld.n_cluster_pairs[a, b] == len(ds)
            assert ld.matrix[a, b] == pytest.approx(np.mean(ds), rel=1e-3, abs=1e-8)
            assert ld.nearest[a, b] == pytest.approx(np.min(ds), rel=1e-3, abs=1e-8)
    # labels A and B overlap through clusters 0 and 3; A-C and B-C do not
    assert not ld.separable[0, 1] and ld.separable[0, 2] and ld.separable[1, 2]
    assert ld.nearest[0, 1] == 0.0
    np.testing.assert_allclose(
        ld.min_distance, [ld.matrix[0, 1], ld.matrix[0, 1], min(ld.matrix[2, :2])]
    )


def test_linear_case_gives_the_analytic_gap():
    rng = np.random.default_rng(2)
    A, B = simplices_at_gap(4, 0.37, rng, n_extra=5)
    X = np.vstack([A, B])
    cluster_of = np.r_[np.zeros(len(A), int), np.ones(len(B), int)]
    cd = cluster_pair_distances(X, cluster_of, [0, 1], rtol=1e-6)
    ld = label_pair_distances(cd, ["x", "y"])
    assert ld.matrix[0, 1] == pytest.approx(0.37, rel=1e-4)
    vec = ld.vector
    assert vec.pairs == (("x", "y"),)
    assert vec.values[0] == pytest.approx(0.37, rel=1e-4)
    # distances scale with the data, and translation does not change them
    cd2 = cluster_pair_distances(3.0 * X + 11.0, cluster_of, [0, 1], rtol=1e-6)
    assert cd2.distance[0] == pytest.approx(3 * 0.37, rel=1e-4)


def test_one_label_has_no_pairs_and_no_crash():
    X = np.random.default_rng(3).normal(size=(6, 2))
    cd = cluster_pair_distances(X, np.zeros(6, int), [0])
    assert cd.n_pairs == 0
    ld = label_pair_distances(cd, ["only"])
    assert ld.matrix.shape == (1, 1) and ld.matrix[0, 0] == 0.0
    assert ld.vector.pairs == () and ld.vector.values.shape == (0,)
    assert ld.min_distance[0] == np.inf


def test_distance_vector_order_is_row_major_upper_triangle():
    m = np.array([[0, 1, 2, 3], [1, 0, 4, 5], [2, 4, 0, 6], [3, 5, 6, 0]], float)
    v = distance_vector(m, ["a", "b", "c", "d"])
    assert v.pairs == (("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"), ("c", "d"))
    np.testing.assert_array_equal(v.values, [1, 2, 3, 4, 5, 6])
    assert "i < j" in LABEL_PAIR_ORDER and "row-major" in LABEL_PAIR_ORDER
    with pytest.raises(ValueError, match=r"must be \(3, 3\)"):
        distance_vector(m, ["a", "b", "c"])


@pytest.mark.parametrize("seed", range(5))
def test_pearson_r_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=20)
    y = 0.5 * x + rng.normal(size=20) * (seed + 1) * 0.3
    assert pearson_r(x, y) == pytest.approx(pearsonr(x, y).statistic, abs=1e-12)


def test_pearson_r_rejects_what_has_no_value():
    with pytest.raises(ValueError, match="constant"):
        pearson_r([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="at least 2"):
        pearson_r([1.0], [2.0])
    with pytest.raises(ValueError, match="differ in length"):
        pearson_r([1.0, 2.0], [1.0, 2.0, 3.0])


def test_spatial_similarity_aligns_pairs_by_label_names():
    rng = np.random.default_rng(7)
    labels_a = ["a", "b", "c", "d"]
    ma = rng.uniform(1, 2, size=(4, 4))
    ma = ma + ma.T
    va = distance_vector(ma, labels_a)
    # B: a different label order, one label missing (d) and one extra (e); pair
    # orientation reversed in places.
    truth = {frozenset(p): v for p, v in zip(va.pairs, va.values)}
    b_pairs = [("c", "a"), ("b", "a"), ("e", "a"), ("c", "b")]
    b_vals = [truth[frozenset(("a", "c"))] * 2 + 1, truth[frozenset(("a", "b"))] * 2 + 1, 9.0, 0.5]
    vb = DistanceVector(pairs=tuple(b_pairs), values=np.array(b_vals))
    sim = spatial_similarity(va, vb)
    shared_a = [truth[frozenset(p)] for p in [("a", "b"), ("a", "c"), ("b", "c")]]
    shared_b = [b_vals[1], b_vals[0], b_vals[3]]
    assert sim.n_shared == 3
    assert sim.shared == (("a", "b"), ("a", "c"), ("b", "c"))
    assert sim.r == pytest.approx(pearsonr(shared_a, shared_b).statistic, abs=1e-12)
    assert set(sim.only_a) == {("a", "d"), ("b", "d"), ("c", "d")}
    assert sim.only_b == (("e", "a"),)
    with pytest.raises(ValueError, match="share no label pair"):
        spatial_similarity(va, DistanceVector(pairs=(("x", "y"),), values=np.array([1.0])))


def test_min_distance_per_label_by_hand():
    m = np.array([[0, 3, 1], [3, 0, 2], [1, 2, 0]], float)
    np.testing.assert_array_equal(min_distance_per_label(m), [1, 2, 1])
    assert min_distance_per_label(np.zeros((1, 1)))[0] == np.inf


def test_undefined_min_distance_is_inf_everywhere():
    """A label with no other label: the minimum over an empty set, inf, in every API."""
    X = np.random.default_rng(5).normal(size=(5, 3))
    ld = label_distances(X, ["only"] * 5)
    assert ld.labels.tolist() == ["only"] and ld.min_distance.tolist() == [np.inf]
    assert min_distance_per_label(ld.matrix).tolist() == [np.inf]
    # with two labels both give the one finite distance, to each label
    two = label_distances(np.vstack([X, X + 10.0]), ["a"] * 5 + ["b"] * 5)
    np.testing.assert_array_equal(two.min_distance, min_distance_per_label(two.matrix))
    assert np.all(np.isfinite(two.min_distance)) and two.min_distance[0] > 0


def test_inside_distances_match_brute_force_with_chunking():
    rng = np.random.default_rng(4)
    sizes = [1, 2, 40, 23, 1]
    cluster_label = np.array([0, 0, 0, 1, 2])
    X = rng.normal(size=(sum(sizes), 5)) * 3 + 100.0  # offset: tests the centering
    cluster_of = rng.permutation(np.repeat(np.arange(5), sizes))
    # block_elements=50 forces row blocks of 1-2 rows for the 40-point cluster
    got = inside_distances(X, cluster_of, cluster_label, 3, block_elements=50)
    whole = inside_distances(X, cluster_of, cluster_label, 3)
    for c in range(5):
        pts = X[cluster_of == c]
        if len(pts) < 2:
            assert (
                np.isnan(got.cluster_mean[c])
                and np.isnan(got.cluster_max[c])
                and got.cluster_n_pairs[c] == 0
            )
            continue
        ref = pdist(pts)
        assert got.cluster_n_pairs[c] == ref.size
        assert got.cluster_mean[c] == pytest.approx(ref.mean(), rel=1e-9)
        assert got.cluster_max[c] == pytest.approx(ref.max(), rel=1e-9)
        assert whole.cluster_mean[c] == pytest.approx(ref.mean(), rel=1e-9)
    pooled0 = np.concatenate([pdist(X[cluster_of == c]) for c in (0, 1, 2)])
    assert got.label_mean[0] == pytest.approx(pooled0.mean(), rel=1e-9)
    assert got.label_max[0] == pytest.approx(pooled0.max(), rel=1e-9)
    assert got.label_n_pairs.tolist() == [pooled0.size, 23 * 22 // 2, 0]
    assert np.isnan(got.label_mean[2]) and np.isnan(got.label_max[2])


def test_label_centroids_match_sklearn():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, 4))
    y = rng.integers(0, 3, size=30)
    ref = NearestCentroid().fit(X, y).centroids_
    np.testing.assert_allclose(label_centroids(X, y, 3), ref, rtol=1e-12)


def test_analyze_probe_on_a_probe_like_object():
    rng = np.random.default_rng(6)
    X, cluster_of, cluster_label = _clustered(rng, d=2)
    y = cluster_label[cluster_of]
    probe = SimpleNamespace(
        X=X,
        labels=np.array(["A", "B", "C"]),
        y=y,
        cluster_of=cluster_of,
        cluster_label=cluster_label,
    )
    an = analyze_probe(probe, rtol=1e-6)
    ab = [qp_distance(X[cluster_of == i], X[cluster_of == 4]) for i in (0, 1)]
    assert an.label_distances.matrix[0, 2] == pytest.approx(np.mean(ab), rel=1e-3)
    assert an.distance_vector.pairs == (("A", "B"), ("A", "C"), ("B", "C"))
    np.testing.assert_allclose(an.centroids, NearestCentroid().fit(X, y).centroids_, rtol=1e-12)
    with pytest.raises(TypeError, match="no attribute `cluster_of`"):
        analyze_probe(SimpleNamespace(X=X, labels=[0], y=y, cluster_label=[0]))


def test_bad_clusterings_are_named():
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="cluster id 5 at index 1"):
        cluster_pair_distances(X, [0, 5, 0, 1], [0, 1])
    with pytest.raises(ValueError, match="cluster 1 has no points"):
        cluster_pair_distances(X, [0, 0, 2, 2], [0, 1, 1])
    with pytest.raises(TypeError, match="integer label indices"):
        cluster_pair_distances(X, [0, 0, 1, 1], [0.5, 1.0])
    with pytest.raises(ValueError, match="3 entries but `X` has 4 rows"):
        cluster_pair_distances(X, [0, 0, 1], [0, 1])
    with pytest.raises(ValueError, match="label index 4 for cluster 1"):
        inside_distances(X, [0, 0, 1, 1], [0, 4], 2)
