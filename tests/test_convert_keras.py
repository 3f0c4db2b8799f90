"""Keras weight files (aesthetics_jax.convert.keras_h5) -> our models, with numerical parity.

References are built in Keras 3 (KERAS_BACKEND=jax) with random weights and randomised BatchNorm
statistics, then saved the two ways real files exist:
  * Keras 3 `model.save_weights('x.weights.h5')`;
  * a legacy Keras-2 full-model .h5 written here with h5py exactly as Keras 2 lays it out
    (`model_weights/<layer>/<layer>/kernel:0`, attrs `layer_names` / `weight_names`, auto names
    numbered from `conv2d_1` as Keras 2 did; a nested base model lists its inner layers' weights,
    trainable ones first), which is the format of idealo's `weights_mobilenet_aesthetic_0.07.hdf5`.
BatchNorm statistics are *measured* (one training-mode call on random images, momentum 0) rather
than made up, so activations stay O(1) through InceptionV3's 94 layers and a float32 comparison
tests the mapping, not rounding at 1e10. Each file is converted into `models.create(...)` and
compared on random raw pixels (Keras gets `x / 127.5 - 1`, ours normalises itself): max abs
difference <= 1e-4 in float32 on pooled features and feature maps, <= 1e-5 on NIMA's softmax.

The idealo NIMA and MobileNet v1/v2 tests are fast; the Keras InceptionV3 build (~16 s) and its
tests are marked slow (CI runs them too).
"""

import functools
import json
import os
import re

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aesthetics_jax import models
from aesthetics_jax.convert import keras_h5
from aesthetics_jax.models import inception

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

TOL = 1e-4
RTOL_LARGE = 1e-5  # the 'relative where values are large' bound


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def _randomise(model, seed, calibrate_with=None):
    """Random BN beta/gamma/statistics and Dense weights (Keras inits them to 0/1, which would hide
    mapping errors). With `calibrate_with` (images in [-1, 1]) the moving statistics are then
    measured on those images instead (one jitted training-mode `stateless_call` with momentum 0;
    an eager call costs 4x more): a deep random network with made-up statistics drifts to huge or
    vanishing activations, where a float32 comparison measures rounding rather than the mapping.
    Gamma is drawn from U(0.2, 0.8) and beta from 0.1 + |N(0, 0.2)|: with gamma ~ 1 and beta ~ 0 a
    random BN-ReLU network is chaotic and float32 itself drifts from float64 by ~1e-4 over
    InceptionV3's depth (see test_convert_torchvision.py)."""
    rs = np.random.RandomState(seed)
    bns = [l for l in _all_layers(model) if isinstance(l, keras.layers.BatchNormalization)]
    for layer in bns:
        # Without gamma (Keras InceptionV3: scale=False) the output is unit-scaled, so beta is drawn
        # twice as large to keep the same beta/gamma ratio (~0.5) that keeps the network tame.
        beta_scale = 1.0 if layer.scale else 2.0
        values = []
        for w in layer.weights:
            if w.name == "gamma":
                values.append(rs.uniform(0.2, 0.8, w.shape))
            elif w.name == "beta":
                values.append(beta_scale * (0.1 + np.abs(rs.normal(0, 0.2, w.shape))))
            elif "variance" in w.name:
                values.append(rs.uniform(0.5, 1.5, w.shape))
            else:
                values.append(rs.normal(0, 0.2, w.shape))
        layer.set_weights([v.astype(np.float32) for v in values])
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.Dense):
            layer.set_weights([rs.normal(0, 0.05, w.shape).astype(np.float32) for w in layer.weights])
    if calibrate_with is not None:
        momenta = [layer.momentum for layer in bns]
        for layer in bns:
            layer.momentum = 0.0
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        call = jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=True))
        _, measured = call(trainable, non_trainable, jnp.asarray(calibrate_with, jnp.float32))
        for variable, value in zip(model.non_trainable_variables, measured):
            variable.assign(value)
        for layer, momentum in zip(bns, momenta):
            layer.momentum = momentum


def _keras2_name(name):
    """Keras 2 numbered auto names from 1: conv2d -> conv2d_1, conv2d_5 -> conv2d_6."""
    m = re.fullmatch(r"(conv2d|batch_normalization|dense|dropout)(?:_(\d+))?", name)
    return f"{m.group(1)}_{int(m.group(2) or 0) + 1}" if m else name


