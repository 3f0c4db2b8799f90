"""Modality builds, map inputs, input-conv extension and variable layer freezing (Lisaius & Wehrwein).

A tiny demo build (the embedded photographs, AVA format) gets a blur modality build; the AVA fixture
with one hostile record of every kind, the EVA fixture and the AADB fixture get spectral ones. The
tests check the ids / labels / splits against the parent build, the stored maps against the
producer run directly and quantised by hand, the skip reports, the pipeline's map modes against the
plain RGB pipeline, the 4th-channel kernel initialisation against a numpy mean, and freezing by
gradients and batch statistics of the frozen blocks.
"""

import csv
import os

import cv2
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from aesthetics_jax import losses, models, modalities
from aesthetics_jax import predict as predict_lib
from aesthetics_jax.data import datasets, pipeline, preprocessing
from aesthetics_jax.data.builders import aadb, ava, base, demo, eva, modality
from aesthetics_jax.data import commands as data_commands
from aesthetics_jax.export import bundle as bundle_lib
from aesthetics_jax.models import preprocessing as model_preprocessing
from aesthetics_jax.train import checkpointing, trainer
from ava_fixture import write_ava_fixture
from configs import modality_demo, modality_nima
from test_aadb_builder import write_aadb_fixture
from test_eva_builder import write_eva_fixture


def _records(source) -> list[dict]:
    return [source[i] for i in range(len(source))]


def _ids(builder_or_dir, split) -> list[str]:
    return [modality.record_id(r) for r in _records(pipeline.make_source(builder_or_dir, split))]


@pytest.fixture(scope="module")
def demo_builds(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("demo_tfds"))
    demo_cfg = dict(seed=0, versions_per_photo=3, image_size=48)
    demo.build_demo_ava(os.path.join(data_dir, "demo", "raw"), **demo_cfg)
    parent = ava.build_ava(os.path.join(data_dir, "demo", "raw"), os.path.join(data_dir, "demo"), val_fraction=0.1)
    blur = modality.build_modality(modality.parent_tfds_root(parent.data_dir), parent_dir=parent.data_dir,
                                   producer="blur")
    return dict(data_dir=data_dir, demo=demo_cfg, parent=parent, blur=blur)


def _data_config(builds, mode: str) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(dict(name="demo", data_dir=builds["data_dir"], val_fraction=0.1, split_seed=0,
                                       demo=dict(builds["demo"])))
    c.modality = modality_nima.modality_data(mode)
    return c


# -- builds ----------------------------------------------------------------------------------------


def test_modality_build_keeps_ids_labels_and_splits_and_stores_the_producers_map(demo_builds):
    parent, blur = demo_builds["parent"], demo_builds["blur"]
    assert sorted(blur.info.splits) == sorted(parent.info.splits) == ["test", "train", "validation"]
    producer = modalities.create("blur")
    for split in parent.info.splits:
        rgb = _records(pipeline.make_source(parent, split))
        maps = _records(pipeline.make_source(blur, split))
        assert [int(r["id"]) for r in maps] == [int(r["id"]) for r in rgb]  # same ids, same order
        assert [int(r["parent_index"]) for r in maps] == list(range(len(rgb)))
        for r, m in zip(rgb, maps):
            for key in ("distribution", "mean_score", "votes", "tags", "challenge", "histogram"):
                np.testing.assert_array_equal(np.asarray(m[key]), np.asarray(r[key]))
        for r, m in list(zip(rgb, maps))[:3]:  # the stored map = round(255 * producer(decoded pixels))
            pixels = preprocessing.decode_jpeg(r["image"])
            stored = cv2.imdecode(np.frombuffer(m["map"], np.uint8), cv2.IMREAD_UNCHANGED)
            assert stored.dtype == np.uint8 and stored.shape == pixels.shape[:2]
            expected = np.rint(np.clip(np.asarray(producer(pixels[None]))[0], 0, 1) * 255).astype(np.uint8)
            assert np.abs(stored.astype(int) - expected.astype(int)).max() <= 1  # float rounding at .5 only
    meta = blur.info.metadata
    assert meta["producer"] == producer.metadata()
    assert meta["parent"]["dir"] == os.fspath(parent.data_dir) and meta["parent"]["name"] == "ava"
    assert meta["parent"]["splits"] == {k: int(v.num_examples) for k, v in parent.info.splits.items()}
    assert meta["map_bits"] == 8 and meta["num_skipped"] == 0
    # beside its parent, under the parent's TFDS data_dir
    assert os.fspath(blur.data_dir).startswith(os.path.join(demo_builds["data_dir"], "demo", "modality"))
    # idempotent: the same call reuses the build
    again = modality.build_modality(modality.parent_tfds_root(parent.data_dir), parent_dir=parent.data_dir,
                                    producer="blur")
    assert os.fspath(again.data_dir) == os.fspath(blur.data_dir)


