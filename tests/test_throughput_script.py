"""benchmarks/throughput.py: the CPU CI size (--tiny) end to end with the torch peer in the same
run, XLA's FLOP count against a hand count, the peak table, and the torch peers' architectures
against the JAX backbones they are compared with."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "throughput.py"
HEADER = "| backbone | mode | framework | batch | img/s (median) | min | max | GFLOP/img | MFU | compile s |"


def _import_script():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import throughput
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return throughput


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


@pytest.mark.slow
def test_tiny_run_with_torch_peer(tmp_path):
    """One process times JAX and the torch peer (torch.compile, dynamo with the 'eager' backend:
    inductor's C++ code generation takes minutes on CPU) and prints table, ratios and JSON."""
    pytest.importorskip("torch")
    pytest.importorskip("timm")
    out_json = tmp_path / "throughput.json"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device, as a benchmark run would have
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--backbones", "mobilenet_v2,clip", "--steps", "1",
         "--windows", "2", "--peer", "torch", "--torch-compile-backend", "eager", "--json", str(out_json)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("# throughput: device=") and "dtype=bfloat16" in lines[0]
    assert "peak_bf16_tflops=n/a" in lines[0] and "peer=torch.compile[eager]" in lines[0]
    assert HEADER in lines
    rows = [line for line in lines if re.match(r"^\| (mobilenet_v2|clip) tiny", line)]
    assert len(rows) == 8, proc.stdout
    frameworks = []
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 10
        assert cells[1] in ("train", "infer") and cells[3] == "4"
        frameworks.append(cells[2])
        assert float(cells[4]) > 0 and float(cells[5]) <= float(cells[4]) <= float(cells[6])
        assert float(cells[7]) > 0 and cells[8] == "n/a"
    assert sorted(set(frameworks)) == ["jax", "torch.compile[eager]"] and frameworks.count("jax") == 4
    ratio_lines = [line for line in lines if line.startswith("ratio ")]
    assert len(ratio_lines) == 4
    assert all(re.fullmatch(r"ratio (mobilenet_v2|clip) (train|infer) jax/torch\.compile\[eager\] = \d+\.\d{3}", r)
               for r in ratio_lines), ratio_lines

    data = json.loads(out_json.read_text())
    meta = data["meta"]
    assert meta["platform"] == "cpu" and meta["tiny"] is True and meta["peak_bf16_tflops"] is None
    assert meta["versions"]["jax"] == jax.__version__ and meta["versions"]["torch"]
    records = {(r["backbone"], r["mode"], r["framework"]): r for r in data["results"]}
    assert len(records) == 8
    for (backbone, mode, framework), r in records.items():
        assert r["batch"] == 4 and r["img_s"] > 0 and r["mfu"] is None and r["gflops_per_image"] > 0
        # The torch row carries the JAX step's FLOPs (same architecture) for a comparable MFU.
        assert r["flops_per_step"] == records[(backbone, mode, "jax")]["flops_per_step"]
    for backbone in ("mobilenet_v2", "clip"):
        # A train step (forward + backward + update) costs more than twice inference.
        train, infer = (records[(backbone, m, "jax")]["flops_per_step"] for m in ("train", "infer"))
        assert 2 * infer < train < 5 * infer
    for r in data["ratios"]:
        jax_row = records[(r["backbone"], r["mode"], "jax")]
        torch_row = records[(r["backbone"], r["mode"], "torch.compile[eager]")]
        assert r["ratio"] == pytest.approx(jax_row["img_s"] / torch_row["img_s"], rel=1e-2)


def _vit_forward_flops(t, width, layers, mlp, patch_pixels, embed_dim, bins):
    """Matmul FLOPs (2 per multiply-add) of a ViT forward for one image with T tokens."""
    per_layer = 2 * t * width * 3 * width + 2 * 2 * t * t * width + 2 * t * width * width + 2 * 2 * t * width * mlp
    patch = 2 * (t - 1) * patch_pixels * width
    return patch + layers * per_layer + 2 * width * embed_dim + 2 * embed_dim * bins


def test_xla_flops_match_hand_count_and_ignore_padding():
    """The FLOPs that MFU divides by: XLA's count of the tiny CLIP inference step agrees with a
    hand count of its matmuls (elementwise work adds a little), and padding the token axis or
    choosing the attention kernel does not change the count (model FLOPs, not padded work)."""
    throughput = _import_script()
    args = throughput.parse_args(["--tiny", "--backbones", "clip"])
    from aesthetics_jax import models

    spec = throughput.TINY["clip"]
    model = models.create("clip", heads={"emd": {"type": "emd"}}, dtype="float32", **spec.kwargs)
    images = jnp.zeros((spec.batch, 32, 32, 3), jnp.uint8)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), images)
    lowered = jax.jit(lambda v, x: model.apply(v, x)["emd"]["distribution"]).lower(variables, images)
    xla = throughput._flops(lowered) / spec.batch
    # tiny: 32 px, patch 8 -> 16 + 1 tokens, width 32, 2 layers, MLP 128, embed 24, 10 bins.
    hand = _vit_forward_flops(17, 32, 2, 128, 8 * 8 * 3, 24, 10)
    assert hand <= xla <= 1.3 * hand, (xla, hand)

    # bench_jax's counting model for --clip-pad-tokens / cudnn: the unpadded XLA-attention one.
    padded = models.create("clip", heads={"emd": {"type": "emd"}}, dtype="float32", pad_tokens_to=64,
                           **spec.kwargs)
    lowered_padded = jax.jit(lambda v, x: padded.apply(v, x)["emd"]["distribution"]).lower(variables, images)
    assert throughput._flops(lowered_padded) > 1.5 * throughput._flops(lowered)  # 17 -> 64 tokens
    assert args.tiny and args.steps == 2 and args.windows == 3 and args.warmup == 1


