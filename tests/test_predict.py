"""`aesthetics_jax.predict` and `aesthetics-jax predict` on a folder of good and bad images.

The bundle holds a tiny MobileNet with an emd and an attributes head and random weights. The
reference for every good image is computed independently: PIL decodes the file (plain JPEGs, which
a build stores byte for byte; three already at resize_size, so the resize is the identity), numpy
takes the centre crop, `model.apply` scores it.
"""

import csv
import io
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from aesthetics_jax import models
from aesthetics_jax import predict as predict_lib
from aesthetics_jax.export import bundle as bundle_lib
from test_export_onnx import randomize

IMAGE_SIZE, RESIZE_SIZE = 32, 36
MODEL_CONFIG = dict(
    name="mobilenet", width=0.25, num_blocks=3, dropout=0.2, dtype="float32",
    heads={"emd": {"type": "emd", "num_bins": 10}, "attributes": {"type": "attributes", "names": ["light", "color"], "hidden": 4}},
)
GOOD = ("a.jpg", "b.jpg", "c.jpg", "d.jpg")
BAD = {"empty.jpg": "empty_image", "corrupt.jpg": "truncated_image", "text.jpg": "not_jpeg"}  # image_io skip reasons


def _model():
    cfg = dict(MODEL_CONFIG)
    name = cfg.pop("name")
    cfg.pop("dtype")
    return models.create(name, **cfg)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    model = _model()
    variables = randomize(model.init(jax.random.key(0), jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), jnp.uint8)), 5)
    bundle = str(root / "tiny.bundle")
    bundle_lib.write(bundle, model_config=MODEL_CONFIG, variables=variables, image_size=IMAGE_SIZE,
                     resize_size=RESIZE_SIZE)
    folder = root / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in GOOD[:3]:
        Image.fromarray(rng.integers(0, 256, (RESIZE_SIZE, RESIZE_SIZE, 3), dtype=np.uint8)).save(folder / name, quality=95)
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(folder / "d.jpg", quality=90)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
    (folder / "text.jpg").write_text("this is not a photograph\n")
    (folder / "notes.txt").write_text("not an image extension: skipped when listing the folder\n")
    return dict(root=root, folder=str(folder), bundle=bundle, model=model, variables=variables)


def _reference(setup, name, flip=False):
    pixels = np.asarray(Image.open(os.path.join(setup["folder"], name)).convert("RGB"))
    o = (RESIZE_SIZE - IMAGE_SIZE) // 2
    crop = pixels[o : o + IMAGE_SIZE, o : o + IMAGE_SIZE]
    if flip:
        crop = crop[:, ::-1]
    out = setup["model"].apply(setup["variables"], crop[None].astype(np.float32))
    return jax.tree.map(lambda x: np.asarray(x)[0], out)


def _inputs(setup):
    folder = setup["folder"]
    return [folder, os.path.join(folder, "missing.jpg")]


def test_python_api_scores_good_and_reports_bad(setup):
    results = predict_lib.predict(_inputs(setup), model=setup["bundle"], batch_size=4)
    folder = setup["folder"]
    # Directory listing: image extensions only, sorted; then the explicit missing path.
    names = sorted(list(GOOD) + list(BAD))
    assert [r["image"] for r in results] == [os.path.join(folder, n) for n in names] + [os.path.join(folder, "missing.jpg")]
    by_name = {os.path.basename(r["image"]): r for r in results}
    for name, reason in BAD.items():
        assert set(by_name[name]) == {"image", "error"} and reason in by_name[name]["error"], by_name[name]
    assert by_name["missing.jpg"]["error"] == "missing_image: file not found"
    for name in GOOD:
        item = by_name[name]
        assert "error" not in item
        assert len(item["predictions"]) == 10 and abs(sum(item["predictions"]) - 1) < 1e-5
        assert set(item) == {"image", "predictions", "mean_score_prediction", "sd_score_prediction", "attributes", "overall"}
        assert list(item["attributes"]) == ["light", "color"]
    for name in GOOD[:3]:
        ref = _reference(setup, name)
        item = by_name[name]
        np.testing.assert_allclose(item["predictions"], ref["emd"]["distribution"], atol=1e-5)
        assert item["mean_score_prediction"] == pytest.approx(float(ref["emd"]["mean"]), abs=1e-4)
        assert item["sd_score_prediction"] == pytest.approx(float(ref["emd"]["sd"]), abs=1e-4)
        np.testing.assert_allclose(list(item["attributes"].values()), ref["attributes"]["attributes"], atol=1e-4)
        assert item["overall"] == pytest.approx(float(ref["attributes"]["overall"]), abs=1e-4)
    # Non-trivial weights: the images get different scores.
    assert len({round(by_name[n]["mean_score_prediction"], 4) for n in GOOD}) == len(GOOD)


def test_arrays_single_path_and_batch_sizes_agree(setup):
    folder = setup["folder"]
    paths = [os.path.join(folder, n) for n in GOOD]
    by_path = predict_lib.predict(paths, model=setup["bundle"], batch_size=3)
    single = predict_lib.predict(paths[1], model=setup["bundle"])
    assert single[0]["mean_score_prediction"] == pytest.approx(by_path[1]["mean_score_prediction"], abs=1e-5)
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths[:3]]
    from_arrays = predict_lib.predict(np.stack(arrays), model=setup["bundle"], batch_size=2)
    assert [r["image"] for r in from_arrays] == ["array[0]", "array[1]", "array[2]"]
    for a, b in zip(from_arrays, by_path[:3]):
        np.testing.assert_allclose(a["predictions"], b["predictions"], atol=1e-6)
    bad = predict_lib.predict([arrays[0], np.zeros((4, 4, 7))], model=setup["bundle"])
    assert "error" not in bad[0] and "shape" in bad[1]["error"]


