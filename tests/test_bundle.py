"""Model bundles: pack a real (smoke) training run, verify, copy, unpack, predict identically to
the workdir's own model; tampering is refused with a clear message; archive unpacking is safe
against path traversal; a bundle initialises a training run (`init_from`)."""

import io
import json
import os
import shutil
import tarfile

import numpy as np
import pytest
from PIL import Image

from aesthetics_jax import predict as predict_lib
from aesthetics_jax.export import bundle as bundle_lib
from aesthetics_jax.data.preprocessing import eval_transform
from aesthetics_jax.train import checkpointing, trainer
from configs import nima_demo


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    config = nima_demo.get_config("smoke")
    config.data.data_dir = str(root / "data")
    config.async_checkpointing = False
    workdir = str(root / "run")
    trainer.train_and_evaluate(config, workdir)
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40 + 7 * i, 48, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    bundle = str(root / "demo.bundle")
    assert bundle_lib.main(["pack", workdir, "--out", bundle]) == 0
    return dict(root=root, workdir=workdir, bundle=bundle, photos=str(photos), config=config)


def test_pack_contents(run):
    manifest = bundle_lib.verify(run["bundle"])
    assert set(manifest["files"]) == {"params.safetensors", "model.json", "config.json", "metrics.json", "provenance.json"}
    b = bundle_lib.load(run["bundle"])
    final = json.load(open(os.path.join(run["workdir"], "eval", "final_metrics.json")))
    assert b.metrics["step"] == final["step"] == 6
    assert b.metrics["test/emd/srcc"] == final["test/emd/srcc"]
    assert b.config == json.load(open(os.path.join(run["workdir"], "config.json")))
    assert b.model_config["name"] == "mobilenet" and b.model_config["width"] == 0.25
    assert (b.image_size, b.resize_size) == (run["config"].data.image_size, run["config"].data.resize_size)
    assert b.model_json["input"]["preprocess"] == "keras_tf" and b.model_json["input"]["layout"] == "NHWC"
    assert b.model_json["labels"]["emd"]["scale"] == [1, 10]
    assert b.provenance["step"] == 6 and b.provenance["data"]["name"] == "demo"
    assert b.provenance["versions"]["jax"] and "commit" in b.provenance["code"]
    # the run's own provenance.json travels with the bundle (data fingerprint, devices, sessions)
    assert b.provenance["training"] == json.load(open(os.path.join(run["workdir"], "provenance.json")))
    assert b.provenance["training"]["data"]["splits"]["train"] > 0 and b.provenance["training"]["sessions"][0]["finished"]
    # Params only (no optimiser state), equal to the checkpoint's.
    ckpt = checkpointing.restore_params(os.path.join(run["workdir"], "checkpoints"))
    got = bundle_lib._flatten(b.variables)
    want = bundle_lib._flatten({"params": ckpt["params"], "batch_stats": ckpt["batch_stats"]})
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], np.asarray(want[k]), err_msg=k)
    assert not any("opt" in k or "mu" in k.split("/") for k in got)


def _workdir_model_outputs(run):
    """The workdir's own model, independently of bundles and predict: the training config's model,
    the checkpoint's params, PIL-decoded photos through the training eval transform."""
    config = run["config"]
    model = trainer._create_model(config)
    ckpt = checkpointing.restore_params(os.path.join(run["workdir"], "checkpoints"))
    variables = {"params": ckpt["params"], "batch_stats": ckpt["batch_stats"]}
    names = sorted(os.listdir(run["photos"]))
    pixels = [np.asarray(Image.open(os.path.join(run["photos"], n)).convert("RGB")) for n in names]
    batch = np.stack([eval_transform(p, resize_size=config.data.resize_size, image_size=config.data.image_size)
                      for p in pixels]).astype(np.float32)
    return model.apply(variables, batch)["emd"]


def test_pack_copy_unpack_verify_predicts_identically(run, tmp_path):
    reference = predict_lib.predict(run["photos"], model=run["bundle"])
    assert len(reference) == 3 and all("error" not in r for r in reference)
    want = _workdir_model_outputs(run)
    np.testing.assert_allclose([r["predictions"] for r in reference], np.asarray(want["distribution"]), atol=1e-6)
    np.testing.assert_allclose([r["mean_score_prediction"] for r in reference], np.asarray(want["mean"]), atol=1e-5)
    np.testing.assert_allclose([r["sd_score_prediction"] for r in reference], np.asarray(want["sd"]), atol=1e-5)
    archive = str(tmp_path / "demo.bundle.tar.gz")
    bundle_lib.pack(run["workdir"], archive)
    copied = str(tmp_path / "elsewhere" / "copy.tar.gz")
    os.makedirs(os.path.dirname(copied))
    shutil.copy(archive, copied)
    assert bundle_lib.main(["verify", copied]) == 0
    unpacked = bundle_lib.unpack(copied, str(tmp_path / "unpacked"))
    assert os.path.basename(unpacked) == "demo.bundle"  # the top directory inside the archive
    bundle_lib.verify(unpacked)
    for model in (copied, unpacked):
        again = predict_lib.predict(run["photos"], model=model)
        assert again == reference  # bit-identical
    # A copied directory bundle too.
    copy_dir = str(tmp_path / "dir_copy")
    shutil.copytree(run["bundle"], copy_dir)
    assert predict_lib.predict(run["photos"], model=copy_dir) == reference