def _keras2_weight(layer, w):
    """Keras 2 called a DepthwiseConv2D kernel `depthwise_kernel` (Keras 3: `kernel`)."""
    return "depthwise_kernel" if isinstance(layer, keras.layers.DepthwiseConv2D) and w.name == "kernel" else w.name


def write_keras2_h5(model, path, rename=_keras2_name, weights_only=False):
    """A legacy Keras-2 `model.save()` file, written with h5py (weights part only); `weights_only`:
    the Keras-2 `save_weights()` layout instead (layer groups at the root), the layout of idealo's
    `weights_mobilenet_aesthetic_0.07.hdf5` (a ModelCheckpoint with save_weights_only=True)."""
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = b"2.2.4"
        f.attrs["backend"] = b"tensorflow"
        g = f if weights_only else f.create_group("model_weights")
        layer_names = []
        for layer in model.layers:
            name = rename(layer.name)
            layer_names.append(name)
            lg = g.create_group(name)
            if isinstance(layer, keras.Model):  # nested: inner weights, trainable first
                inner = list(_all_layers(layer))
                items = [(f"{rename(l.name)}/{_keras2_weight(l, w)}:0", w) for l in inner for w in l.trainable_weights]
                items += [(f"{rename(l.name)}/{_keras2_weight(l, w)}:0", w) for l in inner for w in l.non_trainable_weights]
            else:
                items = [(f"{name}/{_keras2_weight(layer, w)}:0", w) for w in layer.weights]
            lg.attrs["weight_names"] = np.array([n.encode() for n in items and [n for n, _ in items]], dtype="S")
            for n, w in items:
                lg.create_dataset(n, data=np.asarray(w))
        g.attrs["layer_names"] = np.array([n.encode() for n in layer_names], dtype="S")


