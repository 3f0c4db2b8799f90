"""Train-step and inference throughput (images/s) per backbone, with MFU; optional PyTorch peer.

    python benchmarks/throughput.py                        # GPU: inception 299 / mobilenet_v2 224 /
                                                           # clip vit_b16 224, bf16
    python benchmarks/throughput.py --peer torch           # + torchvision / timm with torch.compile,
                                                           # same run, prints JAX / torch ratios
    python benchmarks/throughput.py --tiny                 # CPU CI size: tiny widths, seconds
    python benchmarks/throughput.py --backbones clip --clip-attention cudnn --clip-pad-tokens 64

What is timed (both frameworks):
  * train: one optimiser step on a fixed synthetic batch already on the device -- raw uint8 pixels
    normalised inside the model, forward with batch statistics (BN in training mode), NIMA EMD
    loss on a 10-bin head, backward, AdamW update. For JAX this is the project's own
    `train.steps.train_step` (jit, donated state); for torch the same head/loss, bf16 autocast,
    channels_last, `torch.compile(model)` with an eager `torch.optim.AdamW` step (fused on CUDA).
  * infer: the forward pass in eval mode (head outputs).
Compute is bf16 (params float32). Warm-up (compilation + `--warmup` steps) is excluded; then
`--windows` windows of `--steps` steps each are timed (device synchronised at each window end)
and the median window's images/s is reported, with the min/max beside it.

MFU = achieved model FLOP/s / device peak. FLOPs per step come from XLA's cost analysis of the
JAX step as lowered (`jax.jit(f).lower(...).cost_analysis()['flops']`: the program as written,
before backend fusion; for clip it is counted on the unpadded model with XLA attention, since a
cuDNN fused-attention custom call is opaque to the cost model and padded tokens are not model
work). The torch row is given the same FLOPs per image (same architecture), so its MFU is
comparable. Peaks are dense bf16 tensor-core figures from the vendors' data sheets
(`PEAK_BF16_TFLOPS`); on a CPU or an unknown device MFU is n/a.

With `--peer torch`, JAX's GPU memory pool is capped at `XLA_PYTHON_CLIENT_MEM_FRACTION` (default
0.45 here, set before JAX starts) so that torch, timed in the same process, has the rest. The
tiny (CPU) peers are not the same size as the tiny JAX models: their ratios only check the plumbing.

Output: a Markdown table on stdout (one row per backbone x mode x framework), `ratio` lines
(`ratio <backbone> <mode> jax/torch.compile = 1.23`) with --peer torch, and with `--json PATH` the
same records as JSON ({"meta": {...}, "results": [...], "ratios": [...], "skipped": [...]}).

The inception backbone is imported lazily; if it is not available the script says so and skips it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Dense bf16 tensor-core peak, TFLOP/s (no sparsity), matched against `device_kind` (lower case).
PEAK_BF16_TFLOPS = (
    ("gb200", 2500.0),
    ("b200", 2250.0),
    ("gh200", 989.4),
    ("h200", 989.4),
    ("h100 pcie", 756.0),
    ("h100 nvl", 835.0),
    ("h100", 989.4),  # SXM ("NVIDIA H100 80GB HBM3")
    ("a100", 312.0),
    ("l40s", 362.0),
)

NUM_BINS = 10


@dataclasses.dataclass(frozen=True)
class Spec:
    name: str  # models.create name
    label: str
    image_size: int
    batch: int
    kwargs: dict
    torch_name: str  # peer model


FULL = {
    "inception": Spec("inception", "inception_v3 299", 299, 128, {}, "torchvision.inception_v3"),
    "mobilenet_v2": Spec("mobilenet_v2", "mobilenet_v2 224", 224, 256, {"width": 1.0}, "torchvision.mobilenet_v2"),
    "clip": Spec("clip", "clip vit_b16 224", 224, 128, {"variant": "vit_b16"}, "timm.vit_base_patch16_clip_224"),
}
TINY = {
    "inception": Spec("inception", "inception tiny 75", 75, 4, {"num_mixed": 1}, "torchvision.inception_v3"),
    "mobilenet_v2": Spec("mobilenet_v2", "mobilenet_v2 tiny 32", 32, 4, {"width": 0.35, "num_blocks": 3},
                         "torchvision.mobilenet_v2"),
    "clip": Spec("clip", "clip tiny 32", 32, 4, {"variant": "tiny"}, "timm.vit_base_patch16_clip_224"),
}


def peak_tflops(device_kind: str, platform: str) -> float | None:
    if platform not in ("gpu", "cuda"):
        return None
    kind = device_kind.lower()
    for key, peak in PEAK_BF16_TFLOPS:
        if key in kind:
            return peak
    return None


def time_windows(run_steps: Callable[[int], None], steps: int, windows: int, batch: int) -> dict:
    """Times `windows` calls of `run_steps(steps)` (which must synchronise); images/s stats."""
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        run_steps(steps)
        rates.append(batch * steps / (time.perf_counter() - start))
    return {"img_s": statistics.median(rates), "img_s_min": min(rates), "img_s_max": max(rates)}


# ------------------------------------------------------------------------------------------ JAX


def backbone_available(name: str) -> str | None:
    """None if the backbone can be built, else the reason (lazy import of its module)."""
    from aesthetics_jax import models

    if name not in models.BACKBONES:
        return f"backbone {name!r} is not registered in aesthetics_jax.models.BACKBONES"
    try:
        importlib.import_module(models.BACKBONES[name].module)
    except ImportError as e:
        return f"backbone {name!r} cannot be imported ({e})"
    return None


def _flops(stage) -> float | None:
    """FLOPs of a `jax.stages.Lowered` (or Compiled) per XLA's cost analysis; None if unknown."""
    cost = stage.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def bench_jax(spec: Spec, args, peak: float | None) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import optax

    from aesthetics_jax import models
    from aesthetics_jax.train import steps

    kwargs = dict(spec.kwargs)
    if spec.name == "clip":
        if args.clip_attention:
            kwargs["attention"] = args.clip_attention
        if args.clip_pad_tokens:
            kwargs["pad_tokens_to"] = args.clip_pad_tokens
    heads = {"emd": {"type": "emd", "num_bins": NUM_BINS}}
    model = models.create(spec.name, heads=heads, dtype=args.dtype, **kwargs)
    # FLOPs are counted on the model as written: for clip without token padding and with XLA
    # attention (a cuDNN custom call is opaque to XLA's cost model). Same parameters either way.
    count_model = model
    if spec.name == "clip" and (kwargs.get("attention") == "cudnn" or kwargs.get("pad_tokens_to")):
        count_kwargs = {k: v for k, v in kwargs.items() if k not in ("attention", "pad_tokens_to")}
        count_model = models.create(spec.name, heads=heads, dtype=args.dtype, attention="xla", **count_kwargs)
    tx = optax.adamw(1e-4, weight_decay=1e-4)
    loss_config = {"emd": {"type": "emd", "output": "emd.distribution", "target": "distribution", "r": 2}}
    shape = (spec.image_size, spec.image_size, 3)
    key = jax.random.PRNGKey(0)
    state = jax.jit(lambda k: steps.create_state(model, tx, k, shape))(key)
    images = jax.random.randint(key, (spec.batch, *shape), 0, 256, jnp.int32).astype(jnp.uint8)
    dist = jax.nn.softmax(jax.random.normal(key, (spec.batch, NUM_BINS)), axis=-1)
    batch = {"image": images, "distribution": dist}
    rng = jax.random.PRNGKey(1)
    results = []

    # train
    def train_fn(m):
        return jax.jit(lambda s, b, r: steps.train_step(s, b, r, model=m, tx=tx, loss_config=loss_config),
                       donate_argnums=0)

    flops = _flops(train_fn(count_model).lower(state, batch, rng))
    t0 = time.perf_counter()
    compiled = train_fn(model).lower(state, batch, rng).compile()
    compile_s = time.perf_counter() - t0
    holder = {"state": state}

    def run_train(n):
        if n <= 0:
            return
        s = holder["state"]
        for _ in range(n):
            s, metrics = compiled(s, batch, rng)
        jax.block_until_ready((s, metrics))  # the last update too, not only its loss
        holder["state"] = s

    run_train(args.warmup)
    stats = time_windows(run_train, args.steps, args.windows, spec.batch)
    results.append(_record(spec, "train", "jax", stats, flops, peak, compile_s))

    # inference
    state = holder["state"]
    variables = {"params": state.params, "batch_stats": state.batch_stats}

    def infer_fn(m):
        return jax.jit(lambda v, x: m.apply(v, x, train=False)["emd"]["distribution"])

    flops = _flops(infer_fn(count_model).lower(variables, images))
    t0 = time.perf_counter()
    compiled_infer = infer_fn(model).lower(variables, images).compile()
    compile_s = time.perf_counter() - t0

    def run_infer(n):
        if n <= 0:
            return
        for _ in range(n):
            out = compiled_infer(variables, images)
        jax.block_until_ready(out)

    run_infer(args.warmup)
    stats = time_windows(run_infer, args.steps, args.windows, spec.batch)
    results.append(_record(spec, "infer", "jax", stats, flops, peak, compile_s))
    return results


