"""CLIP VLAP training step and zero-shot scoring throughput: JAX (this codebase) vs open_clip (torch),
the same weights, timed interleaved in one process.

    python benchmarks/clip_vlap.py                          # ViT-B/16, batch 8 on CPU (128 on GPU)
    python benchmarks/clip_vlap.py --batch_size 32 --rounds 3
    python benchmarks/clip_vlap.py --variant tiny --steps 1 --rounds 2   # seconds (the CI smoke test)
    python benchmarks/clip_vlap.py --dtype bfloat16 --torch_compile     # a GPU run

Weights: open_clip builds the model with random initialisation (`open_clip.create_model(NAME,
pretrained=None)` for the named variants, `open_clip.model.CLIP` with the same tower sizes for
`tiny`; nothing is downloaded); its state dict goes through `convert.clip.convert_state_dict(sd,
'open_clip', act='gelu')` into `models.clip.ContrastiveCLIP`. Before timing, the L2-normalised image
and text embeddings of both are compared at float32 / highest matmul precision; the script stops
if the image embeddings differ by more than 1e-4 (the models would not be the same network).

What is timed (the batch -- uint8 pixels, int32 caption tokens -- is already on the device):
  train     one VLAP step, the whole model trainable: raw pixels normalised in the step, both
            towers, symmetric InfoNCE over the [B, B] logits, backward, AdamW (b2 0.98, eps 1e-6,
            weight decay on every parameter, constant lr; no gradient clipping on either side).
            JAX: `train.steps.train_step` with `losses.clip_infonce` on 'clip.logits' and the
            optimiser of `train.optimizer.make_optimizer`, jitted with the state donated.
            torch: open_clip's forward + `open_clip.loss.ClipLoss` + `torch.optim.AdamW` (fused on
            CUDA), then the in-place logit-scale clamp of open_clip's training loop (the JAX model
            reads the scale clamped instead: the same forward pass).
  zeroshot  CLIP-IQA scoring of one batch against fixed prompt pairs whose text embeddings were
            computed once beforehand: uint8 host pixels in, per-pair scores [B, P] back on the host
            (so both sides include the same host->device copy and the wait for the result).
            JAX: `zeroshot.clip_iqa.ClipIQA.pair_scores`; torch: `model.encode_image` under
            `torch.inference_mode()`, then the same cosine x exp(logit_scale), softmax per pair.
A "step" of zeroshot is one scored batch. Warm-up is excluded: JAX's train step is lowered and
compiled explicitly (its compile time is reported), the zeroshot "first call" includes JAX's
compilation; then `--warmup` untimed steps per side. Then `--rounds` rounds: in each, a window of
`--steps` steps of each framework (device synchronised at the window's end), in A/B order on even
rounds and B/A on odd ones, so that load drifting on a shared machine hits both alike. Reported:
the median window per framework (min/max beside it) and the ratio JAX/torch as the median of the
per-round ratios (each pair of windows timed back to back: the estimate least moved by load that
changes between rounds), with their range, the ratio of the medians and that of the best windows.

Device: JAX runs on its default backend (printed); torch runs on CUDA when JAX is on a GPU (and
`torch.cuda.is_available()`), else on the CPU with `torch.set_num_threads(--threads)` (default:
the cores this process may use). A JAX-GPU/torch-CPU pair is never compared: the torch side is
skipped with a message. On GPU both sides may use TF32 for float32 matmuls (JAX's default; torch is
set to allow it); `--dtype bfloat16` is bf16 compute with float32 parameters on both sides (JAX
model dtype, torch autocast). If open_clip (`pip install open_clip_torch`, in the `torch` extra) is
not installed, the torch side is skipped with a message and JAX runs on its own random weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: open_clip model names of the `models.clip.VARIANTS` (same towers; open_clip's own models use GELU).
OPEN_CLIP_NAMES = {"vit_b32": "ViT-B-32", "vit_b16": "ViT-B-16", "vit_l14": "ViT-L-14", "vit_l14_336": "ViT-L-14-336"}
EMBED_TOL = 1e-4
TASKS = ("train", "zeroshot")
LOSS_CONFIG = {"nce": {"type": "clip_infonce", "output": "clip.logits"}}
WORDS = ("a", "sharp", "blurry", "dark", "bright", "photo", "of", "the", "sunset", "over", "lake", "with", "nice",
         "colours", "and", "strong", "composition", "portrait", "noisy", "street", "at", "night", "good", "bad")

HEADER = "| task | framework | batch | steps/s (median) | img/s (median) | img/s min | img/s max | compile / first s |"


def parse_args(argv=None):
    from aesthetics_jax.models import clip as clip_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="vit_b16", choices=sorted(clip_model.VARIANTS))
    p.add_argument("--batch_size", "--batch-size", type=int, default=None,
                   help="images (and captions) per step (default 8 on CPU, 128 on GPU; on CPU batch 32 "
                        "peaks near 20 GB resident with both frameworks loaded, and a step takes minutes on 2 cores)")
    p.add_argument("--tasks", default="train,zeroshot", help="comma-separated subset of train,zeroshot")
    p.add_argument("--steps", type=int, default=1, help="steps per timed window (default 1)")
    p.add_argument("--rounds", type=int, default=5, help="timed A/B rounds (one window per framework each)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per framework after the first one")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--prompts", default="pyiqa", help="CLIP-IQA prompt set for zeroshot (default pyiqa: 5 pairs)")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--weight_decay", "--weight-decay", type=float, default=0.2)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: the cores this process may use)")
    p.add_argument("--torch_compile", "--torch-compile", action="store_true",
                   help="torch.compile the open_clip model (train forward, encode_image); default eager")
    p.add_argument("--no_torch", "--no-torch", action="store_true", help="time JAX only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the records as JSON here")
    args = p.parse_args(argv)
    args.tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [t for t in args.tasks if t not in TASKS]
    if bad or not args.tasks:
        p.error(f"--tasks: unknown {bad}; known: {', '.join(TASKS)}")
    for name in ("steps", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.batch_size is not None and args.batch_size < 2:
        p.error("--batch_size must be >= 2 (contrastive pairs)")
    args.threads = args.threads or len(os.sched_getaffinity(0))
    return args


def _median_record(task, framework, batch, rates, first_s):
    """rates: steps/s of each window."""
    img = [r * batch for r in rates]
    return {"task": task, "framework": framework, "batch": batch, "steps_s": statistics.median(rates),
            "img_s": statistics.median(img), "img_s_min": min(img), "img_s_max": max(img),
            "windows": [float(f"{r:.6g}") for r in rates], "first_s": first_s}


def print_table(records):
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    for r in records:
        print(f"| {r['task']} | {r['framework']} | {r['batch']} | {r['steps_s']:.4g} | {r['img_s']:.4g} | "
              f"{r['img_s_min']:.4g} | {r['img_s_max']:.4g} | {r['first_s']:.2f} |")


def interleave(runners: dict, steps: int, rounds: int, task: str = "") -> dict:
    """runners: {framework: run(n) -> None (synchronises)}. Rounds alternate the order (A/B, B/A, ...).
    Returns {framework: [steps/s per round]}. Progress goes to stderr (a ViT-B/16 CPU run takes minutes)."""
    names = list(runners)
    rates = {n: [] for n in names}
    for i in range(rounds):
        for name in (names if i % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            runners[name](steps)
            seconds = time.perf_counter() - t0
            rates[name].append(steps / seconds)
            print(f"[{task} round {i + 1}/{rounds}] {name}: {steps} step(s) in {seconds:.3f} s", file=sys.stderr,
                  flush=True)
    return rates


# ---------------------------------------------------------------------------------------- models


def build_open_clip(variant: str, config, seed: int):
    """open_clip model with random weights (CPU, float32), towers equal to `config`."""
    import open_clip
    import torch

    torch.manual_seed(seed)
    if variant in OPEN_CLIP_NAMES:
        model = open_clip.create_model(OPEN_CLIP_NAMES[variant], pretrained=None)
    else:
        v, t = config.vision, config.text
        model = open_clip.model.CLIP(
            embed_dim=v.embed_dim,
            vision_cfg=dict(image_size=v.image_size, patch_size=v.patch_size, width=v.width, layers=v.layers,
                            head_width=v.width // v.num_heads, mlp_ratio=v.mlp_ratio),
            text_cfg=dict(context_length=t.context_length, vocab_size=t.vocab_size, width=t.width, heads=t.num_heads,
                          layers=t.layers, mlp_ratio=t.mlp_ratio),
        )
    if getattr(model, "logit_bias", None) is not None:
        raise ValueError(f"open_clip {variant} has a logit bias (SigLIP-style): not the CLIP objective")
    return model.float().eval()


def convert_weights(torch_model, config):
    """open_clip state dict -> (params, CLIPConfig) in this codebase's layout (strict converter)."""
    from aesthetics_jax.convert import clip as clip_convert

    sd = {k: v.detach().cpu().float().numpy() if v.is_floating_point() else v.detach().cpu().numpy()
          for k, v in torch_model.state_dict().items()}
    params, converted = clip_convert.convert_state_dict(
        sd, "open_clip", act="gelu", vision_heads=config.vision.num_heads, text_heads=config.text.num_heads)
    if converted != config:
        raise ValueError(f"open_clip model converts to {converted}, expected {config}")
    return params


