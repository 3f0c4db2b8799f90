"""Faithfulness metrics (deletion / insertion / ROAD) against independent references.

References: a known-answer model whose score depends only on the left half of the image, SciPy's
Gaussian filter and OpenCV's GaussianBlur, a sparse linear system assembled here with
``scipy.sparse`` and solved by ``spsolve``, and ``numpy.trapezoid``.
"""

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
from scipy import ndimage

from aesthetics_jax.explain import faithfulness as F

H, W = 16, 16
STEPS = 8  # H * W = 256 is a multiple of 8: steps land on exact fractions k / 8
CHUNK = 16  # one chunk shape for every call: each jitted function compiles once


@jax.jit
def left_model(images):
    """Mean squared (scaled) pixel of the left half: the right half has no influence at all."""
    half = images.shape[2] // 2
    return jnp.mean((images[:, :, :half, :] / 255.0) ** 2, axis=(1, 2, 3))


@jax.jit
def two_head_model(images):
    half = images.shape[2] // 2
    left = jnp.mean((images[:, :, :half, :] / 255.0) ** 2, axis=(1, 2, 3))
    right = jnp.mean((images[:, :, half:, :] / 255.0) ** 2, axis=(1, 2, 3))
    return jnp.stack([left, right], axis=-1)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).uniform(0.0, 255.0, (2, H, W, 3)).astype(np.float32)