def test_augmented_averages_the_mirror(setup):
    name = GOOD[0]
    (item,) = predict_lib.predict(os.path.join(setup["folder"], name), model=setup["bundle"], augmented=True)
    a, b = _reference(setup, name), _reference(setup, name, flip=True)
    p = (a["emd"]["distribution"] + b["emd"]["distribution"]) / 2
    bins = np.arange(1, 11)
    mean = (p * bins).sum()
    np.testing.assert_allclose(item["predictions"], p, atol=1e-5)
    assert item["mean_score_prediction"] == pytest.approx(mean, abs=1e-4)
    assert item["mean_score_prediction"] == pytest.approx((float(a["emd"]["mean"]) + float(b["emd"]["mean"])) / 2, abs=1e-4)
    assert item["sd_score_prediction"] == pytest.approx(np.sqrt((p * (bins - mean) ** 2).sum()), abs=1e-4)
    assert item["overall"] == pytest.approx((float(a["attributes"]["overall"]) + float(b["attributes"]["overall"])) / 2, abs=1e-4)
    (plain,) = predict_lib.predict(os.path.join(setup["folder"], name), model=setup["bundle"])
    assert plain["mean_score_prediction"] != pytest.approx(item["mean_score_prediction"], abs=1e-6)


def test_cli_json_lines_exit_code_and_same_results(setup, capsys):
    rc = predict_lib.main(_inputs(setup) + ["--model", setup["bundle"], "--batch-size", "4", "--no-cache"])
    captured = capsys.readouterr()
    assert rc == 1  # some items failed
    lines = [json.loads(line) for line in captured.out.strip().splitlines()]
    api = predict_lib.predict(_inputs(setup), model=setup["bundle"], batch_size=4)
    assert len(lines) == len(api)
    for a, b in zip(lines, api):
        assert a.keys() == b.keys() and a["image"] == b["image"]
        if "error" in a:
            assert a["error"] == b["error"]
        else:
            np.testing.assert_allclose(a["predictions"], b["predictions"], atol=1e-6)
    assert "predict [" in captured.err and "4 failed" in captured.err
    # Only good images: exit code 0; CSV format.
    good = [os.path.join(setup["folder"], n) for n in GOOD]
    assert predict_lib.main(good + ["--model", setup["bundle"], "--format", "csv", "--quiet", "--no-cache"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["image"] for r in rows] == good
    assert float(rows[0]["mean_score_prediction"]) == pytest.approx(api[0]["mean_score_prediction"], abs=1e-5)
    assert {"p1", "p10", "attributes.light", "overall", "error"} <= set(rows[0])
    # A model that does not exist: a clear message, exit code 2.
    assert predict_lib.main(good + ["--model", str(setup["root"] / "nope.bundle"), "--quiet"]) == 2
    assert "not found" in capsys.readouterr().err


def test_registry_name(setup, monkeypatch):
    monkeypatch.setenv("AESTHETICS_JAX_MODELS", os.path.dirname(setup["bundle"]))
    assert predict_lib.resolve_model("tiny") == setup["bundle"]
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        predict_lib.resolve_model("unknown_model")


def test_onnx_backend_equals_jax_backend(setup):
    inputs = _inputs(setup)
    jax_results = predict_lib.predict(inputs, model=setup["bundle"], batch_size=4)
    onnx_results = predict_lib.predict(inputs, model=setup["bundle"], batch_size=4, backend="onnx")
    assert [r["image"] for r in onnx_results] == [r["image"] for r in jax_results]
    for a, b in zip(jax_results, onnx_results):
        assert a.keys() == b.keys()
        if "error" in a:
            continue
        np.testing.assert_allclose(a["predictions"], b["predictions"], atol=1e-4)
        assert a["mean_score_prediction"] == pytest.approx(b["mean_score_prediction"], abs=1e-4)
        assert a["sd_score_prediction"] == pytest.approx(b["sd_score_prediction"], abs=1e-4)
        np.testing.assert_allclose(list(a["attributes"].values()), list(b["attributes"].values()), atol=1e-4)
        assert a["overall"] == pytest.approx(b["overall"], abs=1e-4)


def test_cli_in_a_fresh_process_imports_no_tensorflow(setup):
    """The exit code through a real process; `import aesthetics_jax` imports nothing heavy and
    predict never imports TensorFlow."""
    code = (
        "import sys; import aesthetics_jax; "
        "assert not {'jax', 'flax', 'numpy', 'tensorflow'} & set(sys.modules), 'importing the package is not cheap'; "
        "from aesthetics_jax.predict import main; "
        f"rc = main({_inputs(setup)!r} + ['--model', {setup['bundle']!r}, '--quiet', '--no-cache']); "
        "assert 'tensorflow' not in sys.modules, 'predict imported tensorflow'; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sum("error" in r for r in lines) == 4 and len(lines) == len(GOOD) + 4


def test_package_level_one_line_api(setup):
    """`aesthetics_jax.predict(images, model=...)` is the one-line API (a lazily loaded, callable
    module) and returns what `aesthetics_jax.predict.predict` returns."""
    import aesthetics_jax

    paths = [os.path.join(setup["folder"], n) for n in GOOD[:2]]
    assert aesthetics_jax.predict(paths, model=setup["bundle"], augmented=False, batch_size=2, backend="jax") == \
        predict_lib.predict(paths, model=setup["bundle"], batch_size=2)
    assert aesthetics_jax.predict.Predictor is predict_lib.Predictor