def _images(size, n=2, seed=0):
    return np.random.RandomState(seed).uniform(0, 255, (n, size, size, 3)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _apply_fn(model):
    """One compiled forward pass (heads + features) per (hashable, equal-by-value) model."""
    return jax.jit(lambda v, x: model.apply(v, x, return_features=True))


def _apply(model, variables, x):
    return jax.tree.map(np.asarray, _apply_fn(model)(variables, jnp.asarray(x)))


# ---------------------------------------------------------------- idealo NIMA (MobileNet a=1)

NIMA_SIZE = 96
NIMA = dict(name="mobilenet", heads={"emd": {"type": "emd"}}, dropout=0.75, width=1.0)


@pytest.fixture(scope="module")
def nima_files(tmp_path_factory):
    """idealo's NIMA architecture, random weights, saved as every file kind it exists in.

    idealo's code builds `Model(base.inputs, Dense(10, softmax)(Dropout(0.75)(base.output)))`
    (flat: the MobileNet layers are the model's own layers); a model that calls the base model as
    one layer (nested) is the other common layout. Both share one base and one Dense here, so one
    reference output serves all files."""
    keras.backend.clear_session()
    base = keras.applications.MobileNet(input_shape=(NIMA_SIZE, NIMA_SIZE, 3), alpha=1.0, weights=None,
                                        include_top=False, pooling="avg")
    dropout, dense = keras.layers.Dropout(0.75), keras.layers.Dense(10, activation="softmax")
    flat = keras.Model(base.inputs, dense(dropout(base.output)))
    inputs = keras.Input((NIMA_SIZE, NIMA_SIZE, 3))
    nested = keras.Model(inputs, dense(dropout(base(inputs))))
    x = _images(NIMA_SIZE, seed=3)
    _randomise(flat, 1)
    _randomise(base, 2, calibrate_with=_images(NIMA_SIZE, n=8, seed=30) / 127.5 - 1.0)  # the BNs, again
    tmp = tmp_path_factory.mktemp("nima")
    for tag, ref in (("flat", flat), ("nested", nested)):
        write_keras2_h5(ref, str(tmp / f"nima_{tag}.hdf5"))
        ref.save_weights(str(tmp / f"nima_{tag}.weights.h5"))
    flat.save(str(tmp / "nima_keras3_legacy.h5"))  # Keras 3's own legacy writer
    expected = np.asarray(flat.predict(x / 127.5 - 1.0, verbose=0))
    return tmp, x, expected


@pytest.fixture(scope="module")
def nima_model():
    return models.create(**NIMA)


@pytest.mark.parametrize("name", ["nima_nested.hdf5", "nima_flat.hdf5", "nima_nested.weights.h5",
                                  "nima_flat.weights.h5", "nima_keras3_legacy.h5"])
def test_idealo_nima_parity(nima_files, nima_model, name):
    tmp, x, expected = nima_files
    variables, report = keras_h5.load_keras_file(str(tmp / name), nima_model)
    assert report == {"ignored": [], "kept_init": []}
    dist = _apply(nima_model, variables, x)["emd"]["distribution"]
    np.testing.assert_allclose(dist, expected, atol=1e-5, rtol=0)
    assert np.abs(expected - 0.1).max() > 1e-3  # the head is not uniform: the Dense was really loaded


def test_legacy_reader_layout(nima_files):
    tmp = nima_files[0]
    layers = keras_h5.read_legacy_h5(str(tmp / "nima_nested.hdf5"))
    names = [l.name for l in layers]
    assert names[:3] == ["conv1", "conv1_bn", "conv_dw_1"] and names[-1] == "dense_1" and len(names) == 55  # 27 conv + 27 BN + Dense
    assert sorted(layers[1].weights) == ["beta", "gamma", "moving_mean", "moving_variance"]
    assert layers[2].weights["depthwise_kernel"].shape == (3, 3, 32, 1)
    with h5py.File(tmp / "nima_nested.hdf5") as f:  # the nested base really is one layer group
        assert len(f["model_weights"].attrs["layer_names"]) == 4
    keras3 = keras_h5.read_weights_h5(str(tmp / "nima_nested.weights.h5"))
    by_name = {l.name: l for l in keras3}  # class + position keys: 14 Conv2D, 13 Depthwise, 27 BN
    assert len(by_name) == 55 and {"functional/conv2d_13", "functional/depthwise_conv2d_12",
                                   "functional/batch_normalization_26"} < set(by_name)
    assert [a.shape for a in by_name["dense"].positional] == [(1024, 10), (10,)]
    assert [a.shape for a in by_name["functional/batch_normalization"].positional] == [(32,)] * 4
    with pytest.raises(ValueError, match="not a Keras 3 .weights.h5 file"):
        keras_h5.read_weights_h5(str(tmp / "nima_flat.hdf5"))


def test_strictness_and_dont_load(nima_files, nima_model, tmp_path):
    tmp = nima_files[0]
    src = str(tmp / "nima_flat.hdf5")
    init = keras_h5.init_variables(nima_model, NIMA_SIZE, only=["^backbone/conv_pw_13_bn/"])
    # a head that does not fit: clear error, fixed by dont_load (the Dense is then ignored by rule)
    scores = models.create("mobilenet", heads={"q": {"type": "scores", "num_outputs": 3}})
    with pytest.raises(ValueError, match=r"'q/dense/kernel' has shape \(1024, 3\), source \(1024, 10\)"):
        keras_h5.load_keras_file(src, scores)
    variables, report = keras_h5.load_keras_file(src, scores, dont_load=["^q/"])
    assert report["ignored"] == [("dense_1", "Dense layer of a head re-initialised by dont_load")]
    assert sorted(report["kept_init"]) == ["params:q/dense/bias", "params:q/dense/kernel"]
    # dont_load on a backbone layer keeps its initial value, and the file's tensor is not used
    variables, report = keras_h5.load_keras_file(src, nima_model, init, dont_load=["^backbone/conv_pw_13_bn/"])
    assert sorted(report["kept_init"]) == ["batch_stats:backbone/conv_pw_13_bn/mean", "batch_stats:backbone/conv_pw_13_bn/var",
                                           "params:backbone/conv_pw_13_bn/bias", "params:backbone/conv_pw_13_bn/scale"]
    np.testing.assert_array_equal(variables["params"]["backbone"]["conv_pw_13_bn"]["scale"],
                                  init["params"]["backbone"]["conv_pw_13_bn"]["scale"])
    with h5py.File(src) as f:
        np.testing.assert_array_equal(variables["params"]["backbone"]["conv_pw_12"]["kernel"],
                                      f["model_weights/conv_pw_12/conv_pw_12/kernel:0"][()])
    # a missing layer is named
    broken = tmp_path / "broken.hdf5"
    with h5py.File(src) as f, h5py.File(broken, "w") as g:
        f.copy("model_weights", g)
        names = [n for n in g["model_weights"].attrs["layer_names"] if n != b"conv_pw_13_bn"]
        g["model_weights"].attrs["layer_names"] = np.array(names, dtype="S")
    with pytest.raises(ValueError, match="no layer 'conv_pw_13_bn'"):
        keras_h5.load_keras_file(str(broken), nima_model)
    # an unexpected extra layer is an error unless ignored by a rule
    extra = tmp_path / "extra.hdf5"
    with h5py.File(src) as f, h5py.File(extra, "w") as g:
        f.copy("model_weights", g)
        mw = g["model_weights"]
        lg = mw.create_group("dense_2")
        lg.attrs["weight_names"] = np.array([b"dense_2/kernel:0"], dtype="S")
        lg.create_dataset("dense_2/kernel:0", data=np.zeros((10, 10), np.float32))
        mw.attrs["layer_names"] = np.array(list(mw.attrs["layer_names"]) + [b"dense_2"], dtype="S")
    with pytest.raises(ValueError, match=r"2 Dense layers \['dense_1', 'dense_2'\] for 1 head"):
        keras_h5.load_keras_file(str(extra), nima_model)
    _, report = keras_h5.load_keras_file(str(extra), nima_model, ignore=["dense_2"])
    assert report["ignored"] == [("dense_2", "ignore pattern 'dense_2'")]
    # a wrong width names the layer and both shapes
    narrow = models.create(**{**NIMA, "width": 0.5})
    with pytest.raises(ValueError, match=r"params 'backbone/conv1/kernel' has shape \(3, 3, 3, 16\), source \(3, 3, 3, 32\)"):
        keras_h5.load_keras_file(str(tmp / "nima_flat.weights.h5"), narrow)


def test_convert_cli_on_idealo_file(nima_files, nima_model, tmp_path, capsys):
    from aesthetics_jax.cli import main
    from aesthetics_jax.export import bundle as bundle_lib

    tmp, x, expected = nima_files
    out = tmp_path / "converted"
    rc = main(["convert", "--from", "keras", str(tmp / "nima_nested.hdf5"), "--arch", "nima_mobilenet",
               "--out", str(out)])
    assert rc == 0
    assert f"aesthetics-jax predict PHOTOS --model {out}" in capsys.readouterr().out
    # A model with heads is written as a verified bundle: every consumer takes it as it is.
    assert bundle_lib.verify(str(out))["files"].keys() >= {"params.safetensors", "model.json", "provenance.json"}
    loaded = bundle_lib.load(str(out))
    assert loaded.model_config == {**NIMA, "preprocess": "keras_tf", "dtype": "float32"}
    assert loaded.transform == {"name": "keras_load_img", "image_size": 224}  # idealo's load_img(target_size=224)
    assert loaded.image_size == 224 and loaded.model_json["input"]["preprocess"] == "keras_tf"
    source = loaded.provenance["source"]
    assert source["format"] == "keras-legacy-h5" and len(source["sha256"]) == 64
    assert source["sha256"] == bundle_lib.sha256_file(str(tmp / "nima_nested.hdf5"))
    assert loaded.provenance["conversion"]["ignored"] == []
    model = loaded.create_model()
    assert model == nima_model
    dist = _apply(model, loaded.variables, x)["emd"]["distribution"]
    np.testing.assert_allclose(dist, expected, atol=1e-5, rtol=0)
    # `bundle pack` archives it; the archive holds the same verified files
    assert main(["bundle", "pack", str(out), "--out", str(tmp_path / "nima.bundle.tar.gz")]) == 0
    assert bundle_lib.load(str(tmp_path / "nima.bundle.tar.gz")).provenance["source"] == source
    # refusals: non-empty output directory, a source the arch cannot come from, a bad --transform
    assert main(["convert", "--from", "keras", str(tmp / "nima_flat.hdf5"), "--arch", "nima_mobilenet",
                 "--out", str(out)]) == 2
    assert main(["convert", "--from", "torchvision", str(tmp / "nima_flat.hdf5"), "--arch", "nima_mobilenet",
                 "--out", str(tmp_path / "other")]) == 2
    assert main(["convert", "--from", "keras", str(tmp / "nima_flat.hdf5"), "--arch", "nima_mobilenet",
                 "--transform", "bicubic_magic", "--out", str(tmp_path / "other")]) == 2
    # --transform overrides the source's default
    out3 = tmp_path / "torchvision_style"
    assert main(["convert", "--from", "keras", str(tmp / "nima_flat.hdf5"), "--arch", "nima_mobilenet",
                 "--transform", "torchvision:resize_size=256", "--out", str(out3)]) == 0
    assert bundle_lib.load(str(out3)).transform == {"name": "torchvision", "resize_size": 256, "image_size": 224, "bicubic": 0}


# ---------------------------------------------------------------- MobileNet v1 width / MobileNetV2 files


@pytest.mark.slow  # two more Keras application builds (~15 s each on two busy cores)
@pytest.mark.parametrize("name,app,width,size", [
    ("mobilenet", "MobileNet", 0.25, 64),
    ("mobilenet_v2", "MobileNetV2", 0.35, 65),  # odd size: Keras' correct_pad is asymmetric
])
def test_backbone_files_parity(name, app, width, size, tmp_path):
    keras.backend.clear_session()
    ref = getattr(keras.applications, app)(input_shape=(size, size, 3), alpha=width, weights=None,
                                           include_top=False, pooling="avg")
    _randomise(ref, 4, calibrate_with=_images(size, n=8, seed=40) / 127.5 - 1.0)
    x = _images(size, seed=5)
    expected = np.asarray(ref.predict(x / 127.5 - 1.0, verbose=0))
    ref.save_weights(str(tmp_path / "ref.weights.h5"))
    write_keras2_h5(ref, str(tmp_path / "ref_keras2.h5"))
    model = models.create(name, heads={"emd": {"type": "emd"}}, width=width)
    assert 0.05 < np.abs(expected).max() < 100
    for fmt in ("ref.weights.h5", "ref_keras2.h5"):
        variables, report = keras_h5.load_keras_file(str(tmp_path / fmt), model, dont_load=["^emd/"], image_size=size)
        assert sorted(report["kept_init"]) == ["params:emd/dense/bias", "params:emd/dense/kernel"]
        pooled = _apply(model, variables, x)["features"]["pooled"]
        np.testing.assert_allclose(pooled, expected, atol=TOL, rtol=0, err_msg=fmt)


def test_cli_backbone_only_and_errors(nima_files, tmp_path, capsys):
    from aesthetics_jax.cli import main
    from aesthetics_jax.train import checkpointing

    tmp, x, _ = nima_files
    out = tmp_path / "out"
    assert main(["convert", "--from", "keras", str(tmp / "nima_nested.weights.h5"), "--arch", "mobilenet",
                 "--out", str(out)]) == 0
    meta = json.loads((out / "convert.json").read_text())
    assert meta["model"] == {"name": "mobilenet", "width": 1.0, "preprocess": "keras_tf"} and meta["backbone_only"]
    assert meta["source"]["format"] == "keras3-weights-h5"
    assert meta["conversion"]["ignored"] == [["dense", "Dense layer of a head re-initialised by dont_load"]]
    restored = checkpointing.restore_params(str(out / "checkpoints"))
    assert set(restored["params"]) == set(restored["batch_stats"]) == {"backbone"}
    with h5py.File(tmp / "nima_nested.weights.h5") as f:
        np.testing.assert_array_equal(restored["params"]["backbone"]["conv_pw_13"]["kernel"],
                                      f["layers/functional/layers/conv2d_13/vars/0"][()])
    # a width that does not fit: exit 1, the message names the module and shapes; nothing written
    capsys.readouterr()
    assert main(["convert", "--from", "keras", str(tmp / "nima_nested.weights.h5"), "--arch", "mobilenet",
                 "--option", "width=0.5", "--out", str(tmp_path / "out2")]) == 1
    assert "params 'backbone/conv1/kernel' has shape (3, 3, 3, 16), source (3, 3, 3, 32)" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()
    # a backbone-only conversion says what to do next, and every consumer repeats it
    from aesthetics_jax import predict as predict_lib
    from aesthetics_jax.export import bundle as bundle_lib

    assert meta["next_steps"].startswith("train heads on it: python launch.py")
    for call in (lambda: predict_lib.Predictor(str(out)), lambda: bundle_lib.pack(str(out), str(tmp_path / "b")),
                 lambda: bundle_lib.load_model(str(out))):
        with pytest.raises(bundle_lib.BundleError, match="backbone-only conversion .* train heads on it"):
            call()
    assert main(["predict", str(tmp), "--model", str(out)]) == 2
    assert "backbone-only conversion" in capsys.readouterr().err


# ---------------------------------------------------------------- InceptionV3 (slow: Keras build ~16 s)

INCEPTION_SIZE = 107
INCEPTION_MAX_TOL = 2.5e-4  # single elements: accumulated float32 rounding (see test_inception_keras_parity)


@pytest.fixture(scope="module")
def keras_inception(tmp_path_factory):
    keras.backend.clear_session()
    keras.layers.Conv2D(1, 1)  # advance Keras' name counters: file names must not be taken literally
    keras.layers.BatchNormalization()
    ref = keras.applications.InceptionV3(weights=None, include_top=False, pooling="avg",
                                         input_shape=(INCEPTION_SIZE, INCEPTION_SIZE, 3))
    _randomise(ref, 0, calibrate_with=_images(INCEPTION_SIZE, n=8, seed=20) / 127.5 - 1.0)
    tmp = tmp_path_factory.mktemp("inception")
    ref.save_weights(str(tmp / "inception.weights.h5"))
    write_keras2_h5(ref, str(tmp / "inception_keras2.h5"))
    x = _images(INCEPTION_SIZE)
    full = keras.Model(ref.input, [ref.get_layer("mixed10").output, ref.output])
    fmap, pooled = (np.asarray(a) for a in full.predict(x / 127.5 - 1.0, verbose=0))
    sub = keras.Model(ref.input, ref.get_layer("mixed2").output)
    sub.save_weights(str(tmp / "inception_mixed2.weights.h5"))
    sub_out = np.asarray(sub.predict(x / 127.5 - 1.0, verbose=0))
    return {"ref": ref, "tmp": tmp, "x": x, "fmap": fmap, "pooled": pooled, "sub_out": sub_out}


def _keras_creation_index(name):
    m = re.fullmatch(r"(?:conv2d|batch_normalization)(?:_(\d+))?", name)
    return int(m.group(1) or 0)


@pytest.mark.slow
def test_inception_keras_layer_order_matches_keras(keras_inception):
    ref = keras_inception["ref"]
    convs = [l.name for l in ref.layers if isinstance(l, keras.layers.Conv2D)]
    bns = [l.name for l in ref.layers if isinstance(l, keras.layers.BatchNormalization)]
    conv_order, bn_order = inception.keras_layer_order()
    assert min(_keras_creation_index(n) for n in convs) == 1  # the counter really was advanced
    assert [_keras_creation_index(n) - 1 for n in convs] == conv_order
    assert [_keras_creation_index(n) - 1 for n in bns] == bn_order
    assert len(conv_order) == 94 and sorted(conv_order) == list(range(94))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["inception.weights.h5", "inception_keras2.h5"])