class GreyRefusingProducer:
    """Refuses grey images (all channels equal): a producer failing on some inputs."""

    name = "grey_refusing"

    def __call__(self, images):
        images = np.asarray(images, np.float32)
        if any(np.all(x[..., 0] == x[..., 1]) and np.all(x[..., 1] == x[..., 2]) for x in images):
            raise ValueError("grey input refused")
        return images.mean(-1) / 255.0

    def metadata(self):
        return {"name": self.name, "params": {}}


def test_hostile_parent_and_failing_producer_are_reported_never_fatal(tmp_path, monkeypatch):
    monkeypatch.setitem(modalities.PRODUCERS, "grey_refusing", ("test_modality", "GreyRefusingProducer"))
    expected = write_ava_fixture(tmp_path / "raw")
    parent = ava.build_ava(tmp_path / "raw", tmp_path / "tfds")
    built = modality.build_modality(tmp_path / "tfds", parent_dir=parent.data_dir, producer="grey_refusing")
    report = base.skipped_report(built)
    parent_skips = {(r["id"], r["reason"]) for r in report if r["detail"].startswith("parent build: ")}
    image_reasons = {(i, reason) for (i, f), reason in expected["bad"].items() if f.startswith("images/")}
    assert parent_skips == image_reasons  # every hostile image of the parent, with its reason
    grey = {str(i) for i in expected["good"] if i % 4 == 0}  # the fixture writes k % 4 == 3 (ids 1004, 1008, 1012) grey
    failed = {r["id"] for r in report if r["reason"] == "map_failed"}
    assert failed == grey and all("grey input refused" in r["detail"] for r in report if r["reason"] == "map_failed")
    for split in parent.info.splits:
        want = [i for i in _ids(parent, split) if i not in grey]
        assert _ids(built, split) == want
        rgb = pipeline.make_source(parent, split)
        for record in _records(pipeline.make_source(built, split)):  # parent_index points at the same image
            assert int(rgb[int(record["parent_index"])]["id"]) == int(record["id"])
    assert built.info.metadata["skipped"]["map_failed"] == 3


@pytest.mark.parametrize("dataset", ["eva", "aadb"])
def test_eva_and_aadb_modality_builds_have_the_parents_ids_per_split(tmp_path, dataset):
    raw = tmp_path / "raw"
    if dataset == "eva":
        write_eva_fixture(str(raw), num_images=12)
        parent = eva.build_eva(raw, tmp_path / "tfds")
    else:
        write_aadb_fixture(str(raw))
        parent = aadb.build_aadb(raw, tmp_path / "tfds")
    built = modality.build_modality(tmp_path / "tfds", parent_dir=parent.data_dir, producer="spectral")
    assert sorted(built.info.splits) == sorted(parent.info.splits)
    for split in parent.info.splits:
        ids = _ids(parent, split)
        assert ids and _ids(built, split) == ids
    if dataset == "eva":  # read for training: EVA targets (unit-scaled) beside the RGB pixels and the map
        cfg = ml_collections.ConfigDict(dict(name="eva", modality=dict(input="rgb+map", producer="spectral")))
        record = datasets.source(built, "train", cfg)[0]
        parent_record = datasets.source(parent, "train")[0]
        assert record["image"] == parent_record["image"] and isinstance(record["map"], bytes)
        np.testing.assert_array_equal(record["scores"], parent_record["scores"])
        assert record["id"] == parent_record["id"]
    if dataset == "aadb":  # AADB's identifier is the image name, kept as a feature
        assert all(not i.isdigit() for i in _ids(built, "train"))
        record = pipeline.make_source(built, "train")[0]
        assert np.asarray(record["attributes"]).shape == (len(aadb.ATTRIBUTE_NAMES),)


