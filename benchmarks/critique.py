"""Critiques per second: this codebase's critic (JAX: four experts, batched beam search with a KV cache,
one compiled call) vs the released torch code on the same weights, in one process.

    python benchmarks/critique.py                                # CG-IAA size, 2 images, 20 tokens
    python benchmarks/critique.py --images 8 --max_tokens 67     # the released length (GPU)
    python benchmarks/critique.py --size tiny --images 2 --max_tokens 6   # seconds (CI smoke test)

Models (random weights, nothing downloaded): CG-IAA's architecture (`--size cgiaa`): a CLIP ViT-B/16
image tower (open_clip `ViT-B-16`, `pretrained=None`, OpenAI layout) and four ClipCap experts
(`benchmarks/clipcap_torch.TorchClipCap`: mapper 512 -> 40 x 768, 8 layers; GPT-2 small, 124 M).
Their state dicts go through `convert/cgiaa.py` into the JAX critic (`critique.critic.Critic`).
Before timing, the JAX critiques of the first image are checked against the torch reference's
(identical token ids; the script stops otherwise).

Timed, per side, the whole job: uint8 pixels [N, 224, 224, 3] in, critique token ids of all four
experts for all N images out (beam 5; random weights rarely emit ".", so nearly every beam runs
`--max_tokens` tokens on both sides alike):
  jax            `Critic.tokens`: image tower, then the four experts at once (vmap over their
                 stacked parameters), each a batched beam search over the N images with a
                 fixed-size KV cache, inside one jitted program (compile time reported apart).
  torch-released CG-IAA's `AesCritique`: `encode_image` on the batch, then per expert and per image
                 the released `generate_beam` (`clipcap_torch.released_beam_search`: GPT-2 re-reads
                 the whole prefix + sequence every step), under `torch.no_grad()`.
  torch-generate transformers' `generate(inputs_embeds=prefix, num_beams=5, do_sample=False,
                 max_new_tokens, eos_token_id=".")` per expert on the batch (its own KV cache; its
                 beam scoring differs from the released one in details -- length penalty 1.0 on the
                 finished hypotheses -- so its tokens are not compared; it is the fast torch peer).
Warm-up is excluded (JAX's first call, which compiles, is reported apart). Reported: seconds per
window (`--rounds` windows per side, interleaved A/B/C then C/B/A), critiques
per second (images x experts / seconds, median window) and the ratios jax / torch.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SIZES = {
    # image tower (open_clip model name or tiny kwargs), expert kwargs (TorchClipCap), image size
    "cgiaa": dict(clip="ViT-B-16", expert={}, image_size=224),
    "tiny": dict(clip=dict(embed_dim=24, vision_cfg=dict(layers=2, width=128, patch_size=8, image_size=32, head_width=64),
                           text_cfg=dict(context_length=16, vocab_size=49408, width=64, heads=1, layers=2)),
                 expert=dict(prefix_dim=24, width=64, gpt_heads=1, gpt_layers=2, vocab=300, n_positions=128,
                             prefix_length=4, clip_length=3, mapper_layers=2), image_size=32),
}
ATTRIBUTES = ("color", "composition", "dof", "general")
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="cgiaa")
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--max_tokens", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: the cores this process may use)")
    p.add_argument("--peers", default="released,generate", help="torch peers to time: released, generate")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def build(size: str, stop: int, beam: int, max_tokens: int):
    """(torch CLIP, torch experts, JAX Critic) with the same random weights."""
    import open_clip
    import torch

    from aesthetics_jax.convert import cgiaa
    from aesthetics_jax.critique import critic as critic_lib
    from benchmarks.clipcap_torch import TorchClipCap

    spec = SIZES[size]
    torch.manual_seed(0)
    if isinstance(spec["clip"], str):
        clip = open_clip.create_model(spec["clip"], pretrained=None, force_quick_gelu=True).eval()
    else:
        clip = open_clip.model.CLIP(quick_gelu=True, **spec["clip"]).eval()
    experts = {a: TorchClipCap(i, **spec["expert"]) for i, a in enumerate(ATTRIBUTES)}
    to_np = lambda sd: {k: v.detach().float().numpy() for k, v in sd.items()}  # noqa: E731
    clip_params, clip_config = cgiaa.convert_base(to_np(clip.state_dict()))
    params, config = {}, None
    for a, m in experts.items():
        params[a], config = cgiaa.convert_expert(to_np(m.state_dict()), gpt_heads=m.gpt.config.n_head)

    class _Stop:  # the critic reads its stop id from a tokenizer; random weights need no text
        def encode(self, text):
            return [stop]

    critic = critic_lib.Critic(vision_config=clip_config.vision, clip_params=clip_params, clipcap_config=config,
                               experts=params, tokenizer=_Stop(), beam=beam, max_tokens=max_tokens)
    return clip, experts, critic


def main(argv=None) -> int:
    args = parse_args(argv)
    import jax
    import numpy as np
    import torch

    from benchmarks.clipcap_torch import released_beam_search

    if args.threads:
        torch.set_num_threads(args.threads)
    stop = 13  # GPT-2's "."
    clip, experts, critic = build(args.size, stop, args.beam, args.max_tokens)
    size = SIZES[args.size]["image_size"]
    pixels = np.random.default_rng(0).integers(0, 256, (args.images, size, size, 3), dtype=np.uint8)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)

    def torch_features():
        x = (torch.tensor(pixels, dtype=torch.float32).permute(0, 3, 1, 2) / 255.0 - mean) / std
        return torch.nn.functional.normalize(clip.encode_image(x), dim=-1)

    @torch.no_grad()
    def run_released():
        feats = torch_features()
        return {a: [released_beam_search(m, m.clip_project(feats[i:i + 1]), args.beam, args.max_tokens, stop)[0]
                    for i in range(len(feats))] for a, m in experts.items()}

    @torch.no_grad()
    def run_generate():
        feats = torch_features()
        return {a: m.gpt.generate(inputs_embeds=m.clip_project(feats), num_beams=args.beam, do_sample=False,
                                  max_new_tokens=args.max_tokens, eos_token_id=stop, pad_token_id=0)
                for a, m in experts.items()}

    def run_jax():
        return critic.tokens(pixels)

    t0 = time.perf_counter()
    tokens, lengths = run_jax()
    first = time.perf_counter() - t0
    print(f"jax first call (compile + run) {first:.1f}s on {jax.default_backend()}", flush=True)
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    if "released" in peers:  # same network: the first image's critiques agree token for token
        with torch.no_grad():
            feats = torch_features()
            for e, (a, m) in enumerate(experts.items()):
                want = released_beam_search(m, m.clip_project(feats[:1]), args.beam, args.max_tokens, stop)[0]
                got = tokens[e, 0, :lengths[e, 0]].tolist()
                if got != want:
                    print(f"token mismatch for expert {a}: jax {got} vs torch {want}", file=sys.stderr)
                    return 1
        print("first image: JAX and the released torch beam search give the same tokens for all four experts")
    sides = {"jax": run_jax, **{f"torch-{p}": {"released": run_released, "generate": run_generate}[p] for p in peers}}
    if "generate" in peers:
        run_generate()  # warm-up (the released path was warmed by the check above)
    times = {name: [] for name in sides}
    order = list(sides)
    for r in range(args.rounds):
        for name in (order if r % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            sides[name]()
            times[name].append(time.perf_counter() - t0)
            print(f"round {r}: {name} {times[name][-1]:.2f}s", flush=True)
    n = args.images * len(ATTRIBUTES)
    print(f"\n| side | images | critiques | beam | max tokens | s per window (median) | min | max | critiques/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    results = {"size": args.size, "images": args.images, "beam": args.beam, "max_tokens": args.max_tokens,
               "jax_first_call_s": first, "backend": jax.default_backend(), "torch_threads": torch.get_num_threads(),
               "sides": {}}
    for name, ts in times.items():
        med = statistics.median(ts)
        results["sides"][name] = {"seconds": ts, "median_s": med, "critiques_per_s": n / med}
        print(f"| {name} | {args.images} | {n} | {args.beam} | {args.max_tokens} | {med:.2f} | {min(ts):.2f} | "
              f"{max(ts):.2f} | {n / med:.3f} |")
    for name in times:
        if name != "jax":
            ratio = results["sides"]["jax"]["critiques_per_s"] / results["sides"][name]["critiques_per_s"]
            results[f"ratio_jax_over_{name}"] = ratio
            print(f"ratio jax / {name}: {ratio:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
