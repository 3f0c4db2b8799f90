"""Precise batch norm (``train/precise_bn.py``) against independent references.

* a tiny conv/BN network whose train-mode forward pass is recomputed in numpy: the recomputed
  running mean / var of both BN layers are the exact pooled statistics (float64 numpy) of their
  inputs over all N batches; params and the input statistics are untouched;
* the tiny MobileNet: the per-batch statistics are read back from flax's own BatchNorm update
  (stored statistics zeroed, so ``ra = (1 - momentum) * batch_stat``), pooled in numpy; frozen
  blocks (BN in inference mode in train mode) keep their statistics; the same on an 8-device mesh;
* a model without BatchNorm is returned unchanged and no data is read;
* the trainer with ``config.precise_bn``: training is bit-identical to a run without it and a
  killed run resumes exactly; the final checkpoint holds the recomputed statistics.
"""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from aesthetics_jax import models
from aesthetics_jax.train import checkpointing, precise_bn, sharding, trainer
from configs import nima_demo

EPS = 1e-3


class TinyConvBN(nn.Module):
    """1x1 conv -> BN -> relu -> 1x1 conv -> BN -> global mean -> dense (no bias in the convs)."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = x.astype(jnp.float32) / 255.0
        x = nn.Conv(6, (1, 1), use_bias=False, name="conv1")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=EPS, name="bn1")(x)
        x = nn.relu(x)
        x = nn.Conv(5, (1, 1), use_bias=False, name="conv2")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.999, epsilon=EPS, name="bn2")(x)
        return nn.Dense(3, name="head")(x.mean((1, 2)))


class NoBN(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(2)(x.reshape(x.shape[0], -1).astype(jnp.float32))


def _batches(n, batch=4, size=3, seed=0):
    rng = np.random.default_rng(seed)
    return [{"image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8), "id": np.arange(batch)}
            for _ in range(n)]


def _flat(tree):
    return {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(jax.device_get(tree)).items()}


def _pooled(values):
    """Exact pooled mean / biased variance over axis 0 (float64), values ``[n, C]``."""
    values = np.asarray(values, np.float64)
    return values.mean(0), values.var(0)


def _tiny_variables():
    model = TinyConvBN()
    variables = model.init(jax.random.key(0), jnp.zeros((1, 3, 3, 3), jnp.uint8))
    # Non-trivial BN scale / bias and stored statistics (the recomputation must not read the latter).
    rng = np.random.default_rng(1)
    flat = traverse_util.flatten_dict(variables)
    for key in flat:
        if key[0] != "params" or "conv" not in key[1]:
            centre = 1.0 if key[-1] in ("scale", "var") else 0.0
            flat[key] = jnp.asarray(rng.normal(size=flat[key].shape) * 0.5 + centre, jnp.float32)
            if key[-1] == "var":
                flat[key] = jnp.abs(flat[key])
    variables = traverse_util.unflatten_dict(flat)
    return model, variables["params"], variables["batch_stats"]


def _numpy_tiny_bn_inputs(params, batches):
    """Inputs of bn1 and bn2 (``[values, C]``, all batches concatenated), numpy train-mode forward."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), jax.device_get(params))
    in1, in2 = [], []
    for b in batches:
        x = b["image"].astype(np.float64) / 255.0
        h = np.einsum("bhwc,cd->bhwd", x, p["conv1"]["kernel"][0, 0])
        in1.append(h.reshape(-1, h.shape[-1]))
        mean, var = h.mean((0, 1, 2)), h.var((0, 1, 2))  # BN normalises with its batch's statistics
        h = (h - mean) / np.sqrt(var + EPS) * p["bn1"]["scale"] + p["bn1"]["bias"]
        h = np.maximum(h, 0.0)
        h = np.einsum("bhwc,cd->bhwd", h, p["conv2"]["kernel"][0, 0])
        in2.append(h.reshape(-1, h.shape[-1]))
    return {"bn1": in1, "bn2": in2}


def test_tiny_network_matches_numpy_pooled_statistics():
    model, params, batch_stats = _tiny_variables()
    params_before, stats_before = _flat(params), _flat(batch_stats)
    batches = _batches(5)
    new = precise_bn.recompute(model, params, batch_stats, iter(batches), rng=jax.random.key(0), num_batches=5)

    got = _flat(new)
    inputs = _numpy_tiny_bn_inputs(params, batches)
    for layer, per_batch in inputs.items():
        mean, var = _pooled(np.concatenate(per_batch))
        np.testing.assert_allclose(got[f"{layer}/mean"], mean, rtol=1e-5, atol=1e-6, err_msg=layer)
        np.testing.assert_allclose(got[f"{layer}/var"], var, rtol=1e-5, atol=1e-6, err_msg=layer)
        # The pooled variance, not fvcore's average of per-batch variances: with 36 values per batch
        # the two differ by far more than the tolerance, so this test tells them apart.
        averaged = np.mean([v.var(0) for v in per_batch], 0)
        assert np.max(np.abs(averaged - var) / var) > 1e-3, layer
        assert got[f"{layer}/mean"].dtype == np.float32 and got[f"{layer}/mean"].shape == mean.shape
    # Frozen parameters and the caller's statistics are not modified.
    for k, v in _flat(params).items():
        np.testing.assert_array_equal(v, params_before[k], err_msg=k)
    for k, v in _flat(batch_stats).items():
        np.testing.assert_array_equal(v, stats_before[k], err_msg=k)
    assert not np.allclose(got["bn1/mean"], stats_before["bn1/mean"])


