"""`aesthetics-jax data build ...`: builds each dataset, prints splits and the report, re-runs idempotently,
stores a reduced resolution on request, and shares image checks across shard processes."""

import os
import subprocess
import sys

import numpy as np

from aesthetics_jax import cli
from aesthetics_jax.data import image_io, pipeline, preprocessing
from aesthetics_jax.data.builders import ava
from ava_fixture import write_ava_fixture
from test_aadb_builder import write_aadb_fixture
from test_eva_builder import write_eva_fixture

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_build_ava_eva_aadb_and_rerun(tmp_path, capsys):
    write_ava_fixture(tmp_path / "ava")
    write_eva_fixture(str(tmp_path / "eva"))
    write_aadb_fixture(str(tmp_path / "aadb"))
    data_dir = str(tmp_path / "tfds")
    assert cli.main(["data", "build", "ava", "--manual_dir", str(tmp_path / "ava"), "--data_dir", data_dir,
                     "--val_fraction", "0.34", "--seed", "3"]) == 0
    out = capsys.readouterr()
    assert "ava/val0p34_seed3/1.0.0 validation: 3 examples" in out.out
    assert "skipped: 13" in out.out and "skipped.csv" in out.out
    assert "[ava] checked" in out.err  # progress of the image checks
    assert cli.main(["data", "build", "eva", "--manual_dir", str(tmp_path / "eva"), "--data_dir", data_dir,
                     "--val_fraction", "0.2", "--test_fraction", "0.25", "--seed", "7", "--quiet"]) == 0
    assert "eva/val0p2_test0p25_seed7/1.0.0 test: 5 examples" in capsys.readouterr().out
    assert cli.main(["data", "build", "aadb", "--manual_dir", str(tmp_path / "aadb"), "--data_dir", data_dir,
                     "--quiet"]) == 0
    assert "aadb/default/1.0.0 train: 7 examples" in capsys.readouterr().out

    info = os.path.join(data_dir, "ava", "val0p34_seed3", "1.0.0", "dataset_info.json")
    mtime = os.path.getmtime(info)
    assert cli.main(["data", "build", "ava", "--manual_dir", str(tmp_path / "ava"), "--data_dir", data_dir,
                     "--val_fraction", "0.34", "--seed", "3", "--quiet"]) == 0  # idempotent: reused
    assert os.path.getmtime(info) == mtime
    assert "validation: 3 examples" in capsys.readouterr().out


def test_resize_shorter_config(tmp_path, capsys):
    write_ava_fixture(tmp_path / "ava")
    # Replace one good image by a large one, which the s16 config must store at shorter side 16.
    big = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    with open(tmp_path / "ava" / "images" / "1002.jpg", "wb") as f:
        f.write(image_io.encode_jpeg(big))
    assert cli.main(["data", "build", "ava", "--manual_dir", str(tmp_path / "ava"), "--data_dir",
                     str(tmp_path / "tfds"), "--resize_shorter", "16", "--quiet"]) == 0
    builder = ava.build_ava(tmp_path / "ava", tmp_path / "tfds", resize_shorter=16)
    assert builder.builder_config.name == "default_s16"
    shapes = {}
    for split in builder.info.splits:
        source = pipeline.make_source(builder, split)
        for i in range(len(source)):
            shapes[int(source[i]["id"])] = preprocessing.decode_jpeg(source[i]["image"]).shape
    assert shapes[1002] == (16, 24, 3)
    assert all(min(s[:2]) == 16 for s in shapes.values())  # fixture images are 24x32
    assert builder.info.metadata["reencoded"] == {"resize": len(shapes)}


def test_inspect_shards_fill_the_cache_then_build(tmp_path):
    write_eva_fixture(str(tmp_path / "eva"))
    env = dict(os.environ, PYTHONPATH=ROOT)
    base = [sys.executable, "-m", "aesthetics_jax.cli", "data", "build", "eva", "--manual_dir", str(tmp_path / "eva"),
            "--data_dir", str(tmp_path / "tfds")]
    procs = [subprocess.Popen(base + ["--inspect_shard", f"{i}/2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env, cwd=ROOT) for i in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert "checked 10 images (shard 0/2)" in outs[0][0] and "checked 10 images (shard 1/2)" in outs[1][0]
    cache = tmp_path / "tfds" / "eva" / "_inspect_cache"
    assert sorted(os.listdir(cache)) == ["inspect_cache_0of2.jsonl", "inspect_cache_1of2.jsonl"]
    final = subprocess.run(base, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert final.returncode == 0, final.stderr[-2000:]
    assert "(20 cached)" in final.stderr  # nothing re-checked
    assert "eva/default/1.0.0 train: 16 examples" in final.stdout


def test_usage_errors(tmp_path, capsys):
    try:
        cli.main(["data", "build", "eva", "--data_dir", str(tmp_path)])
    except SystemExit as e:
        assert "--manual_dir is required" in str(e)
    else:
        raise AssertionError("no error without --manual_dir")