def test_peak_table_mfu_and_missing_backbone(monkeypatch, capsys):
    throughput = _import_script()
    assert throughput.peak_tflops("NVIDIA H100 80GB HBM3", "gpu") == pytest.approx(989.4)
    assert throughput.peak_tflops("NVIDIA H100 PCIe", "gpu") == pytest.approx(756.0)
    assert throughput.peak_tflops("NVIDIA H200", "gpu") == pytest.approx(989.4)
    assert throughput.peak_tflops("NVIDIA A100-SXM4-80GB", "gpu") == pytest.approx(312.0)
    assert throughput.peak_tflops("NVIDIA B200", "gpu") == pytest.approx(2250.0)
    assert throughput.peak_tflops("cpu", "cpu") is None
    assert throughput.peak_tflops("Some Future GPU", "gpu") is None
    spec = throughput.FULL["clip"]
    # 128 images/step at 1000 img/s, 10 GFLOP/image on a 1000 TFLOP/s device: 1% MFU.
    row = throughput._record(spec, "train", "jax", {"img_s": 1000.0, "img_s_min": 900.0, "img_s_max": 1100.0},
                             10e9 * spec.batch, 1000.0, 1.0)
    assert row["mfu"] == pytest.approx(0.01) and row["gflops_per_image"] == pytest.approx(10.0)
    no_peak = throughput._record(spec, "infer", "jax", {"img_s": 1.0, "img_s_min": 1.0, "img_s_max": 1.0},
                                 1e9, None, 0.0)
    throughput.print_table([row, no_peak])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == HEADER
    assert out[2].split("|")[9].strip() == "1.0%" and out[3].split("|")[9].strip() == "n/a"
    stats = throughput.time_windows(lambda n: None, steps=3, windows=5, batch=8)
    assert stats["img_s_min"] <= stats["img_s"] <= stats["img_s_max"]
    from aesthetics_jax import models

    monkeypatch.delitem(models.BACKBONES, "inception", raising=False)
    assert "not registered" in throughput.backbone_available("inception")
    assert throughput.backbone_available("clip") is None
    assert throughput.main(["--tiny", "--backbones", "resnet"]) == 2


def test_torch_peers_match_jax_architectures():
    """The peers timed against the JAX models are the same networks: equal trainable parameter
    counts (torch without its 10-way classifier; JAX without the projection / head)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("timm")
    throughput = _import_script()
    from aesthetics_jax import models

    def jax_backbone_params(spec):
        model = models.create(spec.name, heads={"emd": {"type": "emd"}}, **spec.kwargs)
        x = jnp.zeros((1, spec.image_size, spec.image_size, 3), jnp.uint8)
        return jax.eval_shape(model.init, jax.random.PRNGKey(0), x)["params"]["backbone"]

    for specs, tiny in ((throughput.FULL, False), (throughput.TINY, True)):
        for name in ("mobilenet_v2", "clip"):
            spec = specs[name]
            with torch.device("meta"):
                peer = throughput._torch_model(spec, tiny)
            head = "head." if name == "clip" else "classifier."
            torch_count = sum(p.numel() for n, p in peer.named_parameters() if not n.startswith(head))
            params = jax_backbone_params(spec)
            jax_count = _count(params) - (_count(params["proj"]) if name == "clip" else 0)
            assert torch_count == jax_count, (name, tiny, torch_count, jax_count)
