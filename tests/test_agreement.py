"""aesthetics_jax.explain.agreement against independent references.

References, never the module's own output: hand-computed tiny maps (the arithmetic is written out in
each test), direct transcriptions of the MIT MATLAB formulas (``cvzoya/saliency``
``code_forMetrics/*.m``) written here, ``sklearn.metrics.roc_auc_score`` where an AUC reduces to an
ROC AUC (the exact relation is derived in the test), ``scipy.stats.pearsonr`` / ``entropy`` /
``ndimage.gaussian_filter``, and numbers produced by pysaliency 0.2.22 itself (pasted, see
``PYSALIENCY_*`` below).
"""

import math

import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
import sklearn.metrics

from aesthetics_jax.explain import agreement as A

TOL = 1e-12


# --------------------------------------------------------------------------------------- AUC-Judd


# A 3x3 map with distinct values; fixations at values 0.9, 0.5, 0.2.
S3 = np.array([[0.9, 0.1, 0.4], [0.2, 0.8, 0.3], [0.0, 0.5, 0.6]])
F3 = [(0, 0), (2, 1), (1, 0)]


def test_auc_judd_hand_computed_3x3():
    # Np = 9, Nf = 3, 6 non-fixated pixels. Thresholds 0.9, 0.5, 0.2 (min-max keeps the order).
    # #{S >= 0.9} = 1 -> FP1 = (1-1)/6 = 0;   TP1 = 1/3
    # #{S >= 0.5} = 4 (0.9, 0.8, 0.5, 0.6) -> FP2 = (4-2)/6;   TP2 = 2/3
    # #{S >= 0.2} = 7 (all but 0.1, 0.0) -> FP3 = (7-3)/6;   TP3 = 1
    fp = [0, 0, 2 / 6, 4 / 6, 1]
    tp = [0, 1 / 3, 2 / 3, 1, 1]
    expected = sum((fp[i + 1] - fp[i]) * (tp[i + 1] + tp[i]) / 2 for i in range(4))
    assert expected == pytest.approx(7 / 9, abs=TOL)
    assert A.auc_judd(S3, F3, jitter=False) == pytest.approx(7 / 9, abs=TOL)
    # the same fixations as a binary map; jitter (1e-7 of the range) cannot reorder values 0.1 apart
    fmap = np.zeros((3, 3))
    fmap[0, 0] = fmap[2, 1] = fmap[1, 0] = 1
    assert A.auc_judd(S3, fmap, jitter=False) == pytest.approx(7 / 9, abs=TOL)
    assert A.auc_judd(S3, fmap) == pytest.approx(7 / 9, abs=1e-6)
    # ROC AUC of the same data: pairs (fixated > non-fixated): 0.9 beats 6, 0.5 beats 4, 0.2 beats 2
    assert sklearn.metrics.roc_auc_score(fmap.ravel(), S3.ravel()) == pytest.approx(12 / 18)