def test_only_the_first_num_batches_are_read_and_short_data_is_an_error():
    model, params, batch_stats = _tiny_variables()
    batches = _batches(6)
    three = precise_bn.recompute(model, params, batch_stats, iter(batches), rng=jax.random.key(0), num_batches=3)
    again = precise_bn.recompute(model, params, batch_stats, iter(batches[:3]), rng=jax.random.key(0), num_batches=3)
    for k, v in _flat(three).items():
        np.testing.assert_array_equal(v, _flat(again)[k], err_msg=k)
    with pytest.raises(ValueError, match="ended after 2 of 3 batches"):
        precise_bn.recompute(model, params, batch_stats, iter(batches[:2]), rng=jax.random.key(0), num_batches=3)
    with pytest.raises(ValueError, match=">= 1"):
        precise_bn.recompute(model, params, batch_stats, iter(batches), rng=jax.random.key(0), num_batches=0)


def _mobilenet(frozen_blocks=0):
    model = models.create("mobilenet", heads={"emd": {"type": "emd"}}, width=0.25, num_blocks=2,
                          frozen_blocks=frozen_blocks, dropout=0.2)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3), jnp.uint8), train=False)
    # Train a few steps' worth of movement into the params: perturb them so BN inputs are not at init.
    leaves, treedef = jax.tree.flatten(variables["params"])
    keys = jax.random.split(jax.random.key(3), len(leaves))
    params = treedef.unflatten([x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])
    return model, params, variables["batch_stats"]


def _flax_per_batch_stats(model, params, batch_stats, batches, rng):
    """Per-batch BN statistics from flax's own BatchNorm update: with the stored mean and var set
    to 0, one train-mode step leaves ``(1 - momentum) * batch_stat`` in them."""
    zero = jax.tree.map(jnp.zeros_like, batch_stats)
    momentum = 0.99  # mobilenet.BN_MOMENTUM
    out = []
    for i, b in enumerate(batches):
        _, upd = model.apply({"params": params, "batch_stats": zero}, jnp.asarray(b["image"]), train=True,
                             rngs={"dropout": jax.random.fold_in(rng, i)}, mutable=["batch_stats"])
        out.append({k: np.asarray(v, np.float64) / (1 - momentum) for k, v in _flat(upd["batch_stats"]).items()})
    return out


def _pool_flax(per_batch, layer):
    """Pooled mean / var from equal-size batches' (mean, var): var = E[v_b + m_b^2] - mean^2."""
    means = np.stack([b[f"{layer}/mean"] for b in per_batch])
    variances = np.stack([b[f"{layer}/var"] for b in per_batch])
    mean = means.mean(0)
    return mean, (variances + means**2).mean(0) - mean**2


def test_mobilenet_matches_flax_batch_statistics_pooled():
    model, params, batch_stats = _mobilenet()
    batches = _batches(4, batch=8, size=32, seed=2)
    rng = jax.random.key(5)
    new = _flat(precise_bn.recompute(model, params, batch_stats, iter(batches), rng=rng, num_batches=4))
    per_batch = _flax_per_batch_stats(model, params, batch_stats, batches, rng)
    layers = sorted({k.rsplit("/", 1)[0] for k in new})
    assert len(layers) == 5  # conv1_bn + (dw, pw) x 2 blocks
    for layer in layers:
        mean, var = _pool_flax(per_batch, layer)
        np.testing.assert_allclose(new[f"{layer}/mean"], mean, rtol=1e-4, atol=1e-5, err_msg=layer)
        np.testing.assert_allclose(new[f"{layer}/var"], var, rtol=1e-4, atol=1e-5, err_msg=layer)


def test_mobilenet_frozen_blocks_keep_their_statistics():
    model, params, batch_stats = _mobilenet(frozen_blocks=2)  # stem + block 1 run in inference mode
    before = _flat(batch_stats)
    new = _flat(precise_bn.recompute(model, params, batch_stats, iter(_batches(2, batch=8, size=32)),
                                     rng=jax.random.key(0), num_batches=2))
    frozen = [k for k in new if "conv1_bn" in k or "_1_bn" in k]
    trained = [k for k in new if k not in frozen]
    assert frozen and trained
    for k in frozen:
        np.testing.assert_array_equal(new[k], before[k], err_msg=k)
    for k in trained:
        assert not np.allclose(new[k], before[k]), k


