"""TF SavedModel export (jax2tf) parity: TensorFlow's outputs equal JAX's to <= 1e-4 (float32).

The `[tf]` extra: skipped when TensorFlow is not installed. Every backbone (tiny variants, as in
test_export_onnx.py) carries all three head types; the SavedModel is written, loaded back with
`tf.saved_model.load` and its `serving_default` signature run at batch 1 and 7 (one dynamic-batch
signature) against `model.apply`.

TensorFlow is imported only in a child process: other tests assert that training and prediction
leave `tensorflow` out of `sys.modules`, which a TF import in the pytest process would break.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

if importlib.util.find_spec("tensorflow") is None:  # importorskip without importing TF here
    pytest.skip("TensorFlow (the [tf] extra) is not installed", allow_module_level=True)

# One child process exports and reloads four SavedModels: ~1-2 min on 2 cores.
pytestmark = pytest.mark.slow

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)


def _child(backbones: list[str], out_dir: str) -> dict:
    """Runs in the child: export, reload, compare. Returns per-backbone results."""
    import jax.numpy as jnp
    import numpy as np
    import tensorflow as tf

    from aesthetics_jax.export import bundle as bundle_lib
    from aesthetics_jax.export import saved_model
    from test_export_onnx import ALL_HEADS, _build

    results = {}
    spec = bundle_lib.output_spec(ALL_HEADS)
    for backbone in backbones:
        model, variables, size = _build(backbone, ALL_HEADS)  # the weights test_export_onnx uses
        path = os.path.join(out_dir, backbone)
        saved_model.export_saved_model(model, variables, path, image_size=size, resize_size=size + 4)
        loaded = tf.saved_model.load(path)
        serve = loaded.signatures["serving_default"]
        params = tf.nest.flatten(loaded.params)
        res = {"outputs": sorted(serve.structured_outputs),
               "variables": len(params) if all(isinstance(v, tf.Variable) for v in params) else -1,
               "meta": json.load(open(os.path.join(path, "assets.extra", "aesthetics_jax.json")))}
        for batch in (1, 7):
            images = np.random.default_rng(batch).uniform(0, 255, (batch, size, size, 3)).astype(np.float32)
            got = {k: v.numpy() for k, v in serve(images=tf.constant(images)).items()}
            ref = model.apply(variables, jnp.asarray(images))
            res[f"batch{batch}"] = {
                name: {"max_abs_diff": float(np.abs(got[name] - np.asarray(ref[h][key])).max()),
                       "shape_ok": got[name].shape == np.asarray(ref[h][key]).shape,
                       "max_abs": float(np.abs(got[name]).max())}
                for name, h, key in spec
            }
        results[backbone] = res
    return results


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from test_export_onnx import TINY

    out = tmp_path_factory.mktemp("saved_model")
    code = (
        f"import sys, json; sys.path[:0] = [{TESTS!r}, {ROOT!r}]; "
        "import test_export_saved_model as t; "
        f"print('RESULTS ' + json.dumps(t._child({sorted(TINY)!r}, {str(out)!r})))"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULTS "))
    return json.loads(line[len("RESULTS "):])


@pytest.mark.parametrize("backbone", ["clip", "inception", "mobilenet", "mobilenet_v2"])
def test_saved_model_matches_jax(results, backbone):
    res = results[backbone]
    assert res["outputs"] == sorted(["distribution", "mean", "sd", "scores", "attributes", "overall"])
    assert res["variables"] > 0  # parameters are tf.Variables, not folded constants
    for batch in ("batch1", "batch7"):
        for name, r in res[batch].items():
            assert r["shape_ok"], (backbone, batch, name)
            assert r["max_abs_diff"] <= 1e-4, (backbone, batch, name, r)
    for name, r in res["batch7"].items():
        assert r["max_abs"] > 0.02, (backbone, name, r)  # non-trivial outputs (200x the tolerance)


def test_saved_model_metadata(results):
    meta = results["mobilenet"]["meta"]
    assert meta["input_layout"] == "NHWC" and meta["input_dtype"] == "float32"
    assert meta["preprocess"] == "keras_tf" and meta["resize_size"] == "36"
    assert meta["outputs"] == ["distribution", "mean", "sd", "scores", "attributes", "overall"]
    clip = results["clip"]["meta"]
    assert clip["preprocess"] == "clip"
    assert json.loads(clip["mean"]) == pytest.approx([255 * 0.48145466, 255 * 0.4578275, 255 * 0.40821073])
    assert json.loads(clip["std"]) == pytest.approx([255 * 0.26862954, 255 * 0.26130258, 255 * 0.27577711])
