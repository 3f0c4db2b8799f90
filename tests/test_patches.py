"""Saliency patches: the numpy library (data.patches) and the `eva_patches` builder over EVA-format fixtures."""

import collections
import csv
import glob
import os
import shutil

import cv2
import numpy as np
import pytest

from aesthetics_jax import cli, modalities
from aesthetics_jax.data import patches, pipeline, preprocessing
from aesthetics_jax.data.builders import base, eva, eva_patches
from aesthetics_jax.modalities import files
from test_image_robustness import CASES, _eva_with_hostile_images

HEADER = "image_id=user_id=score=difficulty=visual=composition=quality=semantic=vote_time=1=2=3=4"
# (height, width): smaller than 299 on one or both sides, exactly 299, and larger (EVA/AVA-like).
SIZES = ((200, 260), (375, 500), (500, 375), (240, 320), (299, 420), (450, 300))
PHOTOS = ("coffee", "chelsea", "astronaut", "rocket", "immunohistochemistry")


def photo(k: int, height: int, width: int) -> np.ndarray:
    """A smooth real-looking RGB photo: a seeded crop of a scikit-image photograph, resized."""
    import skimage.data

    source = getattr(skimage.data, PHOTOS[k % len(PHOTOS)])()[..., :3]
    rng = np.random.default_rng(k)
    h, w = source.shape[:2]
    ch, cw = int(h * rng.uniform(0.6, 0.9)), int(w * rng.uniform(0.6, 0.9))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = source[top:top + ch, left:left + cw]
    if k % 2:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA))