def half_map(n, left_first):
    m = np.zeros((n, H, W), np.float32)
    if left_first:
        m[:, :, : W // 2] = 1.0
    else:
        m[:, :, W // 2:] = 1.0
    return m


def curves(images, maps, **kw):
    kw = dict(num_steps=STEPS, chunk_size=CHUNK, **kw)
    return F.deletion_curve(left_model, images, maps, **kw), F.insertion_curve(left_model, images, maps, **kw)


# ---------------------------------------------------------------------------------------------


def test_gaussian_blur_matches_scipy_and_opencv():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (2, 12, 16, 3))
    # Default sigma 5: radius 20 exceeds both sides, so the reflection wraps more than once.
    # Tolerance 2.5e-4 grey levels = 1e-6 of the value range (float32 accumulation of 41 taps).
    for sigma in (F.DEFAULT_BLUR_SIGMA, 1.3):
        ref = ndimage.gaussian_filter(x, (0, sigma, sigma, 0), mode="reflect", truncate=4.0)
        np.testing.assert_allclose(np.asarray(F.gaussian_blur(x, sigma)), ref, rtol=0, atol=2.5e-4)
    # Maps [N, H, W] on the last two axes.
    m = rng.uniform(size=(3, 10, 9))
    ref = ndimage.gaussian_filter(m, (0, 2.0, 2.0), mode="reflect", truncate=4.0)
    np.testing.assert_allclose(np.asarray(F.gaussian_blur(m, 2.0, spatial_axes=(-2, -1))), ref, atol=1e-6)
    # OpenCV: same taps for ksize = 2r + 1, BORDER_REFLECT (= scipy 'reflect').
    img = rng.uniform(0, 255, (24, 32, 3)).astype(np.float32)
    sigma = 2.0
    k = 2 * int(4.0 * sigma + 0.5) + 1
    ref = cv2.GaussianBlur(img, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    np.testing.assert_allclose(np.asarray(F.gaussian_blur(img[None], sigma))[0], ref, atol=2.5e-4)
    # sigma 0 is the identity.
    np.testing.assert_array_equal(np.asarray(F.gaussian_blur(img[None], 0.0))[0], img)


def test_trapezoid_auc_matches_numpy():
    x = np.array([0.0, 0.1, 0.15, 0.4, 0.7, 1.0])
    y = np.array([[1.0, 0.8, 0.9, 0.3, 0.1, 0.0], [0.0, 0.5, 0.2, 0.9, 1.0, 1.0]])
    np.testing.assert_allclose(np.asarray(F.trapezoid_auc(y, x)), np.trapezoid(y, x, axis=-1), rtol=1e-6)
    np.testing.assert_allclose(
        np.asarray(F.trapezoid_auc(y)), np.trapezoid(y, np.linspace(0, 1, 6), axis=-1), rtol=1e-6)


def _spsolve_reference(img, removed):
    """ROAD's system assembled independently: for each removed pixel i,
    -s_i x_i + sum_{removed in-image nbr j} w_ij x_j = -sum_{known nbr j} w_ij v_j."""
    h, w, c = img.shape
    weights = {(dy, dx): (1 / 6 if dy == 0 or dx == 0 else 1 / 12)
               for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)}
    pix = [tuple(p) for p in np.argwhere(removed)]
    var = {p: i for i, p in enumerate(pix)}
    a = scipy.sparse.lil_matrix((len(pix), len(pix)))
    b = np.zeros((len(pix), c))
    for i, (y, x) in enumerate(pix):
        diag = 0.0
        for (dy, dx), wt in weights.items():
            yn, xn = y + dy, x + dx
            if not (0 <= yn < h and 0 <= xn < w):
                continue
            diag += wt
            if removed[yn, xn]:
                a[i, var[(yn, xn)]] = wt
            else:
                b[i] -= wt * img[yn, xn]
        a[i, i] = -diag
    sol = scipy.sparse.linalg.spsolve(scipy.sparse.csc_matrix(a), b)
    out = img.astype(np.float64).copy()
    out[removed] = sol
    return out


def test_linear_imputation_matches_spsolve():
    rng = np.random.default_rng(2)
    h, w = 9, 11
    img = rng.uniform(0, 255, (h, w, 3)).astype(np.float32)
    removed = rng.uniform(size=(h, w)) < 0.35  # scattered pixels
    removed[2:6, 3:8] = True  # a blob with interior pixels whose 8 neighbours are all removed
    removed[0, 0] = removed[-1, -1] = removed[0, -1] = True  # corners
    removed[-1, :4] = True  # along the border
    ref = _spsolve_reference(img, removed)
    got, rel = F.solve_linear_imputation(img[None], removed[None])
    got = np.asarray(got)[0]
    # 1e-6 of the value range (float32 CG vs float64 direct solve; measured ~1e-7).
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6 * 255)
    assert np.asarray(rel).max() < 1e-3  # RMS residual, grey levels (float32 floor ~1e-5)
    np.testing.assert_array_equal(got[~removed], img[~removed])  # known pixels bit-exact
    # Noise: N(0, sd^2) on removed pixels only, drawn from the key.
    noisy = np.asarray(F.noisy_linear_impute(img[None], removed[None], jax.random.key(0), noise_std=3.0))[0]
    np.testing.assert_array_equal(noisy[~removed], img[~removed])
    diff = (noisy - got)[removed]
    assert abs(diff.mean()) < 0.5 and 2.5 < diff.std() < 3.5
    # Zero noise without a key is the plain solve.
    np.testing.assert_array_equal(
        np.asarray(F.noisy_linear_impute(img[None], removed[None], noise_std=0.0))[0], got)


