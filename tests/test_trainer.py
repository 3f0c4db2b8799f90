"""End-to-end: smoke configs train and evaluate on 8 simulated devices, resume exactly, freeze.

The demo dataset (smoke size) is built once per module and shared by every run through
``config.data.data_dir``; the AVA config's smoke variant reads the same files as its AVA
``manual_dir`` (they are in AVA's on-disk format).
"""

import json
import os
import sys

import jax
import numpy as np
import optax
import pytest
from flax import traverse_util

from aesthetics_jax.train import checkpointing, sharding, steps, trainer
from configs import nima_ava, nima_demo


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


def _demo_config(data_dir, **overrides):
    config = nima_demo.get_config("smoke")
    config.data.data_dir = data_dir
    config.async_checkpointing = False
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def _final_params(workdir):
    return checkpointing.restore_params(os.path.join(workdir, "checkpoints"))


def test_runs_on_eight_devices():
    assert jax.device_count() == 8
    mesh = sharding.make_mesh()
    assert dict(mesh.shape) == {"data": 8, "fsdp": 1}


def test_demo_smoke_end_to_end(data_dir, tmp_path, capsys, tensorflow_imports):
    workdir = str(tmp_path / "run")
    results = trainer.train_and_evaluate(_demo_config(data_dir), workdir)

    out = capsys.readouterr().out
    assert "step 6/6" in out and "img/s" in out and "ETA" in out
    assert "test/emd/srcc" in out and "artefacts:" in out
    for rel in ("config.json", "metrics.jsonl", "eval/final_metrics.json", "eval/test_metrics.json",
                "eval/test_predictions.csv", "eval/test_scatter.png", "eval/test_hist.png"):
        assert os.path.exists(os.path.join(workdir, rel)), rel
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    final = json.load(open(os.path.join(workdir, "eval", "final_metrics.json")))
    assert final["step"] == 6
    assert final["test/emd/mae"] == pytest.approx(results["test/emd/mae"])
    # Every test image is predicted once: ids in the CSV are exactly the test split's ids.
    test_list = open(os.path.join(data_dir, "demo", "raw", "aesthetics_image_lists", "generic_test.jpgl")).read().split()
    rows = open(os.path.join(workdir, "eval", "test_predictions.csv")).read().strip().splitlines()[1:]
    assert sorted(r.split(",")[0] for r in rows) == sorted(test_list)
    logged = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    assert any("val/emd/srcc" in r for r in logged)  # periodic evaluation ran (eval_every=3)
    assert tensorflow_imports == []  # training and evaluation never import TensorFlow


def test_interrupted_run_resumes_to_identical_parameters(data_dir, tmp_path, monkeypatch):
    reference = str(tmp_path / "uninterrupted")
    trainer.train_and_evaluate(_demo_config(data_dir), reference)

    resumed = str(tmp_path / "interrupted")
    real_put_batch = sharding.put_batch
    calls = {"n": 0}

    def put_batch_then_die(batch, mesh):
        calls["n"] += 1
        if calls["n"] == 4:  # steps 1-3 ran, the checkpoint of step 2 is on disk
            raise KeyboardInterrupt("simulated kill")
        return real_put_batch(batch, mesh)

    monkeypatch.setattr(sharding, "put_batch", put_batch_then_die)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_and_evaluate(_demo_config(data_dir), resumed)
    monkeypatch.setattr(sharding, "put_batch", real_put_batch)
    assert checkpointing.Checkpointer(os.path.join(resumed, "checkpoints")).latest_step() == 2

    trainer.train_and_evaluate(_demo_config(data_dir), resumed)  # the same command again
    want = traverse_util.flatten_dict(_final_params(reference))
    got = traverse_util.flatten_dict(_final_params(resumed))
    assert want.keys() == got.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg="/".join(key))


def test_stage1_freezes_backbone_and_trains_head(data_dir, tmp_path):
    demo_raw = os.path.join(data_dir, "demo", "raw")
    if not os.path.exists(demo_raw):  # this test may run alone
        trainer.datasets.prepare(_demo_config(data_dir).data)

    def ava_config(variant, workdir_init=""):
        config = nima_ava.get_config(variant)
        config.data.manual_dir = demo_raw
        config.data.data_dir = os.path.join(data_dir, "ava_tfds")
        config.async_checkpointing = False
        config.total_steps = 3
        config.init_from.workdir = workdir_init
        return config

    stage1 = str(tmp_path / "stage1")
    config1 = ava_config("stage1,smoke")
    trainer.train_and_evaluate(config1, stage1)
    # The initial params: the trainer initialises from split(key(seed))[0], deterministically.
    model = trainer._create_model(config1)
    init_rng = jax.random.split(jax.random.key(config1.seed))[0]
    image_shape = (config1.data.image_size, config1.data.image_size, 3)
    init_params = steps.create_state(model, optax.identity(), init_rng, image_shape).params

    before = traverse_util.flatten_dict(jax.device_get(init_params))
    after = traverse_util.flatten_dict(_final_params(stage1)["params"])
    assert before.keys() == after.keys()
    changed = {"/".join(k) for k in before if not np.array_equal(before[k], after[k])}
    assert changed == {"/".join(k) for k in before if k[0] == "emd"}

    stage2 = str(tmp_path / "stage2")
    trainer.train_and_evaluate(ava_config("stage2,smoke", workdir_init=stage1), stage2)
    final2 = traverse_util.flatten_dict(_final_params(stage2)["params"])
    moved = {"/".join(k) for k in after if not np.array_equal(after[k], final2[k])}
    assert any(p.startswith("backbone/") for p in moved) and any(p.startswith("emd/") for p in moved)


def test_two_stage_is_one_run_head_first_then_everything(data_dir, tmp_path):
    """`two_stage` (config.phases): at the phase boundary (step 2 of 6, a checkpoint) only the head
    has moved from its initial value; by the end the backbone has too."""
    config = nima_demo.get_config("smoke,two_stage")
    config.data.data_dir = data_dir
    config.async_checkpointing = False
    config.keep_ckpts = 5
    assert optimizer_lengths(config) == [2, 4]
    workdir = str(tmp_path / "two_stage")
    trainer.train_and_evaluate(config, workdir)
    model = trainer._create_model(config)
    init_rng = jax.random.split(jax.random.key(config.seed))[0]
    image_shape = (config.data.image_size, config.data.image_size, 3)
    init = traverse_util.flatten_dict(jax.device_get(steps.create_state(model, optax.identity(), init_rng,
                                                                        image_shape).params))
    ckpt_dir = os.path.join(workdir, "checkpoints")
    at2 = traverse_util.flatten_dict(checkpointing.restore_params(ckpt_dir, step=2)["params"])
    at6 = traverse_util.flatten_dict(checkpointing.restore_params(ckpt_dir, step=6)["params"])
    moved2 = {"/".join(k) for k in init if not np.array_equal(init[k], at2[k])}
    assert moved2 == {"/".join(k) for k in init if k[0] == "emd"}
    moved6 = {"/".join(k) for k in init if not np.array_equal(at2[k], at6[k])}
    assert any(p.startswith("backbone/") for p in moved6)


def optimizer_lengths(config):
    from aesthetics_jax.train import optimizer  # pylint: disable=g-import-not-at-top

    return optimizer.phase_lengths([dict(p) for p in config.phases], config.total_steps)
