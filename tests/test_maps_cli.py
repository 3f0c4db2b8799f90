"""Map files (modalities.files, `aesthetics-jax maps`, data_prep/maps.py): folders and builds -> PNG + index."""

import csv
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from aesthetics_jax import cli, modalities
from aesthetics_jax.data import image_io, pipeline, preprocessing
from aesthetics_jax.data.builders import eva
from aesthetics_jax.modalities import files
from test_image_robustness import CASES, _write
from test_patches import photo, write_photo_eva

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER_SIZES = ((200, 260), (375, 500), (500, 375), (240, 320), (375, 500), (300, 450))


@pytest.fixture(scope="module")
def producer():
    return modalities.create("spectral")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A folder of photos (+ every hostile case) and a small EVA build."""
    folder = tmp_path_factory.mktemp("photos")
    for k, (h, w) in enumerate(FOLDER_SIZES):
        cv2.imwrite(str(folder / f"photo{k}.jpg"), photo(10 + k, h, w)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
    cv2.imwrite(str(folder / "lossless.png"), photo(20, 260, 300)[..., ::-1])
    for name, (data, _, _) in CASES.items():
        if data is not None:
            _write(str(folder), f"case_{name}.jpg", data)
    (folder / "notes.txt").write_text("not an image: ignored by extension")
    raw = tmp_path_factory.mktemp("eva_raw")
    write_photo_eva(str(raw), num_images=6, first_id=990000)
    build = eva.build_eva(raw, tmp_path_factory.mktemp("tfds"), val_fraction=0.2, test_fraction=0.2)
    return dict(folder=folder, build=build)


@pytest.fixture(scope="module")
def full(sources, producer, tmp_path_factory):
    out = tmp_path_factory.mktemp("maps16")
    summary = files.compute_map_files(producer, [sources["folder"], sources["build"].data_dir], out, progress=None)
    return dict(out=out, summary=summary)


def _hostile(kind):
    return {f"case_{n}" for n in CASES if CASES[n][0] is not None and (isinstance(CASES[n][1], str)) == (kind == "bad")}


def test_folder_and_build_maps_index_and_skips(sources, producer, full):
    out, summary = full["out"], full["summary"]
    index = {r["id"]: r for r in files.read_index(out)}
    photos = {f"photo{k}" for k in range(len(FOLDER_SIZES))} | {"lossless"}
    build_ids = set()
    for split in sources["build"].info.splits:
        src = pipeline.make_source(sources["build"], split)
        for k in range(len(src)):
            record = src[k]
            build_ids.add(str(int(record["id"])))
            row = index[str(int(record["id"]))]
            pixels = preprocessing.decode_jpeg(record["image"])
            assert (row["height"], row["width"]) == pixels.shape[:2]  # the build's stored pixels
            assert row["source"] == f"{sources['build'].data_dir}#{split}/{k}"
            want = np.asarray(producer(pixels[None]))[0]
            assert np.abs(files.read_map_png(out / row["map_file"]) - want).max() <= 0.5 / 65535 + 1e-7
    assert set(index) == photos | build_ids | _hostile("good")
    assert all(r["producer"] == "spectral" and r["map_file"] == f"{i}.png" for i, r in index.items())
    for name in photos:
        pixels = image_io.read_image(sources["folder"] / (f"{name}.png" if name == "lossless" else f"{name}.jpg"))
        saliency = files.read_map_png(out / f"{name}.png")
        assert saliency.shape == pixels.shape[:2] == (index[name]["height"], index[name]["width"])
        assert np.abs(saliency - np.asarray(producer(pixels[None]))[0]).max() <= 0.5 / 65535 + 1e-7
    # Hostile files: the repairable ones get the map of their repaired (upright, RGB, 8-bit) pixels.
    for name in _hostile("good"):
        expected = CASES[name[len("case_"):]][1]
        saliency = files.read_map_png(out / f"{name}.png")
        assert saliency.shape == expected.shape[:2], name
        assert np.abs(saliency - np.asarray(producer(expected[None]))[0]).mean() < 0.02, name
    skipped = {r["id"]: r for r in files.read_skipped(out)}
    assert {i: r["reason"] for i, r in skipped.items()} == {
        f"case_{n}": CASES[n][1] for n in CASES if CASES[n][0] is not None and isinstance(CASES[n][1], str)}
    assert all(r["file"].endswith(f"{i}.jpg") and r["detail"] for i, r in skipped.items())
    assert summary["computed"] == len(index) and summary["skipped"] == len(skipped) and summary["merged"]
    assert files.read_producer(out) == {"producer": producer.metadata(), "bits": 16}
    with open(out / "index.csv", newline="") as f:
        assert csv.DictReader(f).fieldnames == ["id", "source", "height", "width", "map_file", "producer"]


def test_png_round_trip_precision_8_and_16_bits(tmp_path):
    rng = np.random.default_rng(0)
    saliency = np.concatenate([rng.random(4995), [0.0, 1.0, 0.5, 1 / 65535, 0.4999]]).astype(np.float32)
    saliency = saliency.reshape(50, 100)
    for bits, dtype, step in ((16, np.uint16, 65535), (8, np.uint8, 255)):
        values = files.encode_map(saliency, bits)
        assert values.dtype == dtype
        path = str(tmp_path / f"m{bits}.png")
        assert cv2.imwrite(path, values)
        back = files.read_map_png(path)
        assert back.dtype == np.float32 and back.min() >= 0 and back.max() <= 1
        assert np.abs(back - saliency).max() <= 0.5 / step + 1e-7
        assert back[-1, -5] == 0 and back[-1, -4] == 1
    with pytest.raises(ValueError):
        files.encode_map(np.array([[np.nan]]), 16)


def test_8_bit_maps(sources, producer, tmp_path):
    files.compute_map_files(producer, sources["folder"], tmp_path, bits=8, progress=None)
    saliency = cv2.imread(str(tmp_path / "photo0.png"), cv2.IMREAD_UNCHANGED)
    assert saliency.dtype == np.uint8 and saliency.shape == (200, 260)
    want = np.asarray(producer(image_io.read_image(sources["folder"] / "photo0.jpg")[None]))[0]
    assert np.abs(files.read_map_png(tmp_path / "photo0.png") - want).max() <= 0.5 / 255 + 1e-6
    with pytest.raises(ValueError, match="holds maps of"):  # the same folder with 16-bit maps: refused
        files.compute_map_files(producer, sources["folder"], tmp_path, bits=16, progress=None)


def test_resume_redoes_only_missing_or_broken_maps(sources, producer, tmp_path):
    first = files.compute_map_files(producer, [sources["folder"], sources["build"]], tmp_path, progress=None)
    index = files.read_index(tmp_path)
    stamps = {r["id"]: os.stat(tmp_path / r["map_file"]).st_mtime_ns for r in index}
    build_id = next(r["id"] for r in index if "#" in r["source"])
    os.remove(tmp_path / "photo1.png")
    cut = tmp_path / f"{build_id}.png"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # a write cut short: no IEND
    (tmp_path / "photo2.png").write_bytes(cv2.imencode(".png", np.zeros((5, 5, 3), np.uint8))[1].tobytes())  # colour
    again = files.compute_map_files(producer, [sources["folder"], sources["build"]], tmp_path, progress=None)
    assert again["computed"] == 3 and again["resumed"] == first["computed"] - 3
    assert files.read_index(tmp_path) == index
    for r in index:
        if r["id"] not in ("photo1", "photo2", build_id):
            assert os.stat(tmp_path / r["map_file"]).st_mtime_ns == stamps[r["id"]], r["id"]
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


def test_shards_cover_everything_exactly_once(sources, producer, full, tmp_path):
    n = 3
    seen = []
    for i in range(n):
        summary = files.compute_map_files(producer, [sources["folder"], sources["build"].data_dir], tmp_path,
                                          shard=(i, n), progress=None)
        assert summary["merged"] == (i == n - 1)
        with open(tmp_path / f"index.{i}-of-{n}.csv", newline="") as f:
            seen += [r["id"] for r in csv.DictReader(f)]
        with open(tmp_path / f"skipped.{i}-of-{n}.csv", newline="") as f:
            seen += [r["id"] for r in csv.DictReader(f)]
    everything = [r["id"] for r in files.read_index(full["out"])] + [r["id"] for r in files.read_skipped(full["out"])]
    assert sorted(seen) == sorted(everything) and len(set(seen)) == len(seen)
    assert (tmp_path / "index.csv").read_text() == (full["out"] / "index.csv").read_text()
    strip = lambda rows: [(r["id"], r["file"], r["reason"]) for r in rows]  # noqa: E731  (details may hold addresses)
    assert strip(files.read_skipped(tmp_path)) == strip(files.read_skipped(full["out"]))
    for r in files.read_index(tmp_path):
        assert (tmp_path / r["map_file"]).read_bytes() == (full["out"] / r["map_file"]).read_bytes()


def test_command_line(sources, tmp_path, capsys):
    assert cli.main(["maps", "compute", str(sources["build"].data_dir), "--out", str(tmp_path / "a"),
                     "--shard", "0/2", "--param", "variant=hou2007", "--quiet"]) == 0
    assert "index.csv is written when every shard has finished" in capsys.readouterr().out
    assert files.read_producer(tmp_path / "a")["producer"]["params"]["variant"] == "hou2007"
    assert cli.main(["maps", "compute", "eva/val0p2_test0p2_seed0", "--data_dir",
                     str(sources["build"].data_dir).split(os.sep + "eva" + os.sep)[0], "--out", str(tmp_path / "a"),
                     "--shard", "1/2", "--param", "variant=hou2007", "--quiet"]) == 0
    assert len(files.read_index(tmp_path / "a")) == 6
    # python data_prep/maps.py from the repository root, as a user runs it.
    run = subprocess.run([sys.executable, "data_prep/maps.py", str(sources["folder"]), "--out", str(tmp_path / "b"),
                          "--bits", "8"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "[maps] [####################] 100%" in run.stderr and "skipped" in run.stdout
    assert cv2.imread(str(tmp_path / "b" / "photo0.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint8
