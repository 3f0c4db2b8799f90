"""FSDP: the sharding rule, the plan, and the trainer with fsdp = 1, 4, 8 on 8 simulated devices.

End to end, a tiny CLIP image tower with an EMD head trains on the demo dataset with fsdp = 1, 4
and 8: the logged losses and the final parameters agree within 1e-6, each device holds the
replicated arrays plus 1/fsdp of the sharded ones (numbers worked out by hand below), a run
stopped after 2 steps and continued with fsdp = 4 ends where the uninterrupted one does, and
``init_from`` reshards a checkpoint written with fsdp = 4 onto fsdp = 8.

Adam's ``eps`` is 1e-4 in these runs (optax's default is 1e-8). The key bias of each attention
block (``in_proj/bias[32:64]``) has an exactly zero gradient in exact arithmetic (softmax ignores a
constant added to every key), so in floats its gradient is ~1e-9 rounding noise, and Adam with
eps 1e-8 turns that noise into updates of ~0.1 * lr whose values depend on the summation order,
which fsdp changes (measured: 2.4e-4 apart after 4 steps). With eps 1e-4 the noise moves nothing
while the real gradients (~1e-2 per element) are still normalised as usual.
"""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import traverse_util
from jax.sharding import NamedSharding, PartitionSpec as P

from aesthetics_jax.train import checkpointing, sharding, steps, trainer
from configs import nima_demo

STEPS = 4