@pytest.mark.parametrize("name", ["params.safetensors", "config.json", "model.json"])
def test_one_byte_change_is_refused(run, tmp_path, name):
    tampered = str(tmp_path / "tampered.bundle")
    shutil.copytree(run["bundle"], tampered)
    path = os.path.join(tampered, name)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(path, "wb").write(bytes(data))
    with pytest.raises(bundle_lib.BundleError, match=rf"{name} has sha256 .* the manifest says .*modified"):
        bundle_lib.load(tampered)
    with pytest.raises(bundle_lib.BundleError, match=name):
        predict_lib.predict(run["photos"], model=tampered)
    assert bundle_lib.main(["verify", tampered]) == 1


def test_extra_missing_and_symlinked_files_are_refused(run, tmp_path):
    extra = str(tmp_path / "extra")
    shutil.copytree(run["bundle"], extra)
    open(os.path.join(extra, "evil.py"), "w").write("print('hi')\n")
    with pytest.raises(bundle_lib.BundleError, match=r"not in the manifest: \['evil.py'\]"):
        bundle_lib.load(extra)
    missing = str(tmp_path / "missing")
    shutil.copytree(run["bundle"], missing)
    os.remove(os.path.join(missing, "metrics.json"))
    with pytest.raises(bundle_lib.BundleError, match="metrics.json is listed in the manifest but missing"):
        bundle_lib.load(missing)
    linked = str(tmp_path / "linked")
    shutil.copytree(run["bundle"], linked)
    os.remove(os.path.join(linked, "config.json"))
    os.symlink(os.path.join(run["bundle"], "config.json"), os.path.join(linked, "config.json"))
    with pytest.raises(bundle_lib.BundleError, match="config.json is a symbolic link"):
        bundle_lib.load(linked)


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def _file(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name, target, kind):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@pytest.mark.parametrize(
    "members, message",
    [
        ([_file("b/manifest.json"), _file("b/../../escaped.txt")], "escapes the bundle"),
        ([_file("b/manifest.json"), _file("../escaped.txt")], "escapes the bundle"),
        ([_file("b/manifest.json"), _file("/tmp/absolute_escape.txt")], "absolute path"),
        ([_file("b/manifest.json"), _link("b/config.json", "/etc/passwd", tarfile.SYMTYPE)], "is a link"),
        ([_file("b/manifest.json"), _link("b/config.json", "../../escaped.txt", tarfile.LNKTYPE)], "is a link"),
        ([_file("b/manifest.json"), _link("b/dev", "", tarfile.CHRTYPE)], "not a regular file"),
        ([_file("b/manifest.json"), _file("c/other.json")], "one top-level"),
    ],
)
def test_unsafe_archives_are_refused_before_writing(tmp_path, members, message):
    archive = str(tmp_path / "evil.tar.gz")
    _tar(archive, members)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(bundle_lib.BundleError, match=message):
        bundle_lib.unpack(archive, str(dest))
    assert os.listdir(dest) == []
    assert not (tmp_path / "escaped.txt").exists() and not os.path.exists("/tmp/absolute_escape.txt")
    with pytest.raises(bundle_lib.BundleError, match=message):
        bundle_lib.load(archive)


@pytest.mark.slow  # a second (2-step) training run
def test_bundle_initialises_training(run, tmp_path):
    """`--config.init_from.workdir BUNDLE` (what launch.py passes): with lr 0 the run's parameters
    stay exactly the bundle's; a tampered bundle stops the run before training, naming the file."""
    import copy

    config = copy.deepcopy(run["config"])
    config.lr = 0.0
    config.total_steps, config.ckpt_every, config.eval_every = 2, 2, 0  # only the final evaluation
    config.init_from.workdir = run["bundle"]
    workdir = str(tmp_path / "from_bundle")
    trainer.train_and_evaluate(config, workdir)
    got = checkpointing.restore_params(os.path.join(workdir, "checkpoints"))["params"]
    want = bundle_lib.load(run["bundle"]).variables["params"]
    flat_got, flat_want = bundle_lib._flatten(got), bundle_lib._flatten(want)
    assert flat_got.keys() == flat_want.keys()
    for k in flat_want:
        np.testing.assert_array_equal(np.asarray(flat_got[k]), flat_want[k], err_msg=k)

    tampered = str(tmp_path / "tampered.bundle")
    shutil.copytree(run["bundle"], tampered)
    path = os.path.join(tampered, "params.safetensors")
    data = bytearray(open(path, "rb").read())
    data[-1] ^= 0x01
    open(path, "wb").write(bytes(data))
    config.init_from.workdir = tampered
    with pytest.raises(bundle_lib.BundleError, match="params.safetensors has sha256"):
        trainer.train_and_evaluate(config, str(tmp_path / "from_tampered"))


def test_evaluate_command_accepts_bundle_and_workdir(run, tmp_path, capsys):
    """`aesthetics-jax evaluate` on the packed bundle and on the workdir reproduces the test metrics
    the trainer computed at the end of training (same data, same final parameters)."""
    from aesthetics_jax import cli

    final = json.load(open(os.path.join(run["workdir"], "eval", "final_metrics.json")))
    for model in (run["bundle"], run["workdir"]):
        out = str(tmp_path / os.path.basename(model))
        assert cli.main(["evaluate", model, "--split", "test", "--out", out]) == 0
        summary = json.load(open(os.path.join(out, "test_summary.json")))
        for key in ("test/emd/mae", "test/emd/rmse", "test/emd/emd_r1", "test/emd/emd_r2", "test/emd/accuracy"):
            assert summary[key] == pytest.approx(final[key], rel=1e-5, abs=1e-6), (model, key)
        assert os.path.exists(os.path.join(out, "test_predictions.csv"))
    assert "emd/srcc" in capsys.readouterr().out
    assert cli.main(["evaluate", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")]) == 1