def test_known_answer_deletion_insertion(images):
    n = len(images)
    left, right = half_map(n, True), half_map(n, False)
    rand = np.asarray(F.random_maps(jax.random.key(3), (n, H, W)))
    d_left, i_left = curves(images, left)
    d_right, i_right = curves(images, right)
    d_rand, i_rand = curves(images, rand)

    # Exact shapes of the known answer (normalised curves, fractions k / 8):
    np.testing.assert_allclose(np.asarray(d_left.fractions), np.arange(STEPS + 1) / STEPS)
    mid = STEPS // 2  # half of the pixels
    # The raw scores hit the endpoints exactly; the normalised ratio to float32 rounding (XLA
    # divides by a broadcast denominator as a multiplication by its reciprocal).
    d_l, d_r, i_l, i_r = (np.asarray(r.scores) for r in (d_left, d_right, i_left, i_right))

    def constant(a, end):
        np.testing.assert_array_equal(a, np.broadcast_to(end, a.shape))

    constant(d_l[:, mid:], d_l[:, -1:])  # left half gone: score = f(baseline)
    constant(d_r[:, : mid + 1], d_r[:, :1])  # only right pixels removed: no change
    constant(i_l[:, mid:], i_l[:, -1:])  # left half back: score = f(x)
    constant(i_r[:, : mid + 1], i_r[:, :1])  # only right pixels inserted: still f(blur)
    np.testing.assert_allclose(np.asarray(d_left.normalised)[:, mid:], 0.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(d_right.normalised)[:, : mid + 1], 1.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(i_left.normalised)[:, mid:], 1.0, atol=1e-6)
    np.testing.assert_allclose(np.asarray(i_right.normalised)[:, : mid + 1], 0.0, atol=1e-6)

    # Deletion: left-first drops fastest (lowest AUC), random in between, right-first slowest.
    dl, dr, dn = (np.asarray(r.auc) for r in (d_left, d_right, d_rand))
    il, ir, inn = (np.asarray(r.auc) for r in (i_left, i_right, i_rand))
    assert np.all(dl < dn) and np.all(dn < dr)
    assert np.all(il > inn) and np.all(inn > ir)
    # Linear-in-count model: ~0.25 / 0.5 / 0.75 (pixels differ, so only approximately).
    np.testing.assert_allclose(dl, 0.25, atol=0.06)
    np.testing.assert_allclose(dr, 0.75, atol=0.06)
    np.testing.assert_allclose(dn, 0.5, atol=0.1)
    np.testing.assert_allclose(il, 0.75, atol=0.06)
    # The steepest initial drop: after 1/8 of the pixels the left-first curve is lowest.
    assert np.all(np.asarray(d_left.normalised)[:, 1] < np.asarray(d_rand.normalised)[:, 1])
    # AUCs are numpy.trapezoid of the reported curves over the reported fractions.
    for r in (d_left, i_rand):
        np.testing.assert_allclose(
            np.asarray(r.auc), np.trapezoid(np.asarray(r.normalised), np.asarray(r.fractions), axis=-1), rtol=1e-6)
        np.testing.assert_allclose(
            np.asarray(r.auc_raw), np.trapezoid(np.asarray(r.scores), np.asarray(r.fractions), axis=-1), rtol=1e-6)
    assert not np.any(np.asarray(d_left.degenerate))


def test_curve_endpoints(images):
    x = images
    m = np.asarray(F.random_maps(jax.random.key(4), (len(x), H, W)))
    f_x = np.asarray(left_model(x))
    dele, ins = curves(x, m)
    # Deletion at 100 % is the baseline image (zeros: score exactly 0); at 0 % the original.
    np.testing.assert_array_equal(np.asarray(dele.scores)[:, -1], np.asarray(left_model(np.zeros_like(x))))
    np.testing.assert_array_equal(np.asarray(dele.scores)[:, -1], 0.0)
    np.testing.assert_allclose(np.asarray(dele.scores)[:, 0], f_x, rtol=1e-6)
    # Insertion at 0 % is the blurred image, blurred here by SciPy; at 100 % the original.
    blurred = ndimage.gaussian_filter(x.astype(np.float64), (0, 5.0, 5.0, 0), mode="reflect", truncate=4.0)
    f_blur = np.asarray(left_model(blurred.astype(np.float32)))
    np.testing.assert_allclose(np.asarray(ins.scores)[:, 0], f_blur, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(ins.scores)[:, -1], f_x, rtol=1e-6)
    # Other deletion baselines end at their own image.
    grey = F.deletion_curve(left_model, x, m, num_steps=STEPS, baseline=128.0, chunk_size=CHUNK)
    np.testing.assert_allclose(np.asarray(grey.scores)[:, -1], (128.0 / 255.0) ** 2, rtol=1e-6)
    colour = F.deletion_curve(left_model, x, m, num_steps=STEPS, baseline=(10.0, 20.0, 30.0), chunk_size=CHUNK)
    np.testing.assert_allclose(np.asarray(colour.scores)[:, -1], np.mean((np.array([10, 20, 30]) / 255) ** 2),
                               rtol=1e-6)
    blur = F.deletion_curve(left_model, x, m, num_steps=STEPS, baseline="blur", chunk_size=CHUNK)
    np.testing.assert_allclose(np.asarray(blur.scores)[:, -1], f_blur, rtol=1e-5)