def _record(spec: Spec, mode: str, framework: str, stats: dict, flops_per_step, peak, compile_s) -> dict:
    flops_per_image = None if flops_per_step is None else flops_per_step / spec.batch
    mfu = None
    if flops_per_image is not None and peak:
        mfu = flops_per_image * stats["img_s"] / (peak * 1e12)
    return {
        "backbone": spec.name,
        "label": spec.label,
        "mode": mode,
        "framework": framework,
        "batch": spec.batch,
        "image_size": spec.image_size,
        **{k: round(v, 2) for k, v in stats.items()},
        "flops_per_step": flops_per_step,
        "gflops_per_image": None if flops_per_image is None else float(f"{flops_per_image / 1e9:.6g}"),
        "mfu": None if mfu is None else round(mfu, 4),
        "compile_s": round(compile_s, 2),
    }


# ---------------------------------------------------------------------------------------- torch


def _torch_model(spec: Spec, tiny: bool):
    """The peer model with a 10-way head (random weights, no download)."""
    import torch

    module, name = spec.torch_name.split(".", 1)
    if module == "torchvision":
        import torchvision

        kw = {"weights": None, "num_classes": NUM_BINS}
        if name == "inception_v3":
            kw.update(aux_logits=False, init_weights=False)
        if name == "mobilenet_v2" and tiny:
            # The JAX tiny model: width 0.35, blocks 0..2 (t, c, n, s rows of torchvision), Conv_1.
            kw.update(width_mult=0.35, inverted_residual_setting=[[1, 16, 1, 1], [6, 24, 2, 2]])
        return getattr(torchvision.models, name)(**kw)
    import timm

    kw = {"pretrained": False, "num_classes": NUM_BINS}
    if tiny:
        kw.update(img_size=spec.image_size, patch_size=8, embed_dim=32, depth=2, num_heads=4)
    return timm.create_model(name, **kw)