def test_data_cli_builds_a_modality_in_shards(demo_builds, capsys):
    parent = os.fspath(demo_builds["parent"].data_dir)
    for shard in ("0/2", "1/2"):
        assert data_commands.main(["build", "modality", "--parent_dir", parent, "--producer", "spectral",
                                   "--shard", shard, "--quiet"]) == 0
    config = modality.config_for(parent, "spectral")
    maps_dir = modality.maps_dir_for(modality.parent_tfds_root(parent), config)
    assert os.path.isfile(os.path.join(maps_dir, "index.csv"))  # the second shard merged the indexes
    with open(os.path.join(maps_dir, "index.csv"), newline="") as f:
        assert len(list(csv.DictReader(f))) == sum(int(s.num_examples) for s in demo_builds["parent"].info.splits.values())
    assert data_commands.main(["build", "modality", "--parent_dir", parent, "--producer", "spectral", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "modality/ava_val0p1_seed0_spectral/1.0.0 train:" in out
    with pytest.raises(SystemExit, match="--parent_dir"):
        data_commands.main(["build", "modality", "--producer", "spectral"])


# -- pipeline ----------------------------------------------------------------------------------------


def _batches(source, train: bool, keys=pipeline.DEFAULT_KEYS):
    it = pipeline.make_iterator(source, train=train, batch_size=4, image_size=40, resize_size=44, seed=3,
                                num_threads=0, shard_index=0, shard_count=1, keys=keys)
    return [next(it) for _ in range(2)]


@pytest.mark.parametrize("train", [False, True])
def test_map_and_rgb_plus_map_inputs_match_the_rgb_pipeline(demo_builds, train):
    rgb = datasets.source(demo_builds["parent"], "train")
    prepared = {mode: datasets.prepare(_data_config(demo_builds, mode)) for mode in ("blur", "rgb+blur")}
    assert all(os.fspath(p.data_dir) == os.fspath(demo_builds["blur"].data_dir) for p in prepared.values())
    single = datasets.source(prepared["blur"], "train", _data_config(demo_builds, "blur"))
    four = datasets.source(prepared["rgb+blur"], "train", _data_config(demo_builds, "rgb+blur"))
    assert datasets.input_channels(_data_config(demo_builds, "rgb+blur")) == 4
    assert datasets.input_channels(_data_config(demo_builds, "blur")) == 3
    for b_rgb, b_map, b_four in zip(_batches(rgb, train), _batches(single, train), _batches(four, train)):
        assert b_map["image"].shape[-1] == 3 and b_four["image"].shape[-1] == 4
        np.testing.assert_array_equal(b_map["image"][..., 0], b_map["image"][..., 1])
        np.testing.assert_array_equal(b_map["image"][..., 0], b_map["image"][..., 2])
        np.testing.assert_array_equal(b_four["image"][..., :3], b_rgb["image"])  # same geometry as plain RGB
        np.testing.assert_array_equal(b_four["image"][..., 3], b_map["image"][..., 0])  # and as the map alone
        np.testing.assert_array_equal(b_four["id"], b_rgb["id"])
        np.testing.assert_array_equal(b_four["distribution"], b_rgb["distribution"])


def test_modality_settings_are_checked(demo_builds):
    c = _data_config(demo_builds, "blur")
    c.modality.input = "map4"
    with pytest.raises(ValueError, match="modality.input must be one of"):
        datasets.input_channels(c)
    c.modality.input, c.modality.producer = "map", ""
    with pytest.raises(ValueError, match="needs a producer"):
        datasets.input_channels(c)


# -- model side --------------------------------------------------------------------------------------


def test_four_channel_normalisation_uses_the_mean_rgb_statistics():
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4) * 10
    got = np.asarray(model_preprocessing.normalize(x, "torch"))
    mean = [0.485, 0.456, 0.406, (0.485 + 0.456 + 0.406) / 3]
    std = [0.229, 0.224, 0.225, (0.229 + 0.224 + 0.225) / 3]
    for c in range(4):
        np.testing.assert_allclose(got[..., c], (x[..., c] / 255 - mean[c]) / std[c], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(model_preprocessing.normalize(x, "keras_tf")), x / 127.5 - 1, rtol=1e-6, atol=1e-6)


def test_extend_input_kernel_hand_values():
    kernel = np.arange(2 * 2 * 3 * 2, dtype=np.float32).reshape(2, 2, 3, 2)
    wide = np.asarray(models.extend_input_kernel(kernel, 4))
    np.testing.assert_array_equal(wide[:, :, :3], kernel)
    assert wide[0, 0, 3, 0] == (kernel[0, 0, 0, 0] + kernel[0, 0, 1, 0] + kernel[0, 0, 2, 0]) / 3 == 2.0
    np.testing.assert_allclose(wide[:, :, 3], kernel.sum(axis=2) / 3)
    with pytest.raises(ValueError, match="cannot extend"):
        models.extend_input_kernel(kernel, 2)


def test_freeze_regex_selects_whole_blocks_from_the_input():
    def selected(name, k, **kw):
        model = models.create(name, heads={"emd": {"type": "emd"}}, **kw)
        size = 75 if name == "inception" else 32
        params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))["params"]
        paths = ["/".join(p) for p in traverse_util.flatten_dict(params)]
        regex = models.freeze_regex(name, k, **kw)
        import re  # pylint: disable=g-import-not-at-top
        return {p for p in paths if regex and re.search(regex, p)}, paths

    # MobileNet: stem = conv1 kernel + conv1_bn scale/bias (3 tensors); block i: dw + pw kernels and BNs (6).
    for k, count in ((0, 0), (1, 3), (2, 9), (4, 21)):
        got, paths = selected("mobilenet", k, width=0.25, num_blocks=3)
        assert len(got) == count
    got, paths = selected("mobilenet", 4, width=0.25, num_blocks=3)
    assert got == {p for p in paths if p.startswith("backbone/")}  # k = max: the whole backbone, head free
    assert models.num_backbone_blocks("mobilenet") == 14 and models.num_backbone_blocks("inception") == 12
    # InceptionV3 (Keras layout: BN without scale): stem = 5 conv kernels + 5 BN biases; mixed0 = 7 convs.
    got, _ = selected("inception", 1, num_mixed=2, width=0.25)
    assert got == {f"backbone/conv2d{'' if i == 0 else '_' + str(i)}/kernel" for i in range(5)} | {
        f"backbone/batch_normalization{'' if i == 0 else '_' + str(i)}/bias" for i in range(5)}
    got, paths = selected("inception", 3, num_mixed=2, width=0.25)
    assert got == {p for p in paths if p.startswith("backbone/")}
    with pytest.raises(ValueError, match="frozen_blocks must be in 0..4"):
        models.freeze_regex("mobilenet", 5, num_blocks=3)
    with pytest.raises(ValueError, match="variable layer freezing is defined"):
        models.freeze_regex("clip", 1)