def test_degenerate_model_gives_the_straight_line(images):
    const = jax.jit(lambda im: jnp.full((im.shape[0],), 3.0, jnp.float32))
    m = half_map(len(images), True)
    dele = F.deletion_curve(const, images, m, num_steps=STEPS, chunk_size=CHUNK)
    ins = F.insertion_curve(const, images, m, num_steps=STEPS, chunk_size=CHUNK)
    assert np.all(np.asarray(dele.degenerate)) and np.all(np.asarray(ins.degenerate))
    frac = np.arange(STEPS + 1) / STEPS
    np.testing.assert_allclose(np.asarray(dele.normalised), np.broadcast_to(1 - frac, (2, STEPS + 1)), atol=1e-7)
    np.testing.assert_allclose(np.asarray(ins.normalised), np.broadcast_to(frac, (2, STEPS + 1)), atol=1e-7)
    np.testing.assert_allclose(np.asarray(dele.auc), 0.5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(ins.auc), 0.5, atol=1e-6)


def test_road_known_answer(images):
    n = len(images)
    key = jax.random.key(5)
    kw = dict(chunk_size=CHUNK)
    left = F.road(left_model, images, half_map(n, True), key, **kw)
    right = F.road(left_model, images, half_map(n, False), key, **kw)
    rand = F.road(left_model, images, np.asarray(F.random_maps(jax.random.key(6), (n, H, W))), key, **kw)
    np.testing.assert_allclose(np.asarray(left.original), np.asarray(left_model(images)), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(left.percentages), np.arange(10, 100, 10))
    # LeRF with the left-first map removes right pixels first: up to 50 % the score is untouched
    # (known pixels are kept bit-exactly and noise only lands on removed pixels).
    np.testing.assert_array_equal(np.asarray(left.lerf_change)[:, :5], 0.0)
    # MoRF removes the left half first, so every percentage moves the score (its sign depends on
    # which grey levels the imputation spreads), and more than LeRF on average.
    assert np.all(np.asarray(left.morf_change) != 0)
    assert np.all(np.asarray(left.morf) > np.asarray(left.lerf))
    # Ordering of MoRF values: left-first (~7/9 of the full drop) > random (~1/2) > right-first (~2/9).
    assert np.all(np.asarray(left.morf) > np.asarray(rand.morf))
    assert np.all(np.asarray(rand.morf) > np.asarray(right.morf))
    assert np.asarray(left.residual).shape == (n, 2, 9)
    assert np.asarray(left.residual).max() < 1e-3  # RMS residual, grey levels


