"""Explanation speed on the CPU: this project's `Explainer` vs pytorch-grad-cam, in one run.

    .venv/bin/python benchmarks/explain.py [--size 299] [--batch 16] [--repeats 3] [--clip]

InceptionV3 (torchvision layout, random weights: torchvision's `inception_v3(weights=None)` with a
6-output linear head, converted with this project's converter, so both sides run the same
network) at `--size`² px, six regression outputs, a batch of `--batch` images. pytorch-grad-cam
1.5.7 (`GradCAM`, target layer `Mixed_7c`) needs one call per output (its API takes one target per
image); `Explainer(methods=['gradcam'])` computes all six outputs' maps in one jitted call. Each
round times both in turn (one warm-up each first: JAX compiles there, the compile time is
printed); the table gives images x outputs / s of the best round and the ratio, plus the max
|difference| of the maps (they must agree: tests/test_cam.py checks 1e-4). With `--clip`, also the
GradCAM throughput of CLIP ViT-B/16 (random weights, 224 px, the last block's ln_1) with six
outputs. Prints the command, the load average, the core count and the versions.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aesthetics_jax import models  # noqa: E402
from aesthetics_jax.convert import torchvision as tv_convert  # noqa: E402
from aesthetics_jax.explain import cam  # noqa: E402
from aesthetics_jax.models import preprocessing  # noqa: E402

NAMES = ["total", "difficulty", "visual", "composition", "quality", "semantic"]
HEADS = {"scores": {"type": "scores", "names": NAMES}}


def _inception(tmp: str, size: int):
    import torch
    import torchvision

    torch.manual_seed(0)
    ref = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=True, transform_input=False)
    ref.fc = torch.nn.Linear(2048, 6)
    ref.eval()
    path = os.path.join(tmp, "inception.pth")
    torch.save({k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}, path)
    model = models.create("inception", heads=HEADS, layout="torchvision", preprocess="torch")
    variables, _ = tv_convert.load_torchvision_file(path, model, dont_load=["^scores/"], image_size=size)
    variables = jax.tree_util.tree_map(np.asarray, variables)
    variables["params"]["scores"]["dense"]["kernel"] = ref.fc.weight.detach().numpy().T.copy()
    variables["params"]["scores"]["dense"]["bias"] = ref.fc.bias.detach().numpy().copy()
    return ref, model, variables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=299)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clip", action="store_true", help="also CLIP ViT-B/16 GradCAM throughput")
    args = parser.parse_args()
    import tempfile

    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        ref, model, variables = _inception(tmp, args.size)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (args.batch, args.size, args.size, 3)).astype(np.float32)
    x = torch.from_numpy(np.array(preprocessing.normalize(images, "torch"))).permute(0, 3, 1, 2).contiguous()
    explainer = cam.Explainer(model, variables, methods=["gradcam"])
    reference = GradCAM(model=ref, target_layers=[ref.Mixed_7c])

    def ours():
        return explainer(images).maps["gradcam"]

    def theirs():
        return np.stack([reference(input_tensor=x, targets=[ClassifierOutputTarget(k)] * args.batch)
                         for k in range(len(NAMES))], axis=1)

    start = time.perf_counter()
    first = ours()
    compile_s = time.perf_counter() - start
    expected = theirs()
    times = {"jax": [], "pytorch-grad-cam": []}
    for _ in range(args.repeats):
        for name, fn in (("jax", ours), ("pytorch-grad-cam", theirs)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    work = args.batch * len(NAMES)
    best = {k: min(v) for k, v in times.items()}
    print(f"command: {' '.join(sys.argv)}")
    print(f"cores {os.cpu_count()}, load {load_before} -> {os.getloadavg()}, jax {jax.__version__}, "
          f"torch {torch.__version__}")
    print(f"InceptionV3 {args.size}px, batch {args.batch}, {len(NAMES)} outputs; JAX first call (compile) "
          f"{compile_s:.1f} s; max |map difference| {np.abs(first - expected).max():.2e}")
    print("| implementation | best s / batch | images x outputs / s | vs pytorch-grad-cam |")
    print("|---|---:|---:|---:|")
    for name in ("pytorch-grad-cam", "jax"):
        print(f"| {name} | {best[name]:.2f} | {work / best[name]:.1f} | {best['pytorch-grad-cam'] / best[name]:.2f}x |")
    if args.clip:
        clip_model = models.create("clip", heads=HEADS, variant="vit_b16")
        clip_vars = clip_model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)), train=False)
        clip_explainer = cam.Explainer(clip_model, clip_vars, methods=["gradcam"])
        clip_images = rng.uniform(0, 255, (args.batch, 224, 224, 3)).astype(np.float32)
        start = time.perf_counter()
        clip_explainer(clip_images)
        compile_s = time.perf_counter() - start
        best_clip = min(_timed(lambda: clip_explainer(clip_images)) for _ in range(args.repeats))
        print(f"CLIP ViT-B/16 224px, batch {args.batch}, 6 outputs, GradCAM at resblocks_11/ln_1: first call "
              f"{compile_s:.1f} s, best {best_clip:.2f} s / batch = {work / best_clip:.1f} images x outputs / s")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