def make_batch(config, batch: int, seed: int):
    import numpy as np

    from aesthetics_jax.models import clip_tokenizer

    rng = np.random.RandomState(seed)
    s = config.vision.image_size
    images = rng.randint(0, 256, (batch, s, s, 3)).astype(np.uint8)
    captions = [" ".join(rng.choice(WORDS, size=rng.randint(4, 20))) for _ in range(batch)]
    tokens = clip_tokenizer.get_tokenizer().tokenize(captions, context_length=config.text.context_length,
                                                     truncate=True)
    return images, np.asarray(tokens, np.int32)


class TorchSide:
    """open_clip model, its ClipLoss / AdamW step and the zero-shot scorer, on one torch device."""

    def __init__(self, model, args, device_type: str):
        import open_clip
        import torch

        self.torch = torch
        self.device = torch.device(device_type)
        self.model = model.to(self.device)
        self.compiled = args.torch_compile
        self.label = "torch.compile" if args.torch_compile else "torch"
        from aesthetics_jax.models import preprocessing

        shape = (1, 3, 1, 1)
        self.mean = torch.tensor(preprocessing.CLIP_MEAN, device=self.device).view(shape)
        self.std = torch.tensor(preprocessing.CLIP_STD, device=self.device).view(shape)
        self.autocast = functools.partial(torch.autocast, device_type=self.device.type, dtype=torch.bfloat16,
                                          enabled=args.dtype == "bfloat16")
        self.loss_fn = open_clip.loss.ClipLoss()
        self.net = torch.compile(self.model) if args.torch_compile else self.model
        self.encode_image = torch.compile(self.model.encode_image) if args.torch_compile else self.model.encode_image

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def normalize(self, images_nchw_uint8):
        return (images_nchw_uint8.float() / 255.0 - self.mean) / self.std

    # --- sanity check (float32, no TF32)
    def embeddings(self, images_np, tokens_np):
        torch = self.torch
        with torch.inference_mode():
            x = self.normalize(torch.from_numpy(images_np).to(self.device).permute(0, 3, 1, 2))
            image = self.model.encode_image(x, normalize=True)
            text = self.model.encode_text(torch.from_numpy(tokens_np).long().to(self.device), normalize=True)
        return image.float().cpu().numpy(), text.float().cpu().numpy()

    # --- train
    def setup_train(self, images_np, tokens_np, args):
        torch = self.torch
        self.model.train()
        self.images = torch.from_numpy(images_np).to(self.device).permute(0, 3, 1, 2).contiguous()
        self.tokens = torch.from_numpy(tokens_np).long().to(self.device)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-6,
                                     weight_decay=args.weight_decay, fused=self.device.type == "cuda")

    def train_step(self):
        torch = self.torch
        with self.autocast():
            image, text, scale = self.net(self.normalize(self.images), self.tokens)
        # float32 logits and loss (the JAX model's logits are float32 at highest precision too)
        loss = self.loss_fn(image.float(), text.float(), scale.float())
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, math.log(100))  # open_clip's training loop does this
        return loss.detach()

    def run_train(self, n):
        loss = None
        for _ in range(n):
            loss = self.train_step()
        self.sync()
        return loss

    # --- zero-shot
    def setup_zeroshot(self, prompt_tokens_np):
        torch = self.torch
        self.model.eval()
        with torch.inference_mode():
            tokens = torch.from_numpy(prompt_tokens_np).long().to(self.device)
            self.text_embeds = self.model.encode_text(tokens, normalize=True).float()
            self.scale = self.model.logit_scale.exp().float()

    def pair_scores(self, images_np):
        torch = self.torch
        with torch.inference_mode():
            x = self.normalize(torch.from_numpy(images_np).to(self.device).permute(0, 3, 1, 2))
            with self.autocast():
                image = self.encode_image(x)
            image = torch.nn.functional.normalize(image.float(), dim=-1)
            logits = self.scale * image @ self.text_embeds.T
            scores = logits.view(logits.shape[0], -1, 2).softmax(-1)[..., 0]
        return scores.cpu().numpy()