def test_determinism_and_batch_equals_single(images):
    n = len(images)
    maps = np.asarray(F.random_maps(jax.random.key(7), (n, H, W), smooth_sigma=1.5))
    keys = jax.random.split(jax.random.key(8), n)
    # Random maps: seeded, per-image keys give the same map whatever the batch.
    np.testing.assert_array_equal(maps, np.asarray(F.random_maps(jax.random.key(7), (n, H, W), smooth_sigma=1.5)))
    rk = jax.random.split(jax.random.key(9), n)
    rm = np.asarray(F.random_maps(rk, (n, H, W)))
    np.testing.assert_array_equal(rm[::-1], np.asarray(F.random_maps(rk[::-1], (n, H, W))))

    road_kw = dict(percentages=(20, 50, 80), chunk_size=CHUNK)
    batch = F.road(left_model, images, maps, keys, **road_kw)
    again = F.road(left_model, images, maps, keys, **road_kw)
    other = F.road(left_model, images, maps, jax.random.split(jax.random.key(10), n), **road_kw)
    np.testing.assert_array_equal(np.asarray(batch.morf_scores), np.asarray(again.morf_scores))
    assert not np.array_equal(np.asarray(batch.morf_scores), np.asarray(other.morf_scores))
    d_batch, i_batch = curves(images, maps)
    for i in range(n):
        single = F.road(left_model, images[i:i + 1], maps[i:i + 1], keys[i:i + 1], **road_kw)
        for a, b in ((batch.morf_scores, single.morf_scores), (batch.lerf_scores, single.lerf_scores)):
            np.testing.assert_allclose(np.asarray(a)[i], np.asarray(b)[0], rtol=1e-6)
        d1, i1 = curves(images[i:i + 1], maps[i:i + 1])
        np.testing.assert_allclose(np.asarray(d_batch.scores)[i], np.asarray(d1.scores)[0], rtol=1e-6)
        np.testing.assert_allclose(np.asarray(i_batch.auc)[i], np.asarray(i1.auc)[0], rtol=1e-6)
    # Chunking and the non-jitted path do not change results.
    d_small = F.deletion_curve(left_model, images, maps, num_steps=STEPS, chunk_size=5)
    d_eager = F.deletion_curve(left_model, images, maps, num_steps=STEPS, chunk_size=CHUNK, jit=False)
    np.testing.assert_allclose(np.asarray(d_small.scores), np.asarray(d_batch.scores), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(d_eager.scores), np.asarray(d_batch.scores), rtol=1e-6)
    # The whole curve is itself jit-able.
    jitted = jax.jit(lambda im, m: F.deletion_curve(left_model, im, m, num_steps=STEPS, chunk_size=CHUNK).auc)
    np.testing.assert_allclose(np.asarray(jitted(images, maps)), np.asarray(d_batch.auc), rtol=1e-6)


def test_multi_output_and_summary(images):
    n = len(images)
    left = half_map(n, True)
    both = F.deletion_curve(two_head_model, images, left, num_steps=STEPS, chunk_size=CHUNK)
    head0 = F.deletion_curve(two_head_model, images, left, num_steps=STEPS, chunk_size=CHUNK, output=0)
    assert np.asarray(both.scores).shape == (n, STEPS + 1, 2) and np.asarray(both.auc).shape == (n, 2)
    np.testing.assert_array_equal(np.asarray(both.scores)[..., 0], np.asarray(head0.scores))
    np.testing.assert_allclose(np.asarray(both.auc)[:, 0], np.asarray(head0.auc), rtol=1e-6)
    with pytest.raises(ValueError):
        F.deletion_curve(left_model, images, left, num_steps=STEPS, chunk_size=CHUNK, output=1)

    kw = dict(num_steps=STEPS, road_percentages=(30, 70), chunk_size=CHUNK)
    summary = F.faithfulness_summary(left_model, images, left, jax.random.key(11), **kw)
    names = ["deletion_auc", "insertion_auc", "road_morf", "road_lerf", "road_gap"]
    assert set(summary) == set(names + ["random_" + k for k in names]
                               + ["deletion_degenerate_frac", "insertion_degenerate_frac", "num_images"])
    assert all(isinstance(v, float) and np.isfinite(v) for v in summary.values())
    assert summary["num_images"] == n
    assert summary["deletion_auc"] < summary["random_deletion_auc"]
    assert summary["insertion_auc"] > summary["random_insertion_auc"]
    assert summary["road_gap"] > summary["random_road_gap"]
    # Seeded: the same key gives the same dict.
    assert summary == F.faithfulness_summary(left_model, images, left, jax.random.key(11), **kw)
    # Per-head keys for a multi-output model.
    multi = F.faithfulness_summary(two_head_model, images, left, jax.random.key(11),
                                   output_names=("left", "right"), **kw)
    assert multi["deletion_auc_left"] == pytest.approx(summary["deletion_auc"], rel=1e-5)
    assert "road_morf_right" in multi and "random_insertion_auc_right" in multi