def write_photo_eva(root, num_images=12, sizes=SIZES, seed=0, first_id=880000) -> dict:
    """An EVA directory in the public format (`=` votes CSV, quoted category CSV) with photo JPEGs."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "data"))
    os.makedirs(os.path.join(root, "images", "EVA_together"))
    lines, ids = [HEADER], []
    for k in range(num_images):
        image_id = first_id + 7 * k
        ids.append(image_id)
        height, width = sizes[k % len(sizes)]
        pixels = photo(k, height, width)
        cv2.imwrite(os.path.join(root, "images", "EVA_together", f"{image_id}.jpg"), pixels[..., ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        for user in range(int(rng.integers(3, 6))):
            v = [int(rng.integers(0, 11))] + [int(x) for x in rng.integers(1, 5, 5)] + [int(x) for x in rng.integers(0, 2, 4)]
            lines.append(f"{image_id}=U{user}={'='.join(map(str, v[:6]))}=3.5={'='.join(map(str, v[6:]))}")
    with open(os.path.join(root, "data", "votes_filtered.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(root, "data", "image_content_category.csv"), "w", encoding="utf-8-sig") as f:
        f.write('"image_id","sort"\n' + "".join(f'"{i}","{1 + k % 6}"\n' for k, i in enumerate(ids)))
    return dict(ids=ids)


def records(builder, split=None) -> dict:
    """{key: record} of a build ({(parent_id, patch_index) or id: record}), all splits or one."""
    out = {}
    for name in ([split] if split else builder.info.splits):
        source = pipeline.make_source(builder, name)
        for i in range(len(source)):
            r = source[i]
            key = (int(r["parent_id"]), int(r["patch_index"])) if "parent_id" in r else int(r["id"])
            out[key] = dict(r, split=name)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("eva_photos")
    expected = write_photo_eva(str(root))
    data_dir = tmp_path_factory.mktemp("tfds")
    parent = eva.build_eva(root, data_dir, val_fraction=0.25, test_fraction=0.25, seed=3)
    # A non-default parent config: found by name in the same data_dir.
    builder = eva_patches.build_eva_patches(data_dir, parent_config=parent.builder_config.name)
    return dict(root=root, data_dir=data_dir, parent=parent, builder=builder,
                parent_records=records(parent), patch_records=records(builder), **expected)


# -- the library ------------------------------------------------------------------------------------

@pytest.mark.parametrize("height,width", [(120, 80), (298, 299), (299, 299), (300, 1000), (640, 427), (10, 30)])
def test_patches_are_exact_and_inside_at_every_border(height, width):
    rng = np.random.default_rng(height * 7 + width)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    saliency = np.zeros((height, width), np.float32)
    for y, x in ((0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1), (height // 2, width // 2)):
        saliency[y, x] = 1.0  # single salient pixels in the corners and the middle
    result = patches.extract_patches(pixels, saliency, rng=patches.patch_rng(0, "x"), num_patches=40)
    work_h, work_w = result.working_shape
    assert (work_h, work_w) == patches.working_shape(height, width)
    assert min(work_h, work_w) >= 299
    work_pixels, work_map = patches.upscale(pixels, saliency)
    for p in result.patches:
        top, left, bottom, right = p.box
        assert p.pixels.shape == (299, 299, 3) and p.pixels.dtype == np.uint8
        assert bottom - top == 299 and right - left == 299
        assert 0 <= top and bottom <= work_h and 0 <= left and right <= work_w
        assert top <= p.centre[0] < bottom and left <= p.centre[1] < right
        if 149 <= p.centre[0] <= work_h - 150 and 149 <= p.centre[1] <= work_w - 150:
            assert (top, left) == (p.centre[0] - 149, p.centre[1] - 149)  # centred when it fits
        np.testing.assert_array_equal(p.pixels, work_pixels[top:bottom, left:right])
        assert work_map[p.centre] >= 0.5 or result.fallback


def test_upscaling_rule():
    assert patches.working_shape(200, 260) == (299, 389)   # round(260 * 299 / 200) = 388.7
    assert patches.working_shape(500, 200) == (748, 299)   # 747.5 -> 748 (round half even: 748)
    assert patches.working_shape(298, 299) == (299, 300)
    assert patches.working_shape(299, 400) == (299, 400)   # never resized when both sides >= 299
    assert patches.working_shape(3000, 4000) == (3000, 4000)
    pixels = np.full((200, 260, 3), 77, np.uint8)
    up_pixels, up_map = patches.upscale(pixels, np.full((200, 260), 0.25, np.float32))
    assert up_pixels.shape == (299, 389, 3) and (up_pixels == 77).all()
    assert up_map.shape == (299, 389) and np.allclose(up_map, 0.25)


def test_threshold_rules_and_top_k_fallback():
    rng = np.random.default_rng(0)
    saliency = rng.random((60, 80)).astype(np.float32)
    mask, fallback = patches.salient_region(saliency, 0.5)
    assert not fallback and (mask == (saliency >= 0.5)).all()
    # 'seed' = cv2.threshold(THRESH_BINARY, strictly greater) on the 8-bit grey map floor(256 m).
    for top_focus in (0.5, 0.3, 0.1, 0.75):
        grey = np.minimum(np.floor(saliency * 256), 255).astype(np.uint8)
        _, binary = cv2.threshold(grey, int(255 * (1 - top_focus)), 255, cv2.THRESH_BINARY)
        seed_mask, _ = patches.salient_region(saliency, top_focus, threshold="seed")
        assert (seed_mask == (binary == 255)).all()
    same, _ = patches.salient_region(saliency, 0.5, threshold="seed")
    assert (same == mask).all()  # the two rules agree at top_focus 0.5
    # Nothing above the threshold: the top-k pixels (ties included), never an exception.
    dim = saliency * 0.4
    region, fallback = patches.salient_region(dim, 0.5, fallback_top_k=100)
    assert fallback and region.sum() == 100 and dim[region].min() >= dim[~region].max()
    flat = np.zeros((50, 70), np.float32)
    region, fallback = patches.salient_region(flat, 0.5, fallback_top_k=10)
    assert fallback and region.all()  # a flat map: every pixel eligible, no corner bias
    result = patches.extract_patches(np.zeros((50, 70, 3), np.uint8), flat, rng=patches.patch_rng(0, 1))
    assert result.fallback and len(result.patches) == 5
    assert all(p.pixels.shape == (299, 299, 3) and p.coverage > 0 for p in result.patches)


def test_component_then_pixel_vs_uniform_statistics():
    mask = np.zeros((200, 300), bool)
    mask[20:120, 20:120] = True     # 10,000 pixels
    mask[150:160, 250:260] = True   # 100 pixels
    small = lambda c: (c[:, 0] >= 150) & (c[:, 1] >= 250)  # noqa: E731
    n = 4000
    seedlike = patches.sample_centres(mask, n, np.random.default_rng(1), "component_then_pixel")
    uniform = patches.sample_centres(mask, n, np.random.default_rng(1), "uniform")
    assert mask[seedlike[:, 0], seedlike[:, 1]].all() and mask[uniform[:, 0], uniform[:, 1]].all()
    # Component first: each of the 2 components half the time; uniform: by area (100 / 10,100).
    assert abs(small(seedlike).mean() - 0.5) < 0.04
    assert abs(small(uniform).mean() - 100 / 10100) < 0.01
    # Within a component the pixel is uniform: the big square's mean and spread.
    big = seedlike[~small(seedlike)]
    assert abs(big[:, 0].mean() - 69.5) < 3 and abs(big[:, 1].mean() - 69.5) < 3
    assert abs(big[:, 0].std() - 100 / np.sqrt(12)) < 2
    with pytest.raises(ValueError):
        patches.sample_centres(mask, 1, np.random.default_rng(0), "gaussian")


def test_seeded_generator_is_stable_and_per_image():
    draw = lambda seed, key: patches.patch_rng(seed, key).integers(1 << 30, size=8).tolist()  # noqa: E731
    assert draw(0, 770013) == draw(0, 770013)
    assert draw(0, 770013) != draw(1, 770013) and draw(0, 770013) != draw(0, 770014)
    # sha256-based, never Python's salted hash(): a fixed value, the same in every process.
    assert draw(0, 770013)[0] == patches.patch_rng(0, "770013").integers(1 << 30)


def test_coverage_salient_fraction_and_mass_definitions():
    saliency = np.zeros((400, 600), np.float32)
    saliency[100:110, 100:110] = 1.0    # 100 salient pixels near the first window's centre
    saliency[350:360, 550:560] = 0.75   # 100 more, far away
    result = patches.extract_patches(np.zeros((400, 600, 3), np.uint8), saliency, rng=patches.patch_rng(0, 0),
                                     num_patches=20)
    total_mass = saliency.sum()
    for p in result.patches:
        top, left, bottom, right = p.box
        inside = (saliency[top:bottom, left:right] >= 0.5).sum()
        assert p.coverage == pytest.approx(inside / 200)
        assert p.salient_fraction == pytest.approx(inside / 299 ** 2)
        assert p.saliency_mass == pytest.approx(saliency[top:bottom, left:right].sum() / total_mass, rel=1e-6)
    assert {round(p.coverage, 6) for p in result.patches} <= {0.5, 1.0}


# -- the builder ------------------------------------------------------------------------------------

def test_every_patch_is_exact_and_cut_from_the_parent_pixels(built):
    parents = built["parent_records"]
    assert {pid for pid, _ in built["patch_records"]} == set(parents)
    for (parent_id, k), r in built["patch_records"].items():
        pixels = preprocessing.decode_jpeg(r["image"])
        assert pixels.shape == (299, 299, 3)
        parent = preprocessing.decode_jpeg(parents[parent_id]["image"])
        assert (r["parent_height"], r["parent_width"]) == parent.shape[:2]
        work_h, work_w = patches.working_shape(*parent.shape[:2])
        top, left, bottom, right = r["box"].tolist()
        assert bottom - top == 299 and right - left == 299
        assert 0 <= top and bottom <= work_h and 0 <= left and right <= work_w
        assert top <= r["centre"][0] < bottom and left <= r["centre"][1] < right
        upscaled = min(parent.shape[:2]) < 299
        assert r["scale"] == pytest.approx(299 / min(parent.shape[:2]) if upscaled else 1.0)
        work, _ = patches.upscale(parent, np.zeros(parent.shape[:2], np.float32))
        diff = np.abs(pixels.astype(int) - work[top:bottom, left:right].astype(int))
        assert diff.mean() < 2.0, (parent_id, k, diff.mean())  # one JPEG generation at quality 95
        assert 0 < r["coverage"] <= 1 and 0 < r["salient_fraction"] <= 1 and 0 <= r["saliency_mass"] <= 1
    meta = built["builder"].info.metadata
    assert meta["num_upscaled"] == sum(min(h, w) < 299 for h, w in
                                       (SIZES[k % len(SIZES)] for k in range(len(built["ids"]))))
    assert meta["producer"] == {"name": "spectral", "params": {"variant": "opencv", "size": 64}}
    assert meta["patches_per_image"] == 5 and meta["jpeg_quality"] == 95 and meta["num_skipped"] == 0


def test_features_carry_the_parent_labels_exactly(built):
    parents = built["parent_records"]
    for (parent_id, _), r in built["patch_records"].items():
        parent = parents[parent_id]
        for key in ("scores", "scores_raw", "score_sds", "mean_score", "num_raters", "category", "category_name"):
            np.testing.assert_array_equal(r[key], parent[key], err_msg=key)
            assert np.asarray(r[key]).dtype == np.asarray(parent[key]).dtype, key


def test_splits_are_inherited_and_no_parent_is_in_two_splits(built):
    builder, parent = built["builder"], built["parent"]
    assert set(builder.info.splits) == set(parent.info.splits) == {"train", "validation", "test"}
    by_split = collections.defaultdict(set)
    counts = collections.Counter()
    for (parent_id, k), r in built["patch_records"].items():
        by_split[r["split"]].add(parent_id)
        counts[parent_id] += 1
    names = sorted(by_split)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not by_split[a] & by_split[b], (a, b)
    stored = eva.split_ids(parent)
    for split, ids in by_split.items():
        assert ids == {i for i, r in built["parent_records"].items() if r["split"] == split}
        assert all(stored[i] == split for i in ids)
    assert set(counts.values()) == {5}
    assert sorted(k for pid, k in built["patch_records"] if pid == built["ids"][0]) == [0, 1, 2, 3, 4]
    assert eva.split_ids(builder) == stored  # the parent's splits.csv travels with the build


def test_rebuild_is_byte_identical_and_seed_matters(built, tmp_path):
    copy = tmp_path / "tfds"
    shutil.copytree(built["data_dir"] / "eva", copy / "eva")
    config = built["parent"].builder_config.name
    again = eva_patches.build_eva_patches(copy, parent_config=config, num_threads=1, batch_size=5)
    files_a = sorted(glob.glob(os.path.join(built["builder"].data_dir, "*.array_record*")))
    files_b = sorted(glob.glob(os.path.join(again.data_dir, "*.array_record*")))
    assert [os.path.basename(f) for f in files_a] == [os.path.basename(f) for f in files_b] and files_a
    for a, b in zip(files_a, files_b):
        assert open(a, "rb").read() == open(b, "rb").read(), os.path.basename(a)
    other = records(eva_patches.build_eva_patches(copy, parent_config=config, seed=1))
    same = sum(np.array_equal(other[k]["box"], r["box"]) for k, r in built["patch_records"].items())
    assert same < len(other) // 2


def test_sharded_maps_dir_build_equals_the_in_process_build(built, tmp_path, capsys):
    """`data build eva_patches --shard I/N --maps_dir M` (x N), then without --shard: the same records."""
    maps = tmp_path / "maps"
    common = ["data", "build", "eva_patches", "--data_dir", str(built["data_dir"]), "--parent_config",
              built["parent"].builder_config.name, "--maps_dir", str(maps), "--quiet"]
    for shard in ("1/2", "0/2"):
        assert cli.main(common + ["--shard", shard]) == 0
    assert "eva_patches maps: " in capsys.readouterr().out
    assert len(files.read_index(maps)) == len(built["ids"])
    assert cli.main(common) == 0
    from_files = eva_patches.EvaPatches(data_dir=str(built["data_dir"]), config=eva_patches.config_for(
        parent_config=built["parent"].builder_config.name, maps_dir=str(maps)))
    assert from_files.info.metadata["maps_dir"] == str(maps)
    assert from_files.info.metadata["producer"] == built["builder"].info.metadata["producer"]
    got = records(from_files)
    assert set(got) == set(built["patch_records"])
    for key, r in built["patch_records"].items():
        assert got[key]["image"] == r["image"]
        np.testing.assert_array_equal(got[key]["box"], r["box"])
        assert got[key]["coverage"] == r["coverage"]


class FlakyProducer:
    """Spectral maps, except: raises on 500-wide images, NaN on 260-wide ones, zeros on 320-wide ones."""

    name = "flaky"

    def __init__(self):
        self._spectral = modalities.create("spectral")

    def __call__(self, images):
        images = np.asarray(images)
        width = images.shape[2]
        if width == 500:
            raise RuntimeError("producer exploded")
        maps = np.asarray(self._spectral(images))
        if width == 260:
            return np.full_like(maps, np.nan)
        if width == 320:
            return np.zeros_like(maps)  # no pixel above any threshold: top-k fallback
        return maps

    def metadata(self):
        return {"name": self.name, "params": {}}


def test_producer_failures_bad_maps_and_fallback_are_reported_not_raised(built, monkeypatch, tmp_path):
    monkeypatch.setitem(modalities.PRODUCERS, "flaky", ("test_patches", "FlakyProducer"))
    builder = eva_patches.build_eva_patches(tmp_path, parent_dir=built["parent"].data_dir, producer="flaky")
    report = base.skipped_report(builder)
    sizes = {i: SIZES[k % len(SIZES)] for k, i in enumerate(built["ids"])}
    assert {int(r["id"]): r["reason"] for r in report} == {
        **{i: "map_failed" for i, s in sizes.items() if s[1] == 500},
        **{i: "bad_map" for i, s in sizes.items() if s[1] == 260}}
    assert all("producer exploded" in r["detail"] for r in report if r["reason"] == "map_failed")
    got = records(builder)
    fallback = {pid for (pid, _), r in got.items() if r["fallback"]}
    assert fallback == {i for i, s in sizes.items() if s[1] == 320}
    assert builder.info.metadata["num_fallback"] == len(fallback) * 1  # parents
    assert {pid for pid, _ in got} == {i for i, s in sizes.items() if s[1] not in (500, 260)}


def test_maps_dir_problems_are_reported(built, tmp_path):
    maps = tmp_path / "maps"
    files.compute_map_files(modalities.create("spectral"), built["parent"].data_dir, maps, progress=None)
    missing, resized, corrupt = built["ids"][:3]
    os.remove(maps / f"{missing}.png")
    cv2.imwrite(str(maps / f"{resized}.png"), np.zeros((10, 10), np.uint16))
    (maps / f"{corrupt}.png").write_bytes(b"not a png")
    builder = eva_patches.build_eva_patches(tmp_path, parent_dir=built["parent"].data_dir, maps_dir=str(maps))
    report = {int(r["id"]): r for r in base.skipped_report(builder)}
    assert {i: r["reason"] for i, r in report.items()} == {
        missing: "missing_map", resized: "map_size_mismatch", corrupt: "missing_map"}
    assert report[resized]["file"].endswith(f"{resized}.png")
    assert {pid for pid, _ in records(builder)} == set(built["ids"]) - {missing, resized, corrupt}


def test_hostile_parent_images_skipped_and_reported_repaired_ones_patched(tmp_path):
    ids = _eva_with_hostile_images(str(tmp_path / "raw"))
    data_dir = tmp_path / "tfds"
    eva.build_eva(tmp_path / "raw", data_dir)
    assert cli.main(["data", "build", "eva_patches", "--data_dir", str(data_dir), "--quiet"]) == 0
    builder = eva_patches.EvaPatches(data_dir=str(data_dir))
    report = {int(r["id"]): r for r in base.skipped_report(builder)}
    bad = {ids[n]: CASES[n][1] for n in CASES if isinstance(CASES[n][1], str)}
    assert {i: r["reason"] for i, r in report.items()} == bad
    assert all(r["detail"].startswith("parent build: ") and r["file"].endswith(f"{i}.jpg")
               for i, r in report.items())
    got = records(builder)
    good = {ids[n]: n for n in CASES if not isinstance(CASES[n][1], str)}
    assert {pid for pid, _ in got} == set(good)
    for (parent_id, k), r in got.items():
        assert preprocessing.decode_jpeg(r["image"]).shape == (299, 299, 3)
        expected = CASES[good[parent_id]][1]  # the upright, repaired pixels (48 x 64)
        assert (r["parent_height"], r["parent_width"]) == expected.shape[:2]
    # Repaired parents (CMYK, EXIF-rotated, 16-bit, alpha) give the map of their corrected pixels.
    producer = modalities.create("spectral")
    parents = records(eva.Eva(data_dir=str(data_dir)))
    for name in ("cmyk_jpeg", "exif_rotated", "png16_rgb", "png_alpha"):
        stored = preprocessing.decode_jpeg(parents[ids[name]]["image"])
        want = np.asarray(producer(CASES[name][1][None]))[0]
        got_map = np.asarray(producer(stored[None]))[0]
        assert np.abs(got_map - want).mean() < 0.05, name
    with open(os.path.join(builder.data_dir, "skipped.csv"), newline="") as f:
        assert list(csv.DictReader(f).fieldnames) == ["id", "line", "file", "reason", "detail"]


def test_builds_and_reads_without_tensorflow(built, tmp_path, tensorflow_imports):
    builder = eva_patches.build_eva_patches(tmp_path, parent_dir=built["parent"].data_dir, sampling="uniform",
                                            top_focus=0.3, patches_per_image=2)
    got = records(builder)
    assert len(got) == 2 * len(built["ids"]) and tensorflow_imports == []
    assert builder.info.metadata["sampling"] == "uniform" and builder.info.metadata["top_focus"] == 0.3
