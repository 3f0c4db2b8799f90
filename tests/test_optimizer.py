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


def _phase_config(**kw):
    return ml_collections.ConfigDict(dict(optimizer="adam", optimizer_kwargs={}, lr=1e-2, grad_clip_norm=0.0,
                                          schedule=[(".*", dict(decay_type="cosine"))], **kw))


def test_phases_equal_two_fresh_runs_back_to_back():
    """A phased run == phase 1's optimiser for its steps, then a NEW optimiser (fresh Adam state,
    schedule from 0) over the rest, started from phase 1's parameters (plain optax, no phases)."""
    params = {"backbone": {"w": jnp.array([1.0, -2.0, 0.5])}, "emd": {"w": jnp.array([0.3, 0.7])}}
    target = {"backbone": {"w": jnp.array([0.0, 1.0, -1.0])}, "emd": {"w": jnp.array([-1.0, 2.0])}}
    loss = lambda p: sum(jnp.sum((p[k]["w"] - target[k]["w"]) ** 2 * (1 + jnp.arange(p[k]["w"].size))) for k in p)  # noqa: E731
    head_only = [("^emd/", dict(decay_type="constant")), (".*", None)]
    phases = [dict(steps=3, lr=5e-2, schedule=head_only), dict(lr=1e-2, schedule=[(".*", dict(warmup_steps=2))])]
    config = _phase_config(phases=phases)
    tx, schedules = optimizer.make_optimizer(config, params, total_steps=8)
    assert optimizer.frozen_for_run(params, config) == []
    assert set(schedules) == {"p0/0", "p1/0"}

    def run(tx, p, n):
        state = tx.init(p)
        for _ in range(n):
            updates, state = tx.update(jax.grad(loss)(p), state, p)
            p = optax.apply_updates(p, updates)
        return p

    got = run(tx, params, 8)
    tx1 = optax.multi_transform({"0": optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(5e-2)),
                                 "1": optax.set_to_zero()}, {"backbone": {"w": "1"}, "emd": {"w": "0"}})
    mid = run(tx1, params, 3)
    np.testing.assert_array_equal(mid["backbone"]["w"], params["backbone"]["w"])  # phase 1 froze it
    sched2 = optax.join_schedules([optax.linear_schedule(0.0, 1e-2, 2), optax.cosine_decay_schedule(1e-2, 3)], [2])
    want = run(optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(sched2)), mid, 5)
    for k in params:
        np.testing.assert_allclose(got[k]["w"], want[k]["w"], rtol=1e-6, atol=1e-7)
    # logged lr: phase 0's inside its 3 steps, phase 1's (warm-up from 0) after, 0 outside each
    assert [float(schedules["p0/0"](t)) for t in (0, 2, 3)] == pytest.approx([5e-2, 5e-2, 0.0])
    assert [float(schedules["p1/0"](t)) for t in (2, 3, 4)] == pytest.approx([0.0, 0.0, 5e-3])


def test_phase_lengths_and_errors():
    assert optimizer.phase_lengths([dict(fraction=0.25), dict()], 100) == [25, 75]
    assert optimizer.phase_lengths([dict(steps=10), dict(steps=90)], 100) == [10, 90]
    with pytest.raises(ValueError, match="add up"):
        optimizer.phase_lengths([dict(steps=10), dict(steps=10)], 100)
    with pytest.raises(ValueError, match="only the last phase"):
        optimizer.phase_lengths([dict(), dict(steps=10)], 100)
    with pytest.raises(ValueError, match="unknown field"):
        optimizer.phase_lengths([dict(epochs=1)], 100)
    params = {"backbone": {"w": jnp.zeros(2)}, "emd": {"w": jnp.zeros(2)}}
    frozen_head = [("^emd/", None), (".*", {})]
    config = _phase_config(phases=[dict(steps=2, schedule=[("^emd/", {}), (".*", None)]), dict(schedule=frozen_head)])
    assert optimizer.frozen_for_run(params, config) == []  # each is trained in some phase
    config = _phase_config(phases=[dict(steps=2, schedule=frozen_head), dict(schedule=frozen_head)])
    assert optimizer.frozen_for_run(params, config) == ["emd/w"]