# Tiny CLIP (width 32, 2 blocks, 8x8 patches at 32 px, embed 24) + EMD head (10 bins), by hand:
#   arrays of >= 1024 elements (sharded): conv1 8*8*3*32 = 6144; per block in_proj 32*96 = 3072,
#     out_proj 32*32 = 1024, c_fc 32*128 = 4096, c_proj 128*32 = 4096 -> 12288; 6144 + 2 * 12288
SHARDED_PARAMS = 30720
#   the rest (replicated): class_embedding 32, positional_embedding 17*32 = 544, ln_pre + ln_post
#     4*32 = 128, proj 32*24 = 768, per block biases 96+32+128+32 + ln_1/ln_2 4*32 -> 416 (x2),
#     emd dense 24*10 + 10 = 250
REPLICATED_PARAMS = 32 + 544 + 128 + 768 + 2 * 416 + 250
PARAM_BYTES_PER_DEVICE = {f: 4 * (REPLICATED_PARAMS + SHARDED_PARAMS // f) for f in (1, 4, 8)}
# = {1: 133096, 4: 40936, 8: 25576}


# ---------------------------------------------------------------- the rule


@pytest.mark.parametrize("shape, fsdp, want", [
    ((), 4, P()),                                    # scalar
    ((32,), 4, P()),                                 # small: replicated
    ((1020,), 4, P()),                               # divisible but below min_size (1024)
    ((1024,), 4, P("fsdp")),                         # at min_size: sharded
    ((32, 96), 4, P(None, "fsdp")),                  # largest dimension
    ((128, 32), 8, P("fsdp", None)),
    ((64, 64), 4, P(None, "fsdp")),                  # tie: the last one
    ((8, 8, 3, 32), 8, P(None, None, None, "fsdp")),  # conv kernel: 32 beats the tied 8s
    ((8, 8, 3, 8), 8, P(None, None, None, "fsdp")),  # three-way tie: the last
    ((12, 1002), 4, P("fsdp", None)),                # the largest (1002) is not divisible
    ((17, 33, 5), 4, P()),                           # no divisible dimension
    ((2048, 16), 1, P()),                            # fsdp = 1: everything replicated
])
def test_fsdp_spec(shape, fsdp, want):
    assert sharding.fsdp_spec(shape, fsdp) == want


def test_min_size_is_an_argument():
    assert sharding.fsdp_spec((32,), 4, min_size=1) == P("fsdp")
    assert sharding.fsdp_spec((4096,), 4, min_size=8192) == P()
    mesh = sharding.make_mesh(4)
    state = {"w": jax.ShapeDtypeStruct((64, 8), jnp.float32)}
    assert sharding.state_shardings(mesh, state)["w"].spec == P()  # 512 elements
    assert sharding.state_shardings(mesh, state, min_size=256)["w"].spec == P("fsdp", None)


def test_state_shardings_abstract_and_concrete_leaves():
    mesh = sharding.make_mesh(4)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4}
    state = {
        "w": jax.ShapeDtypeStruct((64, 128), jnp.float32),  # abstract
        "k": jnp.arange(128 * 24, dtype=jnp.float32).reshape(128, 24),  # concrete
        "b": np.zeros((128,), np.float32),
        "odd": np.zeros((33, 35), np.float32),
        "step": jnp.zeros((), jnp.int32),
    }
    shardings = sharding.state_shardings(mesh, state)
    assert all(isinstance(s, NamedSharding) and s.mesh == mesh for s in jax.tree.leaves(shardings))
    assert {k: s.spec for k, s in shardings.items()} == {
        "w": P(None, "fsdp"), "k": P("fsdp", None), "b": P(), "odd": P(), "step": P()}

    k = jax.device_put(state["k"], shardings["k"])
    assert len(k.addressable_shards) == 8
    assert {s.data.shape for s in k.addressable_shards} == {(32, 24)}
    # 4 distinct slices, each held by the 2 devices of its column of the (data, fsdp) grid.
    assert sorted({s.index[0].start for s in k.addressable_shards}) == [0, 32, 64, 96]
    np.testing.assert_array_equal(np.asarray(k), np.asarray(state["k"]))


def test_describe_and_summarize_on_an_abstract_mesh():
    mesh = jax.sharding.AbstractMesh((1, 64), ("data", "fsdp"))  # a plan for 64 devices, no devices
    state = {"w": jax.ShapeDtypeStruct((256, 768), jnp.float32), "b": jax.ShapeDtypeStruct((768,), jnp.bfloat16),
             "odd": jax.ShapeDtypeStruct((3, 1001), jnp.float32)}
    rows = sharding.describe(sharding.state_shardings(mesh, state), state)
    by_path = {r.path: r for r in rows}
    assert by_path["w"].spec == P(None, "fsdp") and by_path["w"].bytes == 256 * 768 * 4
    assert by_path["w"].bytes_per_device == 256 * 12 * 4
    assert by_path["b"].spec == P() and by_path["b"].bytes_per_device == 768 * 2 and by_path["b"].dtype == "bfloat16"
    assert by_path["odd"].spec == P() and by_path["odd"].bytes_per_device == 3 * 1001 * 4
    assert sharding.summarize(rows) == {
        "arrays": 3, "sharded_arrays": 1, "bytes": 256 * 768 * 4 + 768 * 2 + 3003 * 4,
        "replicated_bytes": 768 * 2 + 3003 * 4, "sharded_bytes": 256 * 768 * 4,
        "bytes_per_device": 256 * 12 * 4 + 768 * 2 + 3003 * 4}


def test_mesh_and_batch_errors():
    with pytest.raises(ValueError, match=r"fsdp=3 does not divide the 8 devices.*\[1, 2, 4, 8\]"):
        sharding.make_mesh(3)
    with pytest.raises(ValueError, match="positive integer"):
        sharding.make_mesh(0)
    with pytest.raises(ValueError, match="batch size 12 is not divisible by the 8 devices"):
        sharding.local_batch_size(12, sharding.make_mesh(4))


# ---------------------------------------------------------------- the trainer


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory):
    """A persistent XLA cache for this module's runs: the fsdp = 4 runs (uninterrupted, stopped,
    continued) and the two fsdp = 8 runs compile identical programs, and each compilation of the
    8-device train step takes seconds on 2 cores. Restored to the previous settings afterwards."""
    from jax.experimental.compilation_cache import compilation_cache as cc

    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    old = {name: getattr(jax.config, name) for name in names}
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("xla_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    cc.reset_cache()
    yield
    for name, value in old.items():
        jax.config.update(name, value)
    cc.reset_cache()


def _clip_config(data_dir, fsdp, total_steps=STEPS, **overrides):
    config = nima_demo.get_config("smoke")  # demo data at 32 px, batch 8, checkpoints every 2 steps
    config.data.data_dir = data_dir
    config.model = ml_collections.ConfigDict(dict(
        name="clip", variant="tiny", dropout=0.0, dtype="float32", heads=dict(emd=dict(type="emd", num_bins=10))))
    config.optimizer = "adamw"
    config.optimizer_kwargs = {"eps": 1e-4}  # see the module docstring
    # A constant rate after warm-up: the schedule does not depend on total_steps, so a run to step 2
    # continued to step 4 follows the same rates as one run to 4.
    config.schedule = [(".*", dict(warmup_steps=1, decay_type="constant"))]
    config.total_steps = total_steps
    config.log_every = 1
    config.eval_every = 0
    config.evals = ml_collections.ConfigDict(dict(test=dict(type="aesthetic", split="test", plots=False)))
    config.best_metric = None
    config.async_checkpointing = False
    config.fsdp = fsdp
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def _per_device_bytes(tree):
    return sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(tree))


def _train(config, workdir):
    """Runs the trainer; returns (results, the state it evaluated at the end)."""
    seen = {}
    real_evaluate = trainer.evaluate

    def evaluate_and_keep_state(state, *args, **kwargs):
        seen["state"] = state
        return real_evaluate(state, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer, "evaluate", evaluate_and_keep_state)
        results = trainer.train_and_evaluate(config, workdir)
    return results, seen["state"]