# ------------------------------------------------------------------------------------------ main


def _versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ("jax", "jaxlib", "flax", "optax", "torch", "open_clip_torch"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def _torch_reason(args, jax_platform: str):
    """(torch device type, None) or (None, why the torch side is skipped)."""
    if args.no_torch:
        return None, "--no_torch"
    try:
        import open_clip  # noqa: F401
        import torch
    except ImportError as e:
        return None, f"open_clip is not installed ({e}); `pip install open_clip_torch` (the `torch` extra)"
    if jax_platform in ("gpu", "cuda", "rocm"):
        if not torch.cuda.is_available():
            return None, (f"JAX runs on {jax_platform} but this torch has no GPU: a ratio would compare a GPU "
                          "with a CPU; install a CUDA torch build")
        return "cuda", None
    return "cpu", None


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.no_torch:
        # Both frameworks share one GPU in this process: keep JAX from preallocating 75% of it.
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.45")
    import jax
    import jax.numpy as jnp
    import ml_collections
    import numpy as np

    from aesthetics_jax.models import clip as clip_model
    from aesthetics_jax.models import clip_tokenizer
    from aesthetics_jax.train import optimizer as optim
    from aesthetics_jax.train import steps
    from aesthetics_jax.zeroshot import clip_iqa

    device = jax.devices()[0]
    on_gpu = device.platform in ("gpu", "cuda", "rocm")
    batch = args.batch_size or (128 if on_gpu else 8)
    torch_device, skip_reason = _torch_reason(args, device.platform)
    base = clip_model.VARIANTS[args.variant]
    config = clip_model.CLIPConfig(dataclasses.replace(base.vision, act="gelu"),
                                   dataclasses.replace(base.text, act="gelu"))
    command = " ".join(["python benchmarks/clip_vlap.py"] + (sys.argv[1:] if argv is None else list(argv)))
    versions = _versions()
    print(f"# command: {command}")
    print(f"# clip_vlap: variant={args.variant} batch={batch} dtype={args.dtype} steps/window={args.steps} "
          f"rounds={args.rounds} warmup={args.warmup} prompts={args.prompts}")
    print(f"# jax: platform={device.platform} device={device.device_kind} devices={jax.device_count()} "
          f"jax={versions['jax']} flax={versions['flax']} optax={versions['optax']}")
    meta = {"command": command, "variant": args.variant, "batch": batch, "dtype": args.dtype, "steps": args.steps,
            "rounds": args.rounds, "warmup": args.warmup, "prompts": args.prompts, "jax_platform": device.platform,
            "jax_device": device.device_kind, "versions": versions, "torch_device": torch_device,
            "torch_skipped": skip_reason, "threads": args.threads, "loadavg_start": os.getloadavg()}

    torch_side = None
    if skip_reason:
        print(f"# SKIP torch side: {skip_reason}")
        params = jax.jit(clip_model.CLIP(config).init)(
            jax.random.PRNGKey(args.seed), jnp.zeros((1, config.vision.image_size, config.vision.image_size, 3)),
            jnp.zeros((1, config.text.context_length), jnp.int32))["params"]
    else:
        import torch

        if torch_device == "cpu":
            torch.set_num_threads(args.threads)
        name = torch.cuda.get_device_name(0) if torch_device == "cuda" else "cpu"
        print(f"# torch: device={torch_device} ({name}) threads={torch.get_num_threads()} torch={versions['torch']} "
              f"open_clip={versions['open_clip_torch']} peer={'torch.compile' if args.torch_compile else 'eager'}")
        torch_model = build_open_clip(args.variant, config, args.seed)
        params = convert_weights(torch_model, config)
        torch_side = TorchSide(torch_model, args, torch_device)
    print(f"# load average at start: {' '.join(f'{x:.2f}' for x in meta['loadavg_start'])} "
          f"(cores available: {len(os.sched_getaffinity(0))})", flush=True)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
    images, tokens = make_batch(config, batch, args.seed)

    # ------------------------------------------------------------------ sanity: same network
    if torch_side is not None:
        n_torch = sum(p.numel() for p in torch_side.model.parameters())
        check = clip_model.ContrastiveCLIP(config)  # float32, whatever --dtype
        k = min(batch, 4)
        with jax.default_matmul_precision("highest"):
            emb = jax.jit(lambda p, x, t: (check.apply({"params": p}, x, method="embed_image"),
                                           check.apply({"params": p}, t, method="embed_text")))
            j_img, j_txt = (np.asarray(a) for a in emb(params, images[:k], tokens[:k]))
        tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        t_img, t_txt = torch_side.embeddings(images[:k], tokens[:k])
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        d_img, d_txt = float(np.abs(j_img - t_img).max()), float(np.abs(j_txt - t_txt).max())
        ok = d_img <= EMBED_TOL
        print(f"# same weights: {n_params:,} parameters (torch {n_torch:,}); float32 max |JAX - torch| of "
              f"L2-normalised embeddings ({k} images/captions): image {d_img:.2e}, text {d_txt:.2e} "
              f"(tolerance {EMBED_TOL:g}) {'OK' if ok else 'FAIL'}", flush=True)
        meta.update(params=n_params, embed_max_abs_diff={"image": d_img, "text": d_txt})
        if not ok or n_torch != n_params:
            print("the JAX and open_clip models disagree: not timing them", file=sys.stderr)
            return 1
        if torch_device == "cuda":  # timed like JAX's GPU default for float32 matmuls
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    else:
        print(f"# {n_params:,} parameters (random init, JAX only)")

    dtype = jnp.dtype(args.dtype)
    records, ratios = [], []

    def add_ratio(task, rates):
        if torch_side is None:
            return
        j, t = rates["jax"], rates[torch_side.label]
        per_round = [a / b for a, b in zip(j, t)]  # each pair timed back to back
        ratios.append({"task": task, "peer": torch_side.label, "ratio": statistics.median(per_round),
                       "per_round": per_round, "per_round_min": min(per_round), "per_round_max": max(per_round),
                       "ratio_of_medians": statistics.median(j) / statistics.median(t),
                       "ratio_of_best": max(j) / max(t)})

    # ------------------------------------------------------------------ zero-shot scoring
    # First (before training changes either side's weights): both score with the converted weights.
    if "zeroshot" in args.tasks:
        iqa = clip_iqa.ClipIQA(clip_model.CLIP(config, dtype=dtype), jax.device_put(params), args.prompts)
        runners, first = {}, {}
        t0 = time.perf_counter()
        j_scores = iqa.pair_scores(images)
        first["jax"] = time.perf_counter() - t0

        def run_jax_zs(n):
            out = None
            for _ in range(n):
                out = iqa.pair_scores(images)  # numpy: synchronous
            return out

        runners["jax"] = run_jax_zs
        if torch_side is not None:
            texts = [t for pair in iqa.pairs for t in pair]
            prompt_tokens = np.asarray(clip_tokenizer.get_tokenizer().tokenize(
                texts, context_length=config.text.context_length), np.int32)
            torch_side.setup_zeroshot(prompt_tokens)
            t0 = time.perf_counter()
            t_scores = torch_side.pair_scores(images)
            first[torch_side.label] = time.perf_counter() - t0

            def run_torch_zs(n):
                out = None
                for _ in range(n):
                    out = torch_side.pair_scores(images)
                return out

            runners[torch_side.label] = run_torch_zs
            d = float(np.abs(j_scores - t_scores).max())
            print(f"# zeroshot: {len(iqa.pairs)} prompt pairs; max |JAX - torch| of the pair scores on the timed batch "
                  f"(at the timed precision) = {d:.2e}", flush=True)
            meta["zeroshot_score_max_abs_diff"] = d
        for run in runners.values():
            run(args.warmup)
        rates = interleave(runners, args.steps, args.rounds, "zeroshot")
        records += [_median_record("zeroshot", fw, batch, r, first[fw]) for fw, r in rates.items()]
        add_ratio("zeroshot", rates)
        del iqa

    # ------------------------------------------------------------------ VLAP training step
    if "train" in args.tasks:
        opt_config = ml_collections.ConfigDict(dict(
            optimizer="adamw", lr=args.lr, optimizer_kwargs=dict(weight_decay=args.weight_decay, b2=0.98, eps=1e-6),
            schedule=dict(decay_type="constant")))
        tx, _ = optim.make_optimizer(opt_config, params, total_steps=1)
        model = clip_model.ContrastiveCLIP(config, dtype=dtype)
        dev_params = jax.device_put(params)
        state = jax.jit(lambda p: steps.TrainState(step=jnp.zeros((), jnp.int32), params=p, batch_stats={},
                                                   opt_state=tx.init(p)))(dev_params)
        del dev_params
        jbatch = jax.device_put({"image": images, "tokens": tokens})
        rng = jax.random.PRNGKey(args.seed)
        step_fn = jax.jit(functools.partial(steps.train_step, model=model, tx=tx, loss_config=LOSS_CONFIG),
                          donate_argnums=0)
        t0 = time.perf_counter()
        compiled = step_fn.lower(state, jbatch, rng).compile()
        first = {"jax": time.perf_counter() - t0}
        holder = {"state": state}

        def run_jax_train(n):
            if n <= 0:
                return None
            s = holder["state"]
            for _ in range(n):
                s, metrics = compiled(s, jbatch, rng)
            jax.block_until_ready((s, metrics))  # the last update too, not only its loss
            holder["state"] = s
            return metrics

        j_metrics = run_jax_train(1)
        runners = {"jax": run_jax_train}
        if torch_side is not None:
            torch_side.setup_train(images, tokens, args)
            t0 = time.perf_counter()
            t_loss = float(torch_side.run_train(1))
            first[torch_side.label] = time.perf_counter() - t0
            runners[torch_side.label] = torch_side.run_train
            print(f"# train: first-step loss JAX {float(j_metrics['loss']):.5f}, torch {t_loss:.5f} "
                  f"(log({batch}) = {math.log(batch):.5f})", flush=True)
            meta["first_step_loss"] = {"jax": float(j_metrics["loss"]), "torch": t_loss}
        for run in runners.values():
            run(args.warmup)
        rates = interleave(runners, args.steps, args.rounds, "train")
        train_records = [_median_record("train", fw, batch, r, first[fw]) for fw, r in rates.items()]
        records = train_records + records
        add_ratio("train", rates)
        ratios.sort(key=lambda r: TASKS.index(r["task"]))

    meta["loadavg_end"] = os.getloadavg()
    print(f"# load average at end: {' '.join(f'{x:.2f}' for x in meta['loadavg_end'])}")
    print("# compile / first s: JAX train = lower + compile of the step; JAX zeroshot = first call incl. "
          "compilation; torch = first step" + (" incl. torch.compile" if args.torch_compile else " (eager)"))
    print()
    print_table(records)
    print()
    for r in ratios:
        print(f"ratio {r['task']} jax/{r['peer']} = {r['ratio']:.3f} (median of {len(r['per_round'])} per-round "
              f"ratios, range {r['per_round_min']:.3f}-{r['per_round_max']:.3f}; ratio of medians "
              f"{r['ratio_of_medians']:.3f}, of best windows {r['ratio_of_best']:.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": records, "ratios": ratios}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