def test_inception_keras_parity(keras_inception, fmt):
    model = models.create("inception", heads={"emd": {"type": "emd"}})
    variables, report = keras_h5.load_keras_file(str(keras_inception["tmp"] / fmt), model, dont_load=["^emd/"])
    assert report["ignored"] == [] and sorted(report["kept_init"]) == ["params:emd/dense/bias", "params:emd/dense/kernel"]
    assert "emd" in variables["params"]  # the head keeps its initial values
    assert "scale" not in variables["params"]["backbone"]["batch_normalization"]  # Keras: no gamma
    out = _apply(model, variables, keras_inception["x"])
    pooled, fmap = out["features"]["pooled"], out["features"]["feature_map"]
    assert fmap.shape == keras_inception["fmap"].shape == (2, 2, 2, 2048)  # mixed10, the Grad-CAM target
    assert 0.05 < np.abs(keras_inception["pooled"]).max() < 100  # calibrated: O(1), not degenerate
    # InceptionV3's 94 float32 conv layers accumulate ~1e-4 of rounding in single elements (measured:
    # 1.006e-4 at 4.70 on one machine; 1.34e-4 at 0.965 on an AMD EPYC CI machine, 1 element of
    # 4096), so single elements get 2.5e-4, while the bulk must agree to float32 rounding: a mapping
    # error (a swapped kernel, a wrong BN statistic) moves most elements by ~1e-1.
    for got, want in ((pooled, keras_inception["pooled"]), (fmap, keras_inception["fmap"])):
        diff = np.abs(np.asarray(got, np.float64) - want)
        assert diff.max() <= INCEPTION_MAX_TOL, diff.max()
        assert np.mean(diff <= TOL + RTOL_LARGE * np.abs(want)) >= 0.999, np.sort(diff.ravel())[-10:]
        assert diff.mean() <= 5e-5, diff.mean()  # measured 1.0e-5 (feature map), a mapping error ~1e-1


@pytest.mark.slow
def test_inception_tiny_variant_matches_keras_submodel(keras_inception):
    model = models.create("inception", heads={"emd": {"type": "emd"}}, num_mixed=3)
    variables, _ = keras_h5.load_keras_file(
        str(keras_inception["tmp"] / "inception_mixed2.weights.h5"), model, dont_load=["^emd/"])
    fmap = _apply(model, variables, keras_inception["x"])["features"]["feature_map"]
    np.testing.assert_allclose(fmap, keras_inception["sub_out"], atol=TOL, rtol=0)