def test_auc_judd_tied_fixations_mit_vs_grouped():
    s = np.array([[1.0, 1.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    f = [(0, 0), (0, 1)]  # both fixations at value 1; 7 non-fixated pixels
    # MIT loop: i=1: #{S>=1} = 2 -> TP 1/2, FP (2-1)/7; i=2: TP 1, FP (2-2)/7 = 0.
    # points (0,0) (1/7,1/2) (0,1) (1,1): 1/7*(1/2)/2 - 1/7*(3/2)/2 + 1*1 = 1 - 1/14
    assert A.auc_judd(s, f, jitter=False) == pytest.approx(1 - 1 / 14, abs=TOL)
    # grouped (pysaliency): one threshold at 1: TP 1, FP 0 -> a perfect 1.0
    assert A.auc_judd(s, f, jitter=False, ties="grouped") == pytest.approx(1.0, abs=TOL)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_judd_is_roc_auc_plus_half_step(seed):
    # For distinct values, sort the fixated values t_1 > ... > t_Nf. Between consecutive
    # thresholds MIT's curve is one trapezoid from (FP_i, i/Nf) to (FP_{i+1}, (i+1)/Nf), while the
    # exact ROC curve (sklearn) moves right at height i/Nf and then up: the trapezoid adds
    # (FP_{i+1} - FP_i) / (2 Nf). The first segment from (0, 0) adds FP_1 / (2 Nf) the same way,
    # the last one to (1, 1) is flat in both. Summed: AUC_Judd = AUC_ROC + FP_Nf / (2 Nf), with
    # FP_Nf the fraction of non-fixated pixels at or above the lowest fixated value.
    rng = np.random.default_rng(seed)
    s = rng.random((12, 16))
    f = np.zeros((12, 16), bool)
    f.ravel()[rng.choice(s.size, 20, replace=False)] = True
    fp_last = np.mean(s[~f] >= s[f].min())
    expected = sklearn.metrics.roc_auc_score(f.ravel(), s.ravel()) + fp_last / (2 * f.sum())
    assert A.auc_judd(s, f, jitter=False) == pytest.approx(expected, abs=TOL)
    assert A.auc_judd(s, f, jitter=False, ties="grouped") == pytest.approx(expected, abs=TOL)


def test_auc_judd_jitter_breaks_ties_near_chance_for_constant_regions():
    # a map that is 0 almost everywhere: jitter orders the zeros at random -> fixations on zeros
    # score like chance among the zeros; without jitter MIT's loop is what the formula says.
    s = np.zeros((10, 10))
    s[0, 0] = 1.0
    f = [(0, 0)] + [(r, 5) for r in range(10)]
    # without jitter: thresholds 1, then 0 (x10). #{S >= 1} = 1; #{S >= 0} = 100.
    # TP_i = i/11; FP_1 = 0; FP_i = (100 - i)/89 for i = 2..11  (the MIT loop, literally)
    tp = [0] + [i / 11 for i in range(1, 12)] + [1]
    fp = [0, 0] + [(100 - i) / 89 for i in range(2, 12)] + [1]
    expected = sum((fp[i + 1] - fp[i]) * (tp[i + 1] + tp[i]) / 2 for i in range(len(tp) - 1))
    assert A.auc_judd(s, f, jitter=False) == pytest.approx(expected, abs=TOL)
    jittered = [A.auc_judd(s, f, rng=seed) for seed in range(20)]
    # 1 fixation on the top value, 10 on random positions among 99 zeros: E = (1 + 10 * 0.5 + ...)
    # the exact ROC expectation is (89 + 10 * 89 / 2) / (11 * 89) = 6 / 11; Judd adds <= 1/22
    assert 6 / 11 - 0.05 < np.mean(jittered) < 6 / 11 + 1 / 22 + 0.05


# ------------------------------------------------------------------------------- AUC-Borji and sAUC


def test_auc_borji_expectation_is_roc_auc_against_all_pixels():
    # Map values on the threshold grid (multiples of step = 0.25, min 0, max 1): every distinct
    # value is a threshold, so each split's curve is the exact ROC curve of the fixated values vs
    # that split's negatives (ties counted 1/2), and the AUC is linear in the negatives'
    # empirical distribution. Negatives are drawn uniformly from all pixels, so the mean over
    # splits estimates the ROC AUC of the fixated values against all pixels' values.
    rng = np.random.default_rng(3)
    s = rng.integers(0, 5, size=(8, 8)) / 4.0
    s[0, 0], s[0, 1] = 0.0, 1.0
    f = np.zeros((8, 8), bool)
    f.ravel()[rng.choice(64, 12, replace=False)] = True
    pos = s[f]
    labels = np.r_[np.ones(pos.size), np.zeros(s.size)]
    expected = sklearn.metrics.roc_auc_score(labels, np.r_[pos, s.ravel()])
    got = A.auc_borji(s, f, num_splits=4000, step=0.25, rng=0)
    # one split's AUC has sd <~ 0.15 here; the mean of 4000 splits has sd <~ 0.003
    assert got == pytest.approx(expected, abs=0.012)


def test_auc_shuffled_hand_computed_deterministic():
    # min 0, max 1: min-max normalisation leaves the values unchanged.
    s = np.array([[0.05, 0.95, 0.35], [0.55, 1.0, 0.15], [0.0, 0.75, 0.25]])
    fix = [(0, 1), (1, 0), (2, 2)]  # values 0.95, 0.55, 0.25
    other = [(0, 2), (1, 1)]  # values 0.35, 1.0; No = 2 <= Nf = 3 -> both used in every split
    # thresholds 1.0, 0.9, ..., 0.0 (max of all = 1.0); TP = #{pos >= t}/3, FP = #{neg >= t}/2:
    # t=1.0: (1/2, 0); t=0.9..0.6: (1/2, 1/3); t=0.5, 0.4: (1/2, 2/3); t=0.3: (1, 2/3); t<=0.2: (1, 1)
    fp = [0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1, 1, 1, 1, 1]
    tp = [0, 0, 1 / 3, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 2 / 3, 2 / 3, 1, 1, 1, 1]
    expected = sum((fp[i + 1] - fp[i]) * (tp[i + 1] + tp[i]) / 2 for i in range(len(fp) - 1))
    assert expected == pytest.approx(1 / 3, abs=TOL)  # = 2 of 6 (pos, neg) pairs ordered right
    for seed in (0, 1, 2):
        assert A.auc_shuffled(s, fix, other, rng=seed) == pytest.approx(1 / 3, abs=TOL)
    omap = np.zeros((3, 3))
    omap[0, 2] = omap[1, 1] = 1
    assert A.auc_shuffled(s, fix, omap, num_splits=3) == pytest.approx(1 / 3, abs=TOL)


def test_auc_shuffled_coarse_thresholds_count_near_values_as_ties():
    # fixated 0.56 vs other-image fixation 0.52 fall between the same thresholds (0.5 and 0.6):
    # thresholds 0:0.1:0.56 = 0, ..., 0.5 -> the only non-trivial point is t <= 0.5: (1, 1).
    # The curve (0,0) -> (1,1) has area 1/2, although the exact ROC AUC would be 1.
    s = np.array([[0.0, 0.56], [0.52, 1.0]])
    assert A.auc_shuffled(s, [(0, 1)], [(1, 0)]) == pytest.approx(0.5, abs=TOL)
    # with step 0.01 the threshold 0.56 separates them
    assert A.auc_shuffled(s, [(0, 1)], [(1, 0)], step=0.01) == pytest.approx(1.0, abs=TOL)


def _matlab_auc_judd(saliency_map, fixation_map):
    """AUC_Judd.m without jitter, line by line (the map already has min 0 and max 1)."""
    S = saliency_map.ravel()
    F = fixation_map.ravel()
    Sth = S[F > 0]
    Nfixations, Npixels = len(Sth), len(S)
    allthreshes = sorted(Sth, reverse=True)
    tp = [0.0] * (Nfixations + 2)
    fp = [0.0] * (Nfixations + 2)
    tp[-1] = fp[-1] = 1.0
    for i in range(1, Nfixations + 1):
        aboveth = sum(1 for v in S if v >= allthreshes[i - 1])
        tp[i] = i / Nfixations
        fp[i] = (aboveth - i) / (Npixels - Nfixations)
    return sum((fp[k + 1] - fp[k]) * (tp[k + 1] + tp[k]) / 2 for k in range(len(fp) - 1))


def _matlab_auc_shuffled_all_other(saliency_map, fixation_map, other_map, step=0.1):
    """AUC_shuffled.m when the other map has <= Nf fixated pixels (every split uses all of them).

    Map values are multiples of 1/19 with min 0 and max 1, so no value lies within round-off of a
    threshold other than 0 and 1 and plain ``np.arange`` thresholds behave like MATLAB's colon.
    """
    S, F, Oth = saliency_map.ravel(), fixation_map.ravel(), other_map.ravel()
    Sth = S[F > 0]
    curfix = S[Oth > 0]
    allthreshes = np.arange(0, max(np.r_[Sth, curfix]) + 1e-9, step)[::-1]
    tp = [0.0] + [np.sum(Sth >= t) / len(Sth) for t in allthreshes] + [1.0]
    fp = [0.0] + [np.sum(curfix >= t) / len(curfix) for t in allthreshes] + [1.0]
    return sum((fp[k + 1] - fp[k]) * (tp[k + 1] + tp[k]) / 2 for k in range(len(fp) - 1))


@pytest.mark.parametrize("seed", [0, 1])
def test_auc_judd_and_shuffled_transcribe_mit_on_tied_maps(seed):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 20, size=(12, 12)) / 19.0
    s[0, 0], s[0, 1] = 0.0, 1.0
    f = np.zeros((12, 12), bool)
    f.ravel()[rng.choice(144, 30, replace=False)] = True
    other = np.zeros((12, 12), bool)
    other.ravel()[rng.choice(144, 15, replace=False)] = True
    assert A.auc_judd(s, f, jitter=False) == pytest.approx(_matlab_auc_judd(s, f), abs=1e-12)
    expected = _matlab_auc_shuffled_all_other(s, f, other)
    assert A.auc_shuffled(s, f, other, rng=seed) == pytest.approx(expected, abs=1e-12)


def test_thresholds_follow_matlab_colon():
    # MATLAB: 0:0.1:0.3 - (0:0.1:0.4)(1:4) = 1e-16 * [0 0 -0.2776 -0.5551] (the colon operator fills
    # the second half downwards from the end point). A value of exactly 0.6 (e.g. 153/255) must
    # reach the threshold 0.6 of 0:0.1:1, which 6 * 0.1 = 0.6000000000000001 would not.
    x, y = A._matlab_colon(0.0, 0.1, 0.3), A._matlab_colon(0.0, 0.1, 0.4)
    np.testing.assert_allclose((x - y[:4]) / 1e-16, [0, 0, -0.2776, -0.5551], atol=1e-4)
    assert x[-1] == 0.3 and len(A._matlab_colon(0.0, 0.1, 0.56)) == 6
    assert 153 / 255 == 0.6 and 6 * 0.1 > 0.6
    s = np.array([[0.0, 0.6], [0.59, 1.0]])
    # fixated 0.6 vs other 0.59: thresholds up to 1 (max), 0.6 separates them -> AUC 1
    assert A.auc_shuffled(s, [(0, 1)], [(1, 0)]) == pytest.approx(1.0, abs=TOL)


# --------------------------------------------------------------------------------------------- NSS


def test_nss_hand_computed():
    s = np.array([[1.0, 2.0], [3.0, 4.0]])
    # mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5
    assert A.nss(s, [(1, 1)]) == pytest.approx(1.5 / math.sqrt(5 / 3), abs=TOL)  # MATLAB std, N-1
    assert A.nss(s, [(1, 1)], ddof=0) == pytest.approx(1.5 / math.sqrt(5 / 4), abs=TOL)  # np.std
    # MIT averages over fixated *pixels*: (1,1) twice and (0,0) once -> (z(4) + z(1)) / 2 = 0
    assert A.nss(s, [(1, 1), (1, 1), (0, 0)]) == pytest.approx(0.0, abs=TOL)
    # fractional coordinates are floored; a map gives the same as points
    assert A.nss(s, [(1.7, 1.2)]) == pytest.approx(1.5 / math.sqrt(5 / 3), abs=TOL)
    assert A.nss(s, np.array([[0, 0], [0, 7]], np.uint8)) == pytest.approx(1.5 / math.sqrt(5 / 3), abs=TOL)


def test_nss_transcribes_mit_on_random_maps():
    rng = np.random.default_rng(5)
    s = rng.gamma(2.0, size=(9, 13))
    f = rng.random((9, 13)) < 0.2
    # NSS.m: map = (map - mean(map(:))) / std(map(:)); score = mean(map(logical(fixationMap)))
    flat = s.ravel()
    mu = sum(flat) / flat.size
    sd = math.sqrt(sum((v - mu) ** 2 for v in flat) / (flat.size - 1))
    expected = np.mean([(v - mu) / sd for v in s[f]])
    assert A.nss(s, f) == pytest.approx(expected, abs=1e-12)
    assert A.nss(s, f, ddof=0) == pytest.approx(expected * math.sqrt(flat.size / (flat.size - 1)), abs=1e-12)


# ---------------------------------------------------------------------------------- CC, SIM, KLD


@pytest.mark.parametrize("seed", [0, 1])
def test_cc_matches_pearsonr(seed):
    rng = np.random.default_rng(seed)
    q = rng.random((10, 14))
    p = 0.5 * q + rng.random((10, 14))
    assert A.cc(p, q) == pytest.approx(scipy.stats.pearsonr(p.ravel(), q.ravel()).statistic, abs=1e-12)
    assert A.cc(-p, q) == pytest.approx(-scipy.stats.pearsonr(p.ravel(), q.ravel()).statistic, abs=1e-12)


def test_sim_hand_computed_both_normalisations():
    p = np.array([[0.0, 1.0], [2.0, 3.0]])
    q = np.array([[1.0, 1.0], [1.0, 2.0]])
    # MIT: min-max then / sum. P -> [0, 1/3, 2/3, 1] / 2 = [0, 1/6, 1/3, 1/2]; Q -> [0, 0, 0, 1]
    # SIM = 0 + 0 + 0 + min(1/2, 1) = 1/2
    assert A.sim(p, q) == pytest.approx(0.5, abs=TOL)
    # pysaliency: only / sum (no negative minimum). P -> [0, 1/6, 2/6, 3/6]; Q -> [.2, .2, .2, .4]
    # SIM = 0 + 1/6 + 0.2 + 0.4
    assert A.sim(p, q, normalization="pysaliency") == pytest.approx(1 / 6 + 0.2 + 0.4, abs=TOL)


def test_kld_hand_computed_and_against_scipy_entropy():
    eps = 2.2204e-16
    p = np.array([[1.0, 2.0], [3.0, 4.0]])
    q = np.array([[4.0, 3.0], [2.0, 1.0]])
    # sum-normalised: P = [.1, .2, .3, .4], Q = [.4, .3, .2, .1]
    hand = 0.4 * math.log(4) + 0.3 * math.log(1.5) + 0.2 * math.log(2 / 3) + 0.1 * math.log(0.25)
    assert A.kld(p, q) == pytest.approx(hand, abs=1e-12)
    assert A.kld(p, q) == pytest.approx(scipy.stats.entropy(q.ravel(), p.ravel()), abs=1e-12)
    # KLdiv.m literally: sum(sum(map2 .* log(eps + map2 ./ (map1 + eps)))), zeros in Q included
    q2 = np.array([[1.0, 0.0], [0.0, 0.0]])
    p1 = p / p.sum()
    expected = sum(qv * math.log(eps + qv / (pv + eps)) for qv, pv in zip(q2.ravel(), p1.ravel()))
    assert A.kld(p, q2) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(math.log(10), abs=1e-12)


def test_perfect_prediction():
    rng = np.random.default_rng(0)
    d = scipy.ndimage.gaussian_filter(rng.random((24, 32)), 3)
    d = (d - d.min()) / (d.max() - d.min())  # in [0, 1] with one exact zero
    assert A.cc(d, d) == pytest.approx(1.0, abs=1e-12)
    assert A.sim(d, d) == pytest.approx(1.0, abs=1e-12)
    assert A.kld(d, d) == pytest.approx(0.0, abs=1e-12)
    s = A.score(d, d, metrics=("cc", "sim", "kld"))
    assert s == pytest.approx({"cc": 1.0, "sim": 1.0, "kld": 0.0}, abs=1e-12)


def test_constant_maps_score_as_uniform():
    rng = np.random.default_rng(1)
    q = rng.random((6, 6))
    f = q > 0.7
    for const in (np.zeros((6, 6)), np.full((6, 6), 0.3)):
        assert A.auc_judd(const, f) == 0.5
        assert A.auc_borji(const, f) == 0.5
        assert A.auc_shuffled(const, f, [(0, 0)]) == 0.5
        assert A.nss(const, f) == 0.0
        assert A.cc(const, q) == 0.0
        # SIM against the uniform distribution: sum_p min(1/36, Qn_p), Qn = minmax(q) / sum
        qn = (q - q.min()) / (q.max() - q.min())
        qn = qn / qn.sum()
        assert A.sim(const, q) == pytest.approx(np.minimum(1 / 36, qn).sum(), abs=TOL)
        qs = q / q.sum()
        assert A.kld(const, q) == pytest.approx(np.sum(qs * np.log(qs * 36)), abs=1e-12)
    assert math.isnan(A.cc(q, np.ones((6, 6))))


# --------------------------------------------------------------------------- references and resize


def test_fixations_from_density_hand():
    d = np.arange(16.0).reshape(4, 4)
    expected = np.zeros((4, 4), bool)
    expected[3] = True  # values 12..15 = the top 4 of 16
    np.testing.assert_array_equal(A.fixations_from_density(d, top=0.25), expected)
    # ties at the threshold are all included: top 1 of 4 is value 1, which three pixels share
    np.testing.assert_array_equal(
        A.fixations_from_density(np.array([[0.0, 1.0], [1.0, 1.0]]), top=0.25), [[False, True], [True, True]]
    )
    with pytest.raises(ValueError, match="too flat"):
        A.fixations_from_density(np.full((4, 4), 0.5))


def test_density_from_fixations_is_a_normalised_gaussian_blur():
    pts = [(10, 12), (30, 40), (30, 40), (49, 0)]
    counts = np.zeros((50, 50))
    for r, c in pts:
        counts[r, c] += 1
    np.testing.assert_allclose(A.density_from_fixations(pts, (50, 50), blur=0), counts / 4, atol=TOL)
    # sigma = 0.03 * 50 = 1.5 px, zero padding, kernel truncated at 4 sigma
    ref = scipy.ndimage.gaussian_filter(counts, 1.5, mode="constant", truncate=4.0)
    got = A.density_from_fixations(pts, (50, 50))
    np.testing.assert_allclose(got, ref / ref.sum(), atol=1e-9)
    assert got.sum() == pytest.approx(1.0, abs=TOL)


def test_score_with_fixation_points_uses_blurred_counts_and_pixels():
    rng = np.random.default_rng(8)
    s = rng.random((40, 30))
    pts = [(5, 5), (20, 15), (20, 15), (33, 28), (12, 22)]
    counts = np.zeros((40, 30))
    for r, c in pts:
        counts[r, c] += 1
    dens = scipy.ndimage.gaussian_filter(counts, 0.05 * 40, mode="constant", truncate=4.0)
    got = A.score(s, pts, kind="fixations", blur=0.05, metrics=("cc", "nss", "auc_judd"), jitter=False)
    assert got["cc"] == pytest.approx(scipy.stats.pearsonr(s.ravel(), dens.ravel()).statistic, abs=1e-8)
    f = counts > 0  # 4 distinct fixated pixels
    z = (s - s.mean()) / s.std(ddof=1)
    assert got["nss"] == pytest.approx(z[f].mean(), abs=1e-12)
    fp_last = np.mean(s[~f] >= s[f].min())
    roc = sklearn.metrics.roc_auc_score(f.ravel(), s.ravel())
    assert got["auc_judd"] == pytest.approx(roc + fp_last / (2 * f.sum()), abs=1e-12)


def test_resize_is_bilinear_to_the_reference_size():
    small = np.array([[0.0, 1.0], [2.0, 5.0]])
    # 2 -> 4 with pixel-centre alignment: output pixel x samples source (x + 0.5) / 2 - 0.5 =
    # -0.25, 0.25, 0.75, 1.25, clamped at the edges: weights [1, 0], [.75, .25], [.25, .75], [0, 1]
    w = np.array([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
    big = w @ small @ w.T
    rng = np.random.default_rng(2)
    ref = rng.random((4, 4))
    assert A.cc(small, ref) == pytest.approx(scipy.stats.pearsonr(big.ravel(), ref.ravel()).statistic, abs=1e-12)
    f = ref > 0.6
    z = (big - big.mean()) / big.std(ddof=1)
    assert A.nss(small, f) == pytest.approx(z[f].mean(), abs=1e-12)
    s = A.score(small, ref, metrics=("nss", "cc"), top=0.25)
    z_top = z[ref >= np.sort(ref.ravel())[-4]]
    assert s["nss"] == pytest.approx(z_top.mean(), abs=1e-12)


def test_center_bias_map_convention():
    g = A.center_bias_map((20, 40), sigma=0.25)
    r, c = np.mgrid[0:20, 0:40]
    ref = np.exp(-((r - 9.5) ** 2) / (2 * 5.0**2) - (c - 19.5) ** 2 / (2 * 10.0**2))  # sigma 0.25*20, 0.25*40
    np.testing.assert_allclose(g, ref / ref.sum(), rtol=1e-12)
    np.testing.assert_allclose(A.uniform_map((3, 5)), np.full((3, 5), 1 / 15))


def test_center_bias_beats_uniform_on_center_fixations():
    rng = np.random.default_rng(4)
    pts = np.clip(np.round(rng.normal([16, 24], [3, 4], size=(40, 2))), 0, [31, 47]).astype(int)
    model = rng.random((32, 48))  # an uninformative model
    table = A.score_with_baselines(model, pts, kind="fixations", other_fixations=pts[:20])
    cb, un = table["center_bias"], table["uniform"]
    assert cb["auc_judd"] > 0.85 and un["auc_judd"] == 0.5
    assert cb["auc_borji"] > 0.85 and un["auc_borji"] == 0.5
    assert cb["nss"] > 1.0 and un["nss"] == 0.0
    assert cb["cc"] > 0.3 and un["cc"] == 0.0
    assert cb["sim"] > un["sim"] and cb["kld"] < un["kld"]
    # sAUC discounts centre bias: other fixations share it, so the centre map is near chance
    assert abs(cb["auc_shuffled"] - 0.5) < 0.2 < cb["auc_judd"] - 0.5
    assert abs(table["model"]["auc_judd"] - 0.5) < 0.15
    # a human density concentrated at the centre (kind="density")
    dens = A.center_bias_map((32, 48), sigma=0.1)
    table = A.score_with_baselines(model, dens)
    cb, un = table["center_bias"], table["uniform"]
    assert cb["auc_judd"] > 0.95 and cb["cc"] > 0.6 and cb["sim"] > un["sim"] and cb["kld"] < un["kld"]
    assert math.isnan(cb["auc_shuffled"])


def test_seeded_results_are_reproducible():
    rng = np.random.default_rng(6)
    s, d = rng.random((20, 20)), rng.random((20, 20))
    f = d > 0.8
    assert A.auc_borji(s, f) == A.auc_borji(s, f)
    assert A.auc_borji(s, f, rng=3) == A.auc_borji(s, f, rng=np.random.default_rng(3))
    assert A.auc_borji(s, f, rng=0) != A.auc_borji(s, f, rng=1)
    assert A.auc_shuffled(s, f, d > 0.3, rng=5) == A.auc_shuffled(s, f, d > 0.3, rng=5)
    assert A.auc_judd(s, f, rng=2) == A.auc_judd(s, f, rng=2)
    kw = dict(other_fixations=d > 0.5, rng=11)
    assert A.score(s, d, **kw) == A.score(s, d, **kw)
    assert A.score_with_baselines(s, d, **kw) == A.score_with_baselines(s, d, **kw)
    # choosing a subset of metrics does not change a random metric's value
    assert A.score(s, d, metrics=("auc_borji",), rng=11)["auc_borji"] == A.score(s, d, **kw)["auc_borji"]


def test_empty_fixations_raise():
    s = np.random.default_rng(0).random((5, 5))
    empty = np.zeros((5, 5))
    for call in (
        lambda: A.auc_judd(s, empty),
        lambda: A.auc_borji(s, []),
        lambda: A.auc_shuffled(s, empty, [(1, 1)]),
        lambda: A.nss(s, np.zeros((0, 2))),
        lambda: A.score(s, empty, kind="fixations"),
        lambda: A.density_from_fixations(empty),
    ):
        with pytest.raises(ValueError, match="no fixations"):
            call()
    with pytest.raises(ValueError, match="other_fixations has no fixations"):
        A.auc_shuffled(s, [(1, 1)], empty)
    with pytest.raises(ValueError, match="every pixel is fixated"):
        A.auc_judd(s, np.ones((5, 5)))
    with pytest.raises(ValueError, match="outside"):
        A.nss(s, [(5, 0)])
    with pytest.raises(ValueError, match="NaN"):
        A.cc(np.full((5, 5), np.nan), s)


# ------------------------------------------------------------------------------ pysaliency 0.2.22

# Values printed by pysaliency 0.2.22 itself (sdist /tmp/refpk/pysaliency-0.2.22.tar.gz built with
# Cython in a throwaway venv, numpy 2.3.5, numba 0.68.1; torch stubbed out at import, unused) by the
# one-off script /tmp/pysal_ref/make_refs.py on the inputs of _pysaliency_inputs():
#   pysaliency.metrics.NSS(sal, xs, ys).mean(), CC(sal, dens), SIM(sal, dens), MIT_KLDiv(sal, dens),
#   and SaliencyMapModel.AUC_Judd(stimuli, fixations, jitter=False) / .NSS(...) of a model that
#   returns the fixed map (pysaliency.roc.general_roc(..., judd=1) gives the same AUC).
PYSALIENCY_SAL = {
    "nss_ddof0": -0.4753088547636092,
    "cc": -0.08387749206921545,
    "sim": 0.6428536369883184,
    "mit_kldiv": 2.3395238508886522,
    "auc_judd_no_jitter": 0.3780487804878048,
}
PYSALIENCY_SAL2 = {
    "nss_ddof0": -0.36685933447075253,
    "cc": 0.032539125188112236,
    "sim": 0.6577914061366432,
    "mit_kldiv": 0.6733143572071105,  # of sal2 - min(sal2): pysaliency shifts negative maps anyway
    "auc_judd_no_jitter": 0.45121951219512196,
}


def _pysaliency_inputs():
    r, c = np.mgrid[0:6, 0:8]
    sal = ((r * 7 + c * 3) % 11) / 10.0  # values k/10: ties, also between two fixated pixels
    dens = ((r * 5 + c * 2) % 13 + 1) / 13.0  # positive, minimum 1/13
    sal2 = np.sin(r * 1.3 + c * 0.7) + 0.01 * r * c  # distinct values, negative ones too
    ys = [0, 2, 4, 5, 3, 1, 5]
    xs = [1, 3, 6, 7, 0, 5, 2]
    return sal, sal2, dens, list(zip(ys, xs))


def test_matches_pysaliency_where_conventions_agree():
    sal, sal2, dens, pts = _pysaliency_inputs()
    for smap, ref in ((sal, PYSALIENCY_SAL), (sal2, PYSALIENCY_SAL2)):
        assert A.nss(smap, pts, ddof=0) == pytest.approx(ref["nss_ddof0"], abs=1e-12)
        assert A.cc(smap, dens) == pytest.approx(ref["cc"], abs=1e-12)
        assert A.sim(smap, dens, normalization="pysaliency") == pytest.approx(ref["sim"], abs=1e-12)
        assert A.kld(smap, dens) == pytest.approx(ref["mit_kldiv"], abs=1e-12)
        judd = A.auc_judd(smap, pts, jitter=False, ties="grouped")
        assert judd == pytest.approx(ref["auc_judd_no_jitter"], abs=1e-12)
    # distinct values: MIT's tie handling is irrelevant and the two AUC-Judd agree
    assert A.auc_judd(sal2, pts, jitter=False) == pytest.approx(PYSALIENCY_SAL2["auc_judd_no_jitter"], abs=1e-12)
    # the documented differences are real on this input: MIT's SIM (min-max) and MIT's tie loop
    assert abs(A.sim(sal, dens) - PYSALIENCY_SAL["sim"]) > 1e-3
    assert A.auc_judd(sal, pts, jitter=False) < PYSALIENCY_SAL["auc_judd_no_jitter"] - 1e-3