def bench_torch(spec: Spec, args, flops_by_mode: dict, peak: float | None) -> list[dict]:
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model = _torch_model(spec, args.tiny).to(device).to(memory_format=torch.channels_last)
    if spec.name == "clip":
        mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    elif spec.name == "inception":
        mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # Keras "tf" mode: x / 127.5 - 1
    else:
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255
    g = torch.Generator(device="cpu").manual_seed(0)
    images = torch.randint(0, 256, (spec.batch, 3, spec.image_size, spec.image_size), generator=g,
                           dtype=torch.uint8).to(device).contiguous(memory_format=torch.channels_last)
    target = torch.softmax(torch.randn(spec.batch, NUM_BINS, generator=g), -1).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4,
                            fused=device.type == "cuda")
    # Same compute dtype as the JAX side: bf16 autocast (params float32), or none for float32.
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                              enabled=str(args.dtype) in ("bfloat16", "bf16"))

    def emd(p_true, p_pred):
        cdf = torch.cumsum(p_true, -1) - torch.cumsum(p_pred, -1)
        return torch.sqrt(torch.mean(cdf.square(), -1)).mean()

    # The standard recipe: compile the model (forward and its backward graph); the loss, backward
    # call and fused AdamW step run eagerly around it.
    if args.torch_compile:
        net = torch.compile(model, backend=args.torch_compile_backend, mode=args.torch_compile_mode)
    else:
        net = model

    def train_step(x, y):
        with autocast:
            logits = net(((x.float() - mean_t) / std_t).contiguous(memory_format=torch.channels_last))
            loss = emd(y, torch.softmax(logits.float(), -1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    def infer_step(x):
        with torch.no_grad(), autocast:
            return torch.softmax(net(((x.float() - mean_t) / std_t).contiguous(memory_format=torch.channels_last)).float(), -1)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    results = []
    model.train()
    t0 = time.perf_counter()
    train_step(images, target)
    sync()
    compile_s = time.perf_counter() - t0

    def run_train(n):
        for _ in range(n):
            train_step(images, target)
        sync()

    run_train(args.warmup)
    stats = time_windows(run_train, args.steps, args.windows, spec.batch)
    label = torch_label(args)
    results.append(_record(spec, "train", label, stats, flops_by_mode.get("train"), peak, compile_s))

    model.eval()
    t0 = time.perf_counter()
    infer_step(images)
    sync()
    compile_s = time.perf_counter() - t0

    def run_infer(n):
        for _ in range(n):
            out = infer_step(images)
        sync()
        return out

    run_infer(args.warmup)
    stats = time_windows(run_infer, args.steps, args.windows, spec.batch)
    results.append(_record(spec, "infer", label, stats, flops_by_mode.get("infer"), peak, compile_s))
    return results


def torch_label(args) -> str:
    if not args.torch_compile:
        return "torch"
    if args.torch_compile_backend != "inductor":
        return f"torch.compile[{args.torch_compile_backend}]"
    return "torch.compile"


# ------------------------------------------------------------------------------------------ main


def _fmt(v, digits=1):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def print_table(results: list[dict]) -> None:
    print("| backbone | mode | framework | batch | img/s (median) | min | max | GFLOP/img | MFU | compile s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        mfu = "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        gflops = "n/a" if r["gflops_per_image"] is None else f"{r['gflops_per_image']:.4g}"
        print(f"| {r['label']} | {r['mode']} | {r['framework']} | {r['batch']} | {_fmt(r['img_s'])} | "
              f"{_fmt(r['img_s_min'])} | {_fmt(r['img_s_max'])} | {gflops} | {mfu} | "
              f"{_fmt(r['compile_s'], 1)} |")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", default="inception,mobilenet_v2,clip",
                   help="comma-separated subset of: " + ", ".join(FULL))
    p.add_argument("--tiny", action="store_true", help="CPU CI size: tiny models, batch 4, few steps")
    p.add_argument("--batch", type=int, default=None, help="override every backbone's batch size")
    p.add_argument("--dtype", default="bfloat16", help="compute dtype (params stay float32)")
    p.add_argument("--steps", type=int, default=None, help="steps per timed window (default 20; tiny 2)")
    p.add_argument("--windows", type=int, default=None, help="timed windows (default 5; tiny 3)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps after compilation (default 5; tiny 1)")
    p.add_argument("--peer", choices=["none", "torch"], default="none")
    p.add_argument("--no-torch-compile", dest="torch_compile", action="store_false",
                   help="time the torch peer eagerly (for a quick CPU check)")
    p.add_argument("--torch-compile-backend", default="inductor",
                   help="torch.compile backend (inductor; 'eager' traces with dynamo but skips code "
                        "generation: the CPU test uses it)")
    p.add_argument("--torch-compile-mode", default=None,
                   help="torch.compile mode, e.g. max-autotune (default: torch's default)")
    p.add_argument("--clip-attention", choices=["xla", "cudnn"], default=None,
                   help="jax.nn.dot_product_attention implementation for clip (default: JAX chooses)")
    p.add_argument("--clip-pad-tokens", type=int, default=0,
                   help="pad clip's token axis to a multiple of this (masked), e.g. 8 or 64 for cudnn")
    p.add_argument("--json", default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)
    args.steps = args.steps or (2 if args.tiny else 20)
    args.windows = args.windows or (3 if args.tiny else 5)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 5)
    return args


def _versions(peer: str) -> dict:
    import importlib.metadata as md

    names = ["jax", "jaxlib", "flax", "optax"] + (["torch", "torchvision", "timm"] if peer == "torch" else [])
    out = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.peer == "torch":
        # Both frameworks share the GPU in this process: keep JAX from preallocating 75% of it.
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")
    import jax

    specs = TINY if args.tiny else FULL
    names = [n.strip() for n in args.backbones.split(",") if n.strip()]
    unknown = [n for n in names if n not in specs]
    if unknown:
        print(f"unknown backbones {unknown}; known: {', '.join(specs)}", file=sys.stderr)
        return 2
    device = jax.devices()[0]
    peak = peak_tflops(device.device_kind, device.platform)
    meta = {
        "device": device.device_kind,
        "platform": device.platform,
        "num_devices": jax.device_count(),
        "jax": jax.__version__,
        "versions": _versions(args.peer),
        "xla_python_client_mem_fraction": os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION"),
        "dtype": args.dtype,
        "peak_bf16_tflops": peak,
        "steps": args.steps,
        "windows": args.windows,
        "warmup": args.warmup,
        "tiny": args.tiny,
        "command": " ".join([os.path.basename(sys.argv[0])] + (sys.argv[1:] if argv is None else list(argv))),
    }
    if args.peer == "torch":
        import torch

        meta["torch"] = torch.__version__
        meta["torch_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        meta["torch_peer"] = torch_label(args)
        if device.platform == "gpu" and not torch.cuda.is_available():
            print("--peer torch: JAX runs on a GPU but this torch has no CUDA; a ratio would compare a GPU "
                  "with a CPU. Install a CUDA torch build.", file=sys.stderr)
            return 2
    print(f"# throughput: device={meta['device']} platform={meta['platform']} jax={meta['jax']} "
          f"dtype={args.dtype} peak_bf16_tflops={'n/a' if peak is None else peak} steps={args.steps} "
          f"windows={args.windows} warmup={args.warmup}"
          + (f" torch={meta['torch']} peer={meta['torch_peer']}" if "torch" in meta else ""))
    results, ratios, skipped = [], [], []
    for name in names:
        spec = specs[name]
        if args.batch:
            spec = dataclasses.replace(spec, batch=args.batch)
        reason = backbone_available(spec.name)
        if reason:
            print(f"SKIP {name}: {reason}", flush=True)
            skipped.append({"backbone": name, "reason": reason})
            continue
        jax_rows = bench_jax(spec, args, peak)
        results += jax_rows
        if args.peer == "torch":
            flops = {r["mode"]: r["flops_per_step"] for r in jax_rows}
            try:
                torch_rows = bench_torch(spec, args, flops, peak)
            except ImportError as e:
                print(f"SKIP torch peer for {name}: {e}", flush=True)
                skipped.append({"backbone": name, "framework": "torch", "reason": str(e)})
                torch_rows = []
            results += torch_rows
            for j in jax_rows:
                for t in torch_rows:
                    if t["mode"] == j["mode"]:
                        ratios.append({"backbone": name, "mode": j["mode"], "peer": t["framework"],
                                       "ratio": round(j["img_s"] / t["img_s"], 3)})
    print()
    print_table(results)
    for r in ratios:
        print(f"ratio {r['backbone']} {r['mode']} jax/{r['peer']} = {r['ratio']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results, "ratios": ratios,
                                               "skipped": skipped}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
