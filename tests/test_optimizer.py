"""Regex schedules: frozen groups keep their values, trainable ones move, every param is matched."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from aesthetics_jax.train import optimizer


def _params():
    return {
        "backbone": {
            "conv_pw_1": {"kernel": jnp.ones((3, 3))},
            "conv_pw_13": {"kernel": jnp.ones((3,))},
            "conv_pw_13_bn": {"scale": jnp.ones((3,)), "bias": jnp.zeros((3,))},
        },
        "emd": {"dense": {"kernel": jnp.ones((3, 10)), "bias": jnp.zeros((10,))}},
    }


def _config(schedule, lr=0.1, name="sgd", **kw):
    return ml_collections.ConfigDict(dict(lr=lr, optimizer=name, optimizer_kwargs=kw, schedule=schedule))


def _run_steps(tx, params, n=3):
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    for _ in range(n):
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


def _changed(before, after):
    flat_b = {"/".join(k): v for k, v in __import__("flax").traverse_util.flatten_dict(before).items()}
    flat_a = {"/".join(k): v for k, v in __import__("flax").traverse_util.flatten_dict(after).items()}
    return {k for k in flat_b if not np.array_equal(flat_b[k], flat_a[k])}


def test_stage1_head_only_freezes_backbone():
    params = _params()
    cfg = _config([("^emd/", dict(decay_type="constant")), (".*", None)])
    tx, schedules = optimizer.make_optimizer(cfg, params, total_steps=10)
    after = _run_steps(tx, params)
    assert _changed(params, after) == {"emd/dense/kernel", "emd/dense/bias"}
    assert set(schedules) == {"0"}
    assert set(optimizer.frozen_paths(params, cfg.schedule)) == {
        "backbone/conv_pw_1/kernel", "backbone/conv_pw_13/kernel",
        "backbone/conv_pw_13_bn/scale", "backbone/conv_pw_13_bn/bias",
    }


def test_stage2_top_block_and_head():
    params = _params()
    sched = dict(decay_type="constant")
    cfg = _config([("^backbone/conv_pw_13", sched), ("^emd/", sched), (".*", None)])
    tx, _ = optimizer.make_optimizer(cfg, params, total_steps=10)
    after = _run_steps(tx, params)
    assert _changed(params, after) == {
        "backbone/conv_pw_13/kernel", "backbone/conv_pw_13_bn/scale", "backbone/conv_pw_13_bn/bias",
        "emd/dense/kernel", "emd/dense/bias",
    }
    # Plain SGD with momentum 0.9, lr 0.1, gradient 1: three steps move by 0.1*(1 + 1.9 + 2.71).
    np.testing.assert_allclose(after["emd"]["dense"]["bias"], -0.1 * (1 + 1.9 + 2.71), rtol=1e-6)


def test_grad_clipping_ignores_frozen_gradients():
    params = _params()
    cfg = _config([("^emd/dense/bias", dict(decay_type="constant")), (".*", None)], momentum=0.0)
    cfg.grad_clip_norm = 1.0
    tx, _ = optimizer.make_optimizer(cfg, params, total_steps=10)
    after = _run_steps(tx, params, n=1)
    # Only the 10 bias gradients (each 1) count: norm sqrt(10) -> each clipped to 1/sqrt(10).
    np.testing.assert_allclose(after["emd"]["dense"]["bias"], -0.1 / math.sqrt(10), rtol=1e-6)


def test_unmatched_parameter_is_an_error():
    cfg = _config([("^emd/", dict(decay_type="constant"))])
    with pytest.raises(ValueError, match="match no pattern.*backbone/conv_pw_1/kernel"):
        optimizer.make_optimizer(cfg, _params(), total_steps=10)


def test_schedules_match_hand_computed_values():
    fn = optimizer.make_schedule(dict(warmup_steps=10, decay_type="cosine"), base_lr=1.0, total_steps=110)
    assert float(fn(0)) == 0.0
    np.testing.assert_allclose(float(fn(5)), 0.5, rtol=1e-6)
    np.testing.assert_allclose(float(fn(10)), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(fn(60)), 0.5 * (1 + math.cos(math.pi * 50 / 100)), rtol=1e-5)
    lin = optimizer.make_schedule(dict(decay_type="linear", lr_mult=2.0), base_lr=0.5, total_steps=4)
    np.testing.assert_allclose([float(lin(s)) for s in range(5)], [1.0, 0.75, 0.5, 0.25, 0.0], atol=1e-7)
    with pytest.raises(ValueError, match="unknown schedule fields"):
        optimizer.make_schedule(dict(warmup=3), base_lr=1.0, total_steps=10)