@pytest.mark.parametrize("name,kw,size,frozen", [
    ("mobilenet", dict(width=0.25, num_blocks=3), 32, 0), ("mobilenet", dict(width=0.25, num_blocks=3), 32, 2),
    ("mobilenet", dict(width=0.25, num_blocks=3), 32, 4), ("inception", dict(num_mixed=2, width=0.25), 75, 2)])
def test_frozen_blocks_get_no_gradient_and_keep_their_batch_statistics(name, kw, size, frozen):
    import re  # pylint: disable=g-import-not-at-top

    model = models.create(name, heads={"emd": {"type": "emd"}}, frozen_blocks=frozen, **kw)
    images = jax.random.uniform(jax.random.key(1), (4, size, size, 3), minval=0, maxval=255)
    target = jax.nn.softmax(jax.random.normal(jax.random.key(2), (4, 10)))
    variables = model.init(jax.random.key(0), images)

    def loss(params):
        outputs, state = model.apply({"params": params, "batch_stats": variables["batch_stats"]}, images, train=True,
                                     mutable=["batch_stats"], rngs={"dropout": jax.random.key(3)})
        return losses.emd_loss(target, outputs["emd"]["distribution"]), state

    grads, state = jax.grad(loss, has_aux=True)(variables["params"])
    regex = models.freeze_regex(name, frozen, **kw)
    flat_grads = {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(grads).items()}
    before = {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(variables["batch_stats"]).items()}
    after = {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(state["batch_stats"]).items()}
    for path, grad in flat_grads.items():
        if regex and re.search(regex, path):
            assert not grad.any(), path
    trained = [p for p in flat_grads if not (regex and re.search(regex, p))]
    assert any(flat_grads[p].any() for p in trained if p.startswith("backbone/")) or frozen == models.num_backbone_blocks(name, **kw)
    for path in before:  # batch_stats paths: backbone/<layer>/{mean,var}
        stats_frozen = bool(regex) and re.search(regex, path) is not None
        assert np.array_equal(before[path], after[path]) == stats_frozen, path


