"""Hostile image files: each becomes correct upright RGB or a skip with a reason (image_io + builders).

Fixtures are generated here with OpenCV / PIL; the expected pixels are computed independently
(numpy compositing, the source arrays) and compared after the stored JPEG is decoded by the
training pipeline's own `preprocessing.decode_jpeg`.
"""

import csv
import io
import os
import resource
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from aesthetics_jax.data import image_io, pipeline, preprocessing
from aesthetics_jax.data.builders import ava, base, eva

H, W = 48, 64


def _base() -> np.ndarray:
    """A smooth RGB test card (JPEG-friendly) with an asymmetric layout, so rotations show."""
    y, x = np.mgrid[0:H, 0:W]
    rgb = np.stack([x * 255 / (W - 1), y * 255 / (H - 1), np.full_like(x, 96.0)], axis=-1)
    rgb[: H // 3, : W // 4] = (250, 20, 20)  # a red block in the top-left corner
    return np.rint(rgb).astype(np.uint8)


def _cv2_bytes(ext: str, pixels: np.ndarray, *params) -> bytes:
    ok, data = cv2.imencode(ext, pixels, list(params))
    assert ok
    return data.tobytes()


def _pil_bytes(image: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kw)
    return out.getvalue()


def _patch_jpeg_size(data: bytes, height: int, width: int) -> bytes:
    """Rewrites the SOF0 frame header's declared height/width (no pixel data changes)."""
    k = data.index(b"\xff\xc0")
    return data[: k + 5] + struct.pack(">HH", height, width) + data[k + 9 :]


def _patch_png_size(data: bytes, height: int, width: int) -> bytes:
    """Rewrites the IHDR width/height and its CRC."""
    ihdr = b"IHDR" + struct.pack(">II", width, height) + data[24:29]
    return data[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]


def _cases():
    """{name: (bytes or None for missing, expected RGB or skip reason, expected action prefix)}."""
    rng = np.random.default_rng(0)
    rgb = _base()
    bgr = rgb[..., ::-1]
    jpeg = _cv2_bytes(".jpg", bgr, cv2.IMWRITE_JPEG_QUALITY, 95)
    cases = {
        "zero_byte": (b"", "empty_image", None),
        "truncated_jpeg": (jpeg[: len(jpeg) // 2], "truncated_image", None),
        # Entropy data cut short but an end-of-image marker present: libjpeg only warns
        # ("premature end of data segment") and fills grey; strict checks refuse it.
        "premature_end_jpeg": (jpeg[: (jpeg.index(b"\xff\xda") + len(jpeg)) // 2] + b"\xff\xd9", "truncated_image", None),
        "html_behind_jpg": (b"<!DOCTYPE html><html>404 Not Found</html>", "not_jpeg", None),
        "random_bytes": (rng.integers(0, 256, 500, dtype=np.uint8).tobytes(), "not_jpeg", None),
        "corrupt_jpeg": (b"\xff\xd8" + rng.integers(0, 255, 400, dtype=np.uint8).tobytes() + b"\xff\xd9",
                         "undecodable_image", None),
        "missing": (None, "missing_image", None),
        "bomb_jpeg": (_patch_jpeg_size(jpeg, 20000, 20000), "decompression_bomb", None),
        "bomb_png": (_patch_png_size(_cv2_bytes(".png", bgr), 20000, 20000), "decompression_bomb", None),
        "plain_rgb_jpeg": (jpeg, rgb, "keep"),
        "png_behind_jpg": (_cv2_bytes(".png", bgr), rgb, "reencode:not_jpeg_format"),
    }
    # Greyscale JPEG: kept as is, decoded to three equal channels.
    grey = rgb.mean(axis=2).round().astype(np.uint8)
    cases["greyscale_jpeg"] = (_cv2_bytes(".jpg", grey, cv2.IMWRITE_JPEG_QUALITY, 95), np.repeat(grey[..., None], 3, 2), "keep")
    # PNG with alpha: expected = alpha-composite over white, computed here.
    alpha = np.tile(np.linspace(0, 255, W).round().astype(np.uint8), (H, 1))
    rgba = np.dstack([rgb, alpha])
    over_white = np.rint(rgb * (alpha[..., None] / 255.0) + 255.0 * (1 - alpha[..., None] / 255.0)).astype(np.uint8)
    cases["png_alpha"] = (_pil_bytes(Image.fromarray(rgba, "RGBA"), "PNG"), over_white, "reencode:not_jpeg_format")
    # CMYK JPEG written by PIL (Adobe APP14, inverted CMYK as Photoshop writes it).
    cmyk = _pil_bytes(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95)
    cases["cmyk_jpeg"] = (cmyk, rgb, "reencode:cmyk")
    # 16-bit PNGs (greyscale and colour): expected round(v / 257) of the 16-bit source.
    grey16 = (np.tile(np.linspace(0, 65535, W), (H, 1))).round().astype(np.uint16)
    cases["png16_grey"] = (_cv2_bytes(".png", grey16),
                           np.repeat(np.rint(grey16 / 257.0).astype(np.uint8)[..., None], 3, 2), "reencode:not_jpeg_format")
    rgb16 = np.clip(rgb.astype(np.int64) * 257 + rng.integers(-100, 100, rgb.shape), 0, 65535).astype(np.uint16)
    cases["png16_rgb"] = (_cv2_bytes(".png", rgb16[..., ::-1]), np.rint(rgb16 / 257.0).astype(np.uint8),
                          "reencode:not_jpeg_format")
    # EXIF orientation 6 ("rotate 90 CW to display"): stored pixels are the upright card turned CCW.
    stored = np.ascontiguousarray(np.rot90(rgb, 1))
    exif = Image.Exif()
    exif[0x0112] = 6
    cases["exif_rotated"] = (_pil_bytes(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes()), rgb,
                             "reencode:exif_orientation")
    return cases


CASES = _cases()


def _write(folder, name, data):
    path = os.path.join(folder, name)
    if data is not None:
        with open(path, "wb") as f:
            f.write(data)
    return path


def _assert_close(got: np.ndarray, want: np.ndarray, name: str):
    assert got.shape == want.shape and got.dtype == np.uint8, (name, got.shape, want.shape)
    diff = np.abs(got.astype(int) - want.astype(int))
    # Two lossy JPEG generations (source + storage at q95) with 4:2:0 chroma on sharp block edges.
    assert diff.mean() < 3.0 and np.percentile(diff, 99) < 40, (name, diff.mean(), np.percentile(diff, 99))


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_case_is_rgb_or_skipped_with_reason(name, tmp_path):
    data, expected, action = CASES[name]
    path = _write(tmp_path, f"{name}.jpg", data)
    inspection = image_io.inspect_file(path)
    if isinstance(expected, str):
        assert inspection.reason == expected, inspection
        assert not inspection.ok
        with pytest.raises(ValueError):
            image_io.storage_bytes(path, inspection)
        return
    assert inspection.ok, inspection
    assert inspection.action == action
    stored = image_io.storage_bytes(path, inspection)
    if action == "keep":
        assert stored == data  # byte for byte
    assert stored.startswith(b"\xff\xd8")
    pixels = preprocessing.decode_jpeg(stored)  # what training sees
    _assert_close(pixels, expected, name)
    assert (inspection.height, inspection.width) == expected.shape[:2]


def test_decompression_bomb_refused_before_allocating(tmp_path):
    """20000 x 20000 declared: refused from the header, without a 1.2 GB pixel buffer."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name in ("bomb_jpeg", "bomb_png"):
        data = CASES[name][0]
        inspection = image_io.inspect_bytes(data)
        assert inspection.reason == "decompression_bomb" and "20000x20000" in inspection.detail
        with pytest.raises(ValueError, match="decompression_bomb"):
            image_io.load_rgb(data)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 100 * 1024, f"peak RSS grew by {grown_kib} KiB"
    # A custom limit applies to ordinary images too.
    assert image_io.inspect_bytes(CASES["plain_rgb_jpeg"][0], max_pixels=100).reason == "decompression_bomb"


def test_resize_shorter_uses_reduced_decode_and_keeps_aspect(tmp_path):
    rng = np.random.default_rng(1)
    big = cv2.resize(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), (1000, 750), interpolation=cv2.INTER_CUBIC)
    path = _write(tmp_path, "big.jpg", _cv2_bytes(".jpg", big, cv2.IMWRITE_JPEG_QUALITY, 95))
    inspection = image_io.inspect_file(path, resize_shorter=320)
    assert inspection.action == "reencode:resize"
    out = preprocessing.decode_jpeg(image_io.storage_bytes(path, inspection, resize_shorter=320))
    assert out.shape == (320, 427, 3)
    reference = cv2.resize(big[..., ::-1], (427, 320), interpolation=cv2.INTER_AREA)
    assert np.abs(out.astype(int) - reference.astype(int)).mean() < 3
    small = _write(tmp_path, "small.jpg", _cv2_bytes(".jpg", big[:200, :300]))
    assert image_io.inspect_file(small, resize_shorter=320).action == "keep"  # never enlarged


def _eva_with_hostile_images(root):
    """An EVA directory whose images are every case above (ids 100..), 3 valid votes each."""
    os.makedirs(os.path.join(root, "data"))
    os.makedirs(os.path.join(root, "images", "EVA_together"))
    ids = {}
    lines = ["image_id=user_id=score=difficulty=visual=composition=quality=semantic=vote_time=1=2=3=4"]
    for k, name in enumerate(sorted(CASES)):
        image_id = 100 + k
        ids[name] = image_id
        _write(os.path.join(root, "images", "EVA_together"), f"{image_id}.jpg", CASES[name][0])
        for user in ("u1", "u2", "u3"):
            lines.append(f"{image_id}={user}=5=2=3=3=2=4=1.5=1=0=0=1")
    with open(os.path.join(root, "data", "votes_filtered.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(root, "data", "image_content_category.csv"), "w") as f:
        f.write('"image_id","sort"\n' + "".join(f'"{i}","1"\n' for i in ids.values()))
    return ids


def _ava_with_hostile_images(root, test):
    """An AVA directory whose images are every case above (ids 100..); `test`: case names listed
    in generic_test.jpgl."""
    os.makedirs(root / "images")
    os.makedirs(root / "aesthetics_image_lists")
    ids = {name: 100 + k for k, name in enumerate(sorted(CASES))}
    with open(root / "AVA.txt", "w") as f:
        for row, (name, image_id) in enumerate(ids.items(), start=1):
            _write(root / "images", f"{image_id}.jpg", CASES[name][0])
            f.write(f"{row} {image_id} 0 1 2 3 4 5 4 3 2 1 1 0 101\n")
    (root / "aesthetics_image_lists" / "generic_test.jpgl").write_text("".join(f"{ids[n]}\n" for n in test))
    return ids


def test_lenient_accepts_what_libjpeg_only_warns_about():
    data = CASES["premature_end_jpeg"][0]
    assert image_io.inspect_bytes(data).reason == "truncated_image"
    assert "premature end" in image_io.inspect_bytes(data).detail
    assert image_io.inspect_bytes(data, lenient=True).ok
    with pytest.raises(image_io.ImageError, match="truncated_image") as e:
        image_io.read_image(data)
    assert e.value.reason == "truncated_image"
    assert image_io.read_image(data, lenient=True).shape == (H, W, 3)


def test_predict_and_evaluate_see_the_pixels_a_build_stores(tmp_path):
    """One hostile folder, three consumers: the AVA build (skip report + stored pixels), `evaluate`
    on that build, and `predict` on the raw files. A model trained here sees the same pixels at
    prediction time as in training: predict's scores equal evaluate's for every image the build
    kept (CMYK, 16-bit, alpha, EXIF-rotated and PNG files included), and predict refuses exactly
    the files the build skipped, with the same reasons."""
    import jax
    import jax.numpy as jnp

    from aesthetics_jax import models, predict
    from aesthetics_jax.evaluate.commands import evaluate_model
    from aesthetics_jax.export import bundle as bundle_lib

    good = [n for n in CASES if not isinstance(CASES[n][1], str) and n != "plain_rgb_jpeg"]  # plain: the train split
    ids = _ava_with_hostile_images(tmp_path / "raw", test=good)
    model_config = dict(name="mobilenet", width=0.25, num_blocks=2, dropout=0.0, heads={"emd": {"type": "emd"}})
    model = models.create(**model_config)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3), jnp.uint8))
    variables = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(jax.random.key(1), x.shape), variables)
    data = dict(name="ava", manual_dir=str(tmp_path / "raw"), data_dir=str(tmp_path / "tfds"), val_fraction=0.0,
                split_seed=0, image_size=32, resize_size=36, num_threads=1)
    bundle = str(tmp_path / "tiny.bundle")
    bundle_lib.write(bundle, model_config=model_config, variables=variables, image_size=32, resize_size=36,
                     config={"model": model_config, "data": data, "eval_batch_size": 8})
    evaluate_model(bundle, split="test", out=str(tmp_path / "eval"))
    with open(tmp_path / "eval" / "test_predictions.csv") as f:
        evaluated = {int(row["id"]): float(row["emd_pred_mean"]) for row in csv.DictReader(f)}
    assert set(evaluated) == {ids[n] for n in good}
    builder = ava.build_ava(tmp_path / "raw", tmp_path / "tfds", val_fraction=0.0)
    skipped = {int(r["id"]): r["reason"] for r in base.skipped_report(builder)}

    results = predict.predict(str(tmp_path / "raw" / "images"), bundle, batch_size=4)
    by_id = {int(os.path.basename(r["image"]).split(".")[0]): r for r in results}
    for name, image_id in ids.items():
        item = by_id.get(image_id)
        if name == "missing":
            assert item is None and skipped[image_id] == "missing_image"
        elif image_id in skipped:
            assert item["error"].startswith(skipped[image_id] + ":"), (name, item, skipped[image_id])
        else:
            assert "error" not in item, (name, item)
            if name != "plain_rgb_jpeg":
                assert item["mean_score_prediction"] == pytest.approx(evaluated[image_id], abs=1e-5), name
    assert np.ptp(list(evaluated.values())) > 1e-3  # the model tells the images apart


@pytest.mark.parametrize("dataset", ["eva", "ava"])
def test_build_report_and_counts(dataset, tmp_path):
    """A whole build over every hostile file: nothing crashes, each bad one is in skipped.csv with its
    reason, the counts are in the dataset info, and the good ones decode to the expected pixels."""
    if dataset == "eva":
        ids = _eva_with_hostile_images(str(tmp_path / "raw"))
        builder = eva.build_eva(tmp_path / "raw", tmp_path / "tfds", val_fraction=0.0, test_fraction=0.0)
    else:
        ids = _ava_with_hostile_images(tmp_path / "raw", test=["plain_rgb_jpeg"])
        builder = ava.build_ava(tmp_path / "raw", tmp_path / "tfds")
    report = {int(r["id"]): r for r in base.skipped_report(builder)}
    expected_skips = {ids[n]: CASES[n][1] for n in CASES if isinstance(CASES[n][1], str)}
    assert {i: r["reason"] for i, r in report.items()} == expected_skips
    for image_id, record in report.items():
        assert record["file"].endswith(f"{image_id}.jpg") and record["line"] >= 1
    meta = builder.info.metadata
    assert meta["num_skipped"] == len(expected_skips)
    assert sum(meta["skipped"].values()) == len(expected_skips)
    reencoded = {}
    for name, (_, expected, action) in CASES.items():
        if action and action != "keep":
            why = action.split(":")[1]
            reencoded[why] = reencoded.get(why, 0) + 1
    assert dict(meta["reencoded"]) == reencoded

    by_id = {}
    for split in builder.info.splits:
        source = pipeline.make_source(builder, split)
        by_id.update({int(source[i]["id"]): source[i]["image"] for i in range(len(source))})
    good = {n: ids[n] for n in CASES if not isinstance(CASES[n][1], str)}
    assert set(by_id) == set(good.values())
    for name, image_id in good.items():
        _assert_close(preprocessing.decode_jpeg(by_id[image_id]), CASES[name][1], name)
