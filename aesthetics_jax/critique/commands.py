"""``aesthetics-jax critique`` and ``aesthetics_jax.critique(...)``: attribute critiques of images.

    aesthetics-jax critique photos/ --model cgiaa_critic [--attributes color,dof] [--beam 5]
                            [--method beam|greedy|top_p] [--top-p 0.8] [--max-tokens 67]
                            [--format json|csv] [--batch-size 8] [--recursive] [--quiet]

    import aesthetics_jax
    aesthetics_jax.critique("photos/", model="cgiaa_critic")
    # [{'image': 'photos/a.jpg', 'critiques': {'color': '...', 'composition': '...', 'dof': '...',
    #   'general': '...'}}, ...]

`--model` is a bundle holding critique experts (`aesthetics-jax convert --from cgiaa DIR --out
OUT`, or a bundle with a scorer and experts) or its local registry name. Images are read and
checked exactly as `predict` reads them (per-item errors: one bad file yields
``{'image', 'error'}`` and the rest of the batch is critiqued; exit status 1 when any failed), then
the bundle's input transform (CG-IAA: torchvision ``Resize((224, 224))``). All experts critique a
batch in one compiled call (`critique.critic`); decoding defaults come from the bundle (CG-IAA's:
beam 5, at most 67 tokens, stop at "."). CSV columns: image, one per attribute, error.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from aesthetics_jax import predict as predict_lib


class CritiquePredictor:
    """A critic behind `predict`'s predictor interface (``prepare``, ``predict_batch``,
    ``format_item``, ``csv_header``), so `predict.iter_predict` drives it with the same reading,
    batching and per-item errors."""

    backend = "jax"

    def __init__(self, model, *, batch_size: int = 8, attributes=None, **decoding):
        from aesthetics_jax.critique import critic as critic_lib
        from aesthetics_jax.export import bundle as bundle_lib

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.bundle = (model if isinstance(model, bundle_lib.Bundle)
                       else bundle_lib.load(predict_lib.resolve_model(model), load_variables=False))
        self.critic = critic_lib.Critic.from_bundle(self.bundle, attributes=attributes, **decoding)
        self.transform = self.bundle.transform
        self.attributes = self.critic.attributes

    def prepare(self, source, *, max_pixels: int, lenient: bool) -> np.ndarray:
        return predict_lib._prepare(source, self.transform, max_pixels=max_pixels, lenient=lenient)

    def predict_batch(self, batch, augmented: bool = False) -> dict:
        if augmented:
            raise ValueError("critiques have no augmented mode")
        return {"critiques": self.critic.critique_resized(batch, self.batch_size)}

    def format_item(self, image_id: str, out: dict, i: int) -> dict:
        return {"image": image_id, "critiques": out["critiques"][i]}

    def csv_header(self) -> list[str]:
        return ["image", *(f"critiques.{a}" for a in self.attributes), "error"]


def critique(images, model, *, attributes=None, batch_size: int = 8, recursive: bool = False, max_pixels=None,
             lenient: bool = False, **decoding) -> list[dict]:
    """Critiques of ``images`` (a path, a directory, a list of paths, arrays) by the experts of
    ``model`` (module docstring); ``decoding``: method, beam, max_tokens, temperature, top_p, seed."""
    predictor = model if isinstance(model, CritiquePredictor) else CritiquePredictor(
        model, batch_size=batch_size, attributes=attributes, **decoding)
    return list(predict_lib.iter_predict(images, predictor, recursive=recursive, max_pixels=max_pixels,
                                         lenient=lenient))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aesthetics-jax critique",
                                     description="Attribute critiques of images by a bundle's ClipCap experts.")
    parser.add_argument("paths", nargs="+", help="image files and/or directories")
    parser.add_argument("--model", required=True, help="bundle with critique experts (or its registry name)")
    parser.add_argument("--attributes", default=None, help="comma-separated subset, e.g. color,dof (default: all)")
    parser.add_argument("--method", choices=("beam", "greedy", "top_p"), default=None, help="default: the bundle's (beam)")
    parser.add_argument("--beam", type=int, default=None, help="beam width (default: the bundle's, 5)")
    parser.add_argument("--max-tokens", type=int, default=None, help="default: the bundle's (67)")
    parser.add_argument("--top-p", type=float, default=None, help="--method top_p: nucleus mass (default 0.8)")
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None, help="--method top_p: sampling seed")
    parser.add_argument("--format", choices=("json", "csv"), default="json", help="json: one object per line")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--recursive", action="store_true")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--no-cache", action="store_true", help="do not use JAX's persistent compilation cache")
    parser.add_argument("--max-pixels", type=int, default=None)
    parser.add_argument("--lenient", action="store_true")
    args = parser.parse_args(argv)

    from aesthetics_jax.export.bundle import BundleError

    attributes = [a.strip() for a in args.attributes.split(",") if a.strip()] if args.attributes else None
    try:
        if not args.no_cache:
            predict_lib.enable_compilation_cache()
        predictor = CritiquePredictor(args.model, batch_size=args.batch_size, attributes=attributes,
                                      method=args.method, beam=args.beam, max_tokens=args.max_tokens,
                                      top_p=args.top_p, temperature=args.temperature, seed=args.seed)
    except (BundleError, FileNotFoundError, ValueError) as e:
        print(f"aesthetics-jax critique: {e}", file=sys.stderr)
        return 2
    items = predict_lib._expand(args.paths, args.recursive)
    progress = predict_lib._Progress(len(items), not args.quiet, label="critique")
    header = predictor.csv_header() if args.format == "csv" else None
    if header:
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
    done = errors = 0
    for item in predict_lib.iter_predict([p for _, p in items], predictor, max_pixels=args.max_pixels,
                                         lenient=args.lenient):
        errors += "error" in item
        done += 1
        if header:
            writer.writerow(predict_lib._csv_row(item, header))
        else:
            sys.stdout.write(json.dumps(item) + "\n")
        sys.stdout.flush()
        progress.update(done, errors)
    progress.update(done, errors, final=True)
    return 1 if errors else 0