def test_sharded_over_eight_devices_equals_one_device():
    model, params, batch_stats = _mobilenet()
    batches = _batches(2, batch=8, size=32, seed=4)
    rng = jax.random.key(1)
    single = _flat(precise_bn.recompute(model, params, batch_stats, iter(batches), rng=rng, num_batches=2))
    mesh = sharding.make_mesh()
    assert mesh.size == 8
    replicated = jax.device_put((params, batch_stats), sharding.replicated(mesh))
    sharded = precise_bn.recompute(model, *replicated, iter(batches), rng=rng, num_batches=2, mesh=mesh)
    for k, v in _flat(sharded).items():
        np.testing.assert_allclose(v, single[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert all(x.sharding.is_fully_replicated for x in jax.tree.leaves(sharded))


def test_model_without_batch_norm_is_a_no_op():
    model = NoBN()
    variables = model.init(jax.random.key(0), jnp.zeros((1, 3, 3, 3), jnp.uint8))
    assert "batch_stats" not in variables

    def never_read():
        raise AssertionError("a model without BatchNorm must not read any batch")
        yield  # pylint: disable=unreachable

    assert precise_bn.recompute(model, variables["params"], {}, never_read(), rng=jax.random.key(0),
                                num_batches=3) == {}
    config = nima_demo.get_config("smoke")
    config.precise_bn = 3
    helper = precise_bn.PreciseBN(config, model, None, never_read)
    state = trainer.steps.EvalState(params=variables["params"], batch_stats={})
    assert helper.for_evaluation(state) is state


def test_config_value_is_checked_and_zero_is_off():
    model, params, batch_stats = _tiny_variables()
    config = nima_demo.get_config("smoke")
    assert config.precise_bn == 0
    state = trainer.steps.EvalState(params=params, batch_stats=batch_stats)
    assert precise_bn.PreciseBN(config, model, None, lambda: iter(())).for_evaluation(state) is state
    config.precise_bn = -1
    with pytest.raises(ValueError, match="config.precise_bn"):
        precise_bn.PreciseBN(config, model, None, lambda: iter(()))


# --- the trainer option ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


def _config(data_dir, **overrides):
    config = nima_demo.get_config("smoke")
    config.data.data_dir = data_dir
    config.async_checkpointing = False
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def _final(workdir):
    return checkpointing.restore_variables(os.path.join(workdir, "checkpoints"))[0]


def test_trainer_option_keeps_training_exact_and_resumable(data_dir, tmp_path, monkeypatch):
    plain = str(tmp_path / "plain")
    trainer.train_and_evaluate(_config(data_dir), plain)  # eval_every 3, 6 steps, checkpoints every 2

    calls = {"evals": 0}
    real_for_evaluation = precise_bn.PreciseBN.for_evaluation

    def counting(self, state):
        calls["evals"] += 1
        return real_for_evaluation(self, state)

    monkeypatch.setattr(precise_bn.PreciseBN, "for_evaluation", counting)
    resumed = str(tmp_path / "precise")
    real_save = checkpointing.Checkpointer.save

    def save_then_die(self, step, *args, **kwargs):
        real_save(self, step, *args, **kwargs)
        if step == 4:  # steps 1-4 ran, with the mid-run evaluation at step 3
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(checkpointing.Checkpointer, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        trainer.train_and_evaluate(_config(data_dir, precise_bn=2), resumed)
    monkeypatch.setattr(checkpointing.Checkpointer, "save", real_save)
    assert checkpointing.Checkpointer(os.path.join(resumed, "checkpoints")).latest_step() == 4
    assert calls["evals"] == 1
    results = trainer.train_and_evaluate(_config(data_dir, precise_bn=2), resumed)
    assert calls["evals"] == 2  # the final evaluation
    assert np.isfinite(results["test/emd/srcc"])

    want, got = _final(plain), _final(resumed)
    # The training stream is untouched: the same parameters as the run without the option.
    for k, v in _flat(want["params"]).items():
        np.testing.assert_array_equal(_flat(got["params"])[k], v, err_msg=k)
    # The final checkpoint holds the statistics recomputed from the final parameters: the plain
    # run's final state (the same params, moving averages) through the same recomputation.
    config = _config(data_dir, precise_bn=2)
    prepared = trainer.datasets.prepare(config.data)
    source = trainer.datasets.source(prepared, config.data.train_split, config.data)
    model = trainer._create_model(config)
    helper = precise_bn.PreciseBN.for_trainer(config, model, sharding.make_mesh(), source)
    expected = helper.for_evaluation(trainer.steps.EvalState(params=want["params"], batch_stats=want["batch_stats"]))
    changed = 0
    for k, v in _flat(expected.batch_stats).items():
        np.testing.assert_allclose(_flat(got["batch_stats"])[k], v, rtol=1e-6, atol=1e-7, err_msg=k)
        changed += not np.allclose(v, _flat(want["batch_stats"])[k])
    assert changed > 0
