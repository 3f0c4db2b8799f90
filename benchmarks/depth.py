"""Depth map throughput: `modalities.depth.DepthMap` (transformers + torch), images/s.

    .venv/bin/python benchmarks/depth.py [--images 16] [--batch 1 4] [--rounds 3]      # tiny model, CPU
    .venv/bin/python benchmarks/depth.py --model_dir DIR --device cuda [--dtype float16] [--batch 1 4 16]

Photos: 500x375 (W x H) uint8 RGB crops of scikit-image's bundled photographs, made exactly as
benchmarks/spectral.py makes them, cycled to `--images`.

Model: with no --model_dir, a tiny randomly initialised Depth Anything (DINOv2 backbone, 4 layers
of width 32, patch 14; the test suite's model) saved to a temporary directory, with the released
Depth Anything V2 preprocessing (518, keep aspect, multiple of 14: network input 518 x 392 for
these photos). Its network is negligible next to a real ViT-S/B/L, so this measures the producer's
own cost (Pillow resize, normalisation, bicubic resize back, min-max) plus a small forward; a real
checkpoint's speed is measured with --model_dir (a local directory; nothing is downloaded).

Timed: `compute_maps(producer, photos, batch_size=b)` with the producer built with batch_size=b
(stacking included) to numpy maps in hand; one untimed warm-up pass per batch size. Each of
`rounds` rounds reports one pass; the table gives the best round and every round, and the per-image
split of the best round's batch into pre-processing (steps 2-5), forward (step 6, `_forward`) and
post-processing (steps 7-8) measured by calling those steps directly. On CUDA the forward is
synchronised before the clock stops (the `.cpu()` in `_forward` waits for the device).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np


def tiny_checkpoint(model_dir: str) -> None:
    """Writes the tiny random Depth Anything checkpoint + Depth Anything V2's preprocessor config."""
    import torch
    import transformers

    torch.manual_seed(0)
    backbone = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, mlp_ratio=2,
                                         image_size=56, patch_size=14, out_indices=[1, 2, 3, 4],
                                         reshape_hidden_states=False)
    config = transformers.DepthAnythingConfig(backbone_config=backbone, patch_size=14, reassemble_hidden_size=32,
                                              neck_hidden_sizes=[8, 16, 16, 32], fusion_hidden_size=16,
                                              head_hidden_size=8)
    transformers.DepthAnythingForDepthEstimation(config).save_pretrained(model_dir)
    with open(os.path.join(model_dir, "preprocessor_config.json"), "w") as f:
        json.dump({"image_processor_type": "DPTImageProcessor", "do_resize": True,
                   "size": {"height": 518, "width": 518}, "keep_aspect_ratio": True, "ensure_multiple_of": 14,
                   "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                   "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "do_pad": False}, f)


def split_times(producer, batch: np.ndarray) -> tuple[float, float, float]:
    """Seconds for pre-processing, forward and post-processing of one stacked batch, step by step."""
    from aesthetics_jax.modalities import depth

    height, width = batch.shape[1:3]
    start = time.perf_counter()
    pixels = depth.preprocess(depth.to_uint8(batch), producer.preprocessing, producer.network_size(height, width))
    mid = time.perf_counter()
    predicted = depth._forward(producer._model, pixels)  # pylint: disable=protected-access
    end = time.perf_counter()
    depth.normalize_depth(depth.resize_bicubic(predicted, (height, width)), True, producer.polarity)
    return mid - start, end - mid, time.perf_counter() - end


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", default=None, help="a local checkpoint directory (default: a tiny random one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, root)
    sys.path.insert(0, os.path.join(root, "benchmarks"))
    import torch
    import transformers
    from spectral import HEIGHT, WIDTH, photos   # benchmarks/spectral.py: the same photos

    from aesthetics_jax import modalities

    pool = photos()
    images = [pool[i % len(pool)] for i in range(args.images)]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        if model_dir is None:
            model_dir = os.path.join(tmp, "tiny-depth-anything")
            tiny_checkpoint(model_dir)
        load_before = os.getloadavg()
        results, splits = {}, {}
        for batch in args.batch:
            producer = modalities.create("depth", model_dir=model_dir, batch_size=batch, device=args.device,
                                         dtype=args.dtype)
            modalities.compute_maps(producer, images, batch_size=batch)          # warm-up
            for _ in range(args.rounds):
                start = time.perf_counter()
                maps = modalities.compute_maps(producer, images, batch_size=batch)
                results.setdefault(batch, []).append(len(images) / (time.perf_counter() - start))
                del maps
            stacked = np.stack(images[:batch])
            splits[batch] = min((split_times(producer, stacked) for _ in range(args.rounds)), key=sum)
        load_after = os.getloadavg()
        meta = producer.metadata()

    command = " ".join([".venv/bin/python", "benchmarks/depth.py", *(argv if argv is not None else sys.argv[1:])])
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"{os.cpu_count()} CPUs"
    print(f"`{command}`\n")
    print(f"{device}, torch {torch.__version__} ({torch.get_num_threads()} threads), transformers "
          f"{transformers.__version__}; {meta['model_class']} "
          f"({'tiny random' if args.model_dir is None else args.model_dir}), {args.dtype}; {len(images)} photos of "
          f"{WIDTH}x{HEIGHT} -> network {producer.network_size(HEIGHT, WIDTH)[1]}x"
          f"{producer.network_size(HEIGHT, WIDTH)[0]}; load average before "
          f"{', '.join(f'{x:.2f}' for x in load_before)}, after {', '.join(f'{x:.2f}' for x in load_after)}\n")
    print(f"| batch | images/s (best of {args.rounds}) | rounds | ms/image | pre / forward / post ms/image |")
    print("|---|---|---|---|---|")
    for batch, values in results.items():
        best = max(values)
        pre, forward, post = (1000 * t / batch for t in splits[batch])
        print(f"| {batch} | {best:.1f} | {', '.join(f'{v:.1f}' for v in values)} | {1000 / best:.1f} | "
              f"{pre:.1f} / {forward:.1f} / {post:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
