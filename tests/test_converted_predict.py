"""From idealo's weight file to predictions on image files that match idealo's Keras `predict`.

The reference is Keras 3 (JAX backend) running idealo's NIMA architecture (MobileNet alpha 1 at
224, average pooling, Dropout 0.75, Dense(10, softmax)) with random weights, saved in the Keras-2
`save_weights` layout of idealo's released file, and fed exactly as idealo's `predict` /
`evaluate` feed it: `keras.utils.load_img(path, target_size=(224, 224))` (Pillow NEAREST squash),
`img_to_array`, `keras.applications.mobilenet.preprocess_input`. The same file goes through
`aesthetics-jax convert` (which writes a bundle recording the `keras_load_img` transform) and
`aesthetics-jax predict` on a folder of real photographs of several sizes and aspect ratios
(larger and smaller than 224, landscape, portrait, greyscale, PNG).
"""

import json
import os
import shutil

import cv2
import keras
import numpy as np
import pytest
import skimage.data
import sklearn.datasets
from PIL import Image

from aesthetics_jax import predict as predict_lib
from aesthetics_jax.cli import main
from test_convert_keras import _randomise, write_keras2_h5

SIZE = 224


def _photos(folder) -> list[str]:
    """Real photographs of different sizes / aspect ratios / kinds as files; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    sk_images = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
    shutil.copy(os.path.join(sk_images, "china.jpg"), os.path.join(folder, "china.jpg"))  # 640x427, as shipped
    shutil.copy(os.path.join(sk_images, "flower.jpg"), os.path.join(folder, "flower.jpg"))
    arrays = {
        "astronaut.jpg": skimage.data.astronaut(),                                   # 512x512
        "coffee.jpg": skimage.data.coffee(),                                         # 600x400
        "chelsea_small.jpg": cv2.resize(skimage.data.chelsea(), (150, 100), interpolation=cv2.INTER_AREA),
        "rocket_portrait.jpg": np.ascontiguousarray(np.rot90(skimage.data.rocket())),  # 427x640 portrait
        "astronaut_tall.jpg": skimage.data.astronaut()[:, 130:330],                   # 200x512: upsampled width
        "camera_grey.jpg": skimage.data.camera(),                                    # greyscale JPEG
        "coffee.png": skimage.data.coffee()[::2, ::2],                               # PNG, 300x200
    }
    for name, pixels in arrays.items():
        image = Image.fromarray(pixels)
        image.save(os.path.join(folder, name), **({"quality": 90} if name.endswith(".jpg") else {}))
    return sorted(os.path.join(folder, n) for n in os.listdir(folder))


@pytest.fixture(scope="module")
def idealo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("idealo")
    paths = _photos(str(tmp / "photos"))
    keras.backend.clear_session()
    base = keras.applications.MobileNet(input_shape=(SIZE, SIZE, 3), alpha=1.0, weights=None, include_top=False,
                                        pooling="avg")
    model = keras.Model(base.inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Dropout(0.75)(base.output)))

    def idealo_inputs(batch_paths):  # idealo: utils.load_image + preprocess_input
        arrays = [keras.utils.img_to_array(keras.utils.load_img(p, target_size=(SIZE, SIZE))) for p in batch_paths]
        return keras.applications.mobilenet.preprocess_input(np.stack(arrays))

    # Random weights; BN statistics measured on these photos so that predictions differ clearly
    # between images (a near-uniform output would hide a wrong transform).
    _randomise(model, 7, calibrate_with=idealo_inputs(paths))
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            layer.set_weights([np.random.RandomState(8).normal(0, 0.3, w.shape).astype(np.float32) for w in layer.weights])
    weights = str(tmp / "weights_mobilenet_aesthetic_0.07.hdf5")
    write_keras2_h5(model, weights, weights_only=True)
    dist = np.asarray(model.predict(idealo_inputs(paths), verbose=0), np.float64)
    means = dist @ np.arange(1, 11)
    out = str(tmp / "nima_idealo")
    assert main(["convert", "--from", "keras", weights, "--arch", "nima_mobilenet", "--out", out]) == 0
    return dict(tmp=tmp, paths=paths, folder=str(tmp / "photos"), dist=dist, means=means, bundle=out)


def test_keras_reference_is_discriminative(idealo):
    assert np.ptp(idealo["means"]) > 0.2, idealo["means"]  # predictions differ clearly between photos


@pytest.mark.parametrize("backend", ["jax", "onnx"])
def test_predict_matches_idealo_keras_on_files(idealo, backend, capsys):
    argv = ["predict", idealo["folder"], "--model", idealo["bundle"], "--backend", backend, "--quiet", "--no-cache"]
    assert main(argv) == 0
    items = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [item["image"] for item in items] == idealo["paths"]
    means = np.array([item["mean_score_prediction"] for item in items])
    np.testing.assert_allclose(means, idealo["means"], atol=1e-3, rtol=0)
    dist = np.array([item["predictions"] for item in items])
    np.testing.assert_allclose(dist, idealo["dist"], atol=1e-3, rtol=0)


def test_another_transform_would_not_match(idealo):
    """The bound above is tight enough to tell transforms apart: the project's own training-time
    transform (bilinear square resize to 256, centre crop 224) misses idealo's means by > 1e-3."""
    loaded = predict_lib.Predictor(idealo["bundle"])
    loaded.transform = {"name": "resize_center_crop", "resize_size": 256, "image_size": SIZE, "resize_shorter": 0}
    means = np.array([r["mean_score_prediction"] for r in predict_lib.predict(idealo["paths"], loaded)])
    assert np.abs(means - idealo["means"]).max() > 1e-3


def test_evaluate_uses_the_recorded_transform(idealo, tmp_path):
    """`aesthetics-jax evaluate` of the converted bundle on an AVA build (the bundle's default data
    config, pointed at a local copy) feeds the images through idealo's transform, as predict does."""
    import csv

    from ava_fixture import write_ava_fixture

    fixture = write_ava_fixture(tmp_path / "AVA")
    out = tmp_path / "eval"
    assert main(["evaluate", idealo["bundle"], "--manual_dir", str(tmp_path / "AVA"), "--data_dir",
                 str(tmp_path / "tfds"), "--out", str(out)]) == 0
    with open(out / "test_predictions.csv") as f:
        evaluated = {row["id"]: float(row["emd_pred_mean"]) for row in csv.DictReader(f)}
    test_ids = sorted(str(i) for i, row in fixture["good"].items() if row["test"])
    assert sorted(evaluated) == test_ids
    paths = [str(tmp_path / "AVA" / "images" / f"{i}.jpg") for i in test_ids]
    predicted = [r["mean_score_prediction"] for r in predict_lib.predict(paths, idealo["bundle"])]
    np.testing.assert_allclose([evaluated[i] for i in test_ids], predicted, atol=1e-5)


def test_onnx_export_records_the_transform(idealo, tmp_path):
    import onnx

    from aesthetics_jax.export import commands

    out = str(tmp_path / "nima.onnx")
    assert commands.main([idealo["bundle"], "--format", "onnx", "--out", out]) == 0
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert json.loads(meta["transform_spec"]) == {"name": "keras_load_img", "image_size": SIZE}
    assert "NEAREST" in meta["transform"]