def test_config_variants():
    c = modality_nima.get_config("rgb+blur,inception,freeze=5,init=transfer")
    assert c.data.modality.to_dict() == dict(input="rgb+map", producer="blur", params={}, batch_size=8)
    assert c.model.name == "inception" and c.model.frozen_blocks == 5 and c.data.image_size == 299
    assert c.schedule[0][1] is None and c.schedule[0][0] == models.freeze_regex("inception", 5)
    assert c.init_from.dont_load == [] and c.losses.emd.type == "distribution_aware"
    c = modality_nima.get_config("depth")
    assert c.data.modality.producer == "depth" and c.data.modality.input == "map" and "model_dir" in c.data.modality.params
    assert modality_nima.get_config("").init_from.dont_load == ["^emd/"]
    assert modality_nima.get_config("saliency").data.modality.producer == "spectral"
    msinet = modality_nima.get_config("rgb+saliency,saliency=msinet").data.modality
    assert msinet.producer == "msinet" and "weights" in msinet.params and msinet.input == "rgb+map"
    with pytest.raises(ValueError, match="frozen_blocks must be in 0..14"):
        modality_nima.get_config("blur,freeze=15")
    with pytest.raises(ValueError, match="unknown config variant"):
        modality_nima.get_config("sharpness")
    with pytest.raises(ValueError, match="init='x'"):
        modality_nima.get_config("blur,init=x")
    d = modality_demo.get_config("rgb+blur,init=transfer,freeze=7")
    assert d.total_steps == 600 and d.model.frozen_blocks == 7 and d.data.name == "demo"


# -- training: transfer from RGB into RGB + blur with the stem frozen --------------------------------


def test_rgb_to_rgb_plus_map_transfer_extends_the_stem_and_freezes_it(demo_builds, tmp_path):
    def config(arg, init_from=""):
        c = modality_demo.get_config(arg + ",smoke")
        c.data.data_dir, c.data.demo = demo_builds["data_dir"], ml_collections.ConfigDict(demo_builds["demo"])
        c.async_checkpointing = False
        c.init_from.workdir = init_from
        return c

    rgb_dir, four_dir = str(tmp_path / "rgb"), str(tmp_path / "rgb_blur")
    trainer.train_and_evaluate(config("rgb"), rgb_dir)
    results = trainer.train_and_evaluate(config("rgb+blur,init=transfer,freeze=1", rgb_dir), four_dir)
    assert np.isfinite(results["test/emd/emd_r2"]) and 0 < results["test/emd/hist_intersection"] <= 1  # evaluated

    def restore(workdir):
        v = checkpointing.restore_params(os.path.join(workdir, "checkpoints"))
        return ({"/".join(k): np.asarray(x) for k, x in traverse_util.flatten_dict(v["params"]).items()},
                {"/".join(k): np.asarray(x) for k, x in traverse_util.flatten_dict(v["batch_stats"]).items()})

    (p_rgb, s_rgb), (p_four, s_four) = restore(rgb_dir), restore(four_dir)
    stem = p_rgb["backbone/conv1/kernel"]
    assert stem.shape[2] == 3 and p_four["backbone/conv1/kernel"].shape[2] == 4
    np.testing.assert_array_equal(p_four["backbone/conv1/kernel"][:, :, :3], stem)  # frozen: unchanged
    np.testing.assert_allclose(p_four["backbone/conv1/kernel"][:, :, 3], stem.mean(axis=2), rtol=1e-6)
    for key in ("backbone/conv1_bn/mean", "backbone/conv1_bn/var"):
        np.testing.assert_array_equal(s_four[key], s_rgb[key])  # frozen BN: running statistics kept
    assert not np.array_equal(p_four["backbone/conv_dw_1/kernel"], p_rgb["backbone/conv_dw_1/kernel"])
    assert not np.array_equal(s_four["backbone/conv_dw_1_bn/mean"], s_rgb["backbone/conv_dw_1_bn/mean"])
    # a map-input model packed as a bundle is refused by predict (it would be fed photos, not maps)
    packed = bundle_lib.pack(four_dir, str(tmp_path / "bundle"))
    with pytest.raises(ValueError, match="trained on 'blur' maps"):
        predict_lib.Predictor(packed)