def _losses(workdir):
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _params(workdir):
    return traverse_util.flatten_dict(checkpointing.restore_params(os.path.join(workdir, "checkpoints"))["params"])


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory, compilation_cache):
    """fsdp -> (workdir, results, final state) of a STEPS-step run."""
    out = {}
    for fsdp in (1, 4, 8):
        workdir = str(tmp_path_factory.mktemp(f"fsdp{fsdp}"))
        results, state = _train(_clip_config(data_dir, fsdp), workdir)
        out[fsdp] = (workdir, results, state)
    return out


def test_plan_of_the_clip_state_matches_the_hand_count():
    config = _clip_config("", 4)
    model = trainer._create_model(config)
    abstract = jax.eval_shape(lambda r: steps.create_state(model, optax.identity(), r, (32, 32, 3)),
                              jax.random.key(0))
    for fsdp in (1, 4, 8):
        rows = sharding.describe(sharding.state_shardings(sharding.make_mesh(fsdp), abstract.params), abstract.params)
        totals = sharding.summarize(rows)
        assert totals["bytes"] == 4 * (REPLICATED_PARAMS + SHARDED_PARAMS)
        assert totals["sharded_bytes"] == (4 * SHARDED_PARAMS if fsdp > 1 else 0)
        assert totals["bytes_per_device"] == PARAM_BYTES_PER_DEVICE[fsdp]
        assert totals["sharded_arrays"] == (9 if fsdp > 1 else 0)


def test_fsdp_trains_like_data_parallel(runs):
    workdir1, results1, _ = runs[1]
    losses1, params1 = _losses(workdir1), _params(workdir1)
    assert sorted(losses1) == list(range(2, STEPS + 1))  # step 1 (compilation) is not logged
    for fsdp in (4, 8):
        workdir, results, _ = runs[fsdp]
        losses = _losses(workdir)
        assert losses.keys() == losses1.keys()
        np.testing.assert_allclose([losses[s] for s in losses1], list(losses1.values()), rtol=0, atol=1e-6)
        params = _params(workdir)
        assert params.keys() == params1.keys()
        for key in params1:
            np.testing.assert_allclose(params[key], params1[key], rtol=0, atol=1e-6, err_msg="/".join(key))
        # Evaluation (the _Predictor on sharded params) predicts the same.
        assert results["test/emd/mae"] == pytest.approx(results1["test/emd/mae"], abs=1e-5)
        assert results["test/emd/emd_r2"] == pytest.approx(results1["test/emd/emd_r2"], abs=1e-5)
    # The parameters moved: the comparison is not between two copies of the initial state.
    assert np.abs(params1[("backbone", "conv1", "kernel")]).sum() > 0
    assert not np.allclose(losses1[2], losses1[STEPS])


def test_each_device_holds_its_share(runs):
    for fsdp, (_, _, state) in runs.items():
        params_bytes = _per_device_bytes(state.params)
        assert params_bytes == PARAM_BYTES_PER_DEVICE[fsdp], fsdp
        for x in jax.tree.leaves(state.params):
            assert x.sharding.spec == sharding.fsdp_spec(x.shape, fsdp)
        # AdamW keeps mu and nu shaped (and sharded) like the params, plus replicated scalar counts.
        scalars = [x for x in jax.tree.leaves(state.opt_state) if x.ndim == 0]
        assert _per_device_bytes(state.opt_state) == 2 * params_bytes + sum(x.nbytes for x in scalars)
    assert PARAM_BYTES_PER_DEVICE == {1: 133096, 4: 40936, 8: 25576}


def test_fsdp_run_resumes_to_the_uninterrupted_parameters(runs, data_dir, tmp_path, capsys):
    workdir = str(tmp_path / "resumed")
    _train(_clip_config(data_dir, 4, total_steps=2), workdir)  # "killed" after step 2
    capsys.readouterr()
    _train(_clip_config(data_dir, 4), workdir)  # the same run, continued to STEPS
    assert "resuming from step 2" in capsys.readouterr().out
    want, got = _params(runs[4][0]), _params(workdir)
    assert want.keys() == got.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg="/".join(key))
    assert _losses(workdir)[STEPS] == _losses(runs[4][0])[STEPS]


def test_init_from_reshards_a_checkpoint_onto_another_fsdp(runs, data_dir, tmp_path):
    source = runs[4][0]  # written with fsdp = 4
    config = _clip_config(data_dir, 8, total_steps=0)  # no step: the state evaluated is the loaded one
    config.init_from = ml_collections.ConfigDict(dict(workdir=source, step=-1, dont_load=[]))
    _, state = _train(config, str(tmp_path / "init8"))
    assert _per_device_bytes(state.params) == PARAM_BYTES_PER_DEVICE[8]
    loaded = traverse_util.flatten_dict(state.params)
    want = _params(source)
    for key in want:
        assert loaded[key].sharding.spec == sharding.fsdp_spec(want[key].shape, 8)
        np.testing.assert_array_equal(np.asarray(loaded[key]), want[key], err_msg="/".join(key))
