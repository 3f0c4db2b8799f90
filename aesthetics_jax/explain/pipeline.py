"""One batch of prepared pixels -> maps, human reference, agreement and faithfulness (shared by the
``aesthetics-jax explain`` command and the ``explain`` evaluator).

The human reference (``parse_saliency``): ``spectral`` / ``spectral:hou2007`` / ``msinet:DIR``
computed on the pixels the model saw; ``maps:DIR`` (density) or ``fixations:DIR`` (binary) read as
``DIR/<stem>.png`` (8 or 16 bit) and put through the model's inference transform, so the map is
aligned with those pixels. A reference with nothing to agree with (a constant map: a flat image)
gives NaN metrics and ``agreement_error`` for that image, never an exception. Agreement scores
every map against the reference with
``agreement.score``, beside the centre-bias and uniform baselines scored once per image (one seed
per image for all its maps: paired);
sAUC takes its negatives from the *other* images' fixations in the batch (NaN for a batch of one).
Faithfulness runs deletion, insertion and ROAD for every (method, output) map, and the same
protocols on seeded random maps (chance level). Beside RISE's normalised AUCs (``deletion_auc``,
``insertion_auc``: the curve divided by f(x) - f(x_full), which explodes for a regression output
whose score barely moves between the image and its fully deleted / blurred version) two measures
in score units that stay finite: ``deletion_change`` = the area under |f(x_t) - f(x)| along the
deletion curve (higher: the map's top pixels move the score sooner) and ``insertion_gap`` = the
area under |f(x) - f(x_t)| along the insertion curve (lower: the map's top pixels restore it
sooner); ROAD's ``road_morf`` / ``road_lerf`` are mean absolute changes too.
"""

from __future__ import annotations

import functools
import os
from typing import Sequence

import numpy as np

__all__ = ["SALIENCY_KINDS", "parse_saliency", "Reference", "explain_batch", "AGREEMENT_COLUMNS", "FAITH_COLUMNS"]

SALIENCY_KINDS = ("spectral", "msinet", "maps", "fixations")
AGREEMENT_COLUMNS = ("auc_judd", "auc_borji", "auc_shuffled", "nss", "cc", "sim", "kld")
_FAITH = ("deletion_auc", "insertion_auc", "deletion_change", "insertion_gap", "road_morf", "road_lerf")
FAITH_COLUMNS = _FAITH + tuple("random_" + name for name in _FAITH)


def parse_saliency(spec: str | None) -> tuple[str, str] | None:
    """``'msinet:DIR'`` -> ``('msinet', 'DIR')``; None / '' / 'none' -> None."""
    if not spec or spec == "none":
        return None
    kind, _, arg = spec.partition(":")
    if kind not in SALIENCY_KINDS:
        raise ValueError(f"saliency {spec!r}: kind must be one of {SALIENCY_KINDS} (e.g. spectral, msinet:DIR)")
    if kind in ("msinet", "maps", "fixations") and not arg:
        raise ValueError(f"saliency {kind}:DIR needs a directory")
    return kind, arg


class Reference:
    """The human saliency of a batch: computed on the model's pixels, or read from a folder."""

    def __init__(self, spec: str | None, transform: dict):
        self.spec, self.transform, self.producer = parse_saliency(spec), transform, None
        self.kind = "fixations" if self.spec and self.spec[0] == "fixations" else "density"
        if self.spec and self.spec[0] in ("spectral", "msinet"):
            from aesthetics_jax import modalities  # pylint: disable=g-import-not-at-top

            kind, arg = self.spec
            params = {"weights": arg} if kind == "msinet" else ({"variant": arg} if arg else {})
            self.producer = modalities.create(kind, **params)

    @property
    def from_files(self) -> bool:
        return self.spec is not None and self.producer is None

    def read(self, stem: str) -> np.ndarray:
        """The transformed map ``DIR/<stem>.png``; ValueError (missing_map / empty_fixations) if unusable."""
        import cv2  # pylint: disable=g-import-not-at-top

        from aesthetics_jax.data.preprocessing import apply_transform  # pylint: disable=g-import-not-at-top

        path = os.path.join(self.spec[1], f"{stem}.png")
        raw = cv2.imread(path, cv2.IMREAD_UNCHANGED) if os.path.isfile(path) else None
        if raw is None:
            raise ValueError(f"missing_map: no readable map {path}")
        if raw.ndim == 3:
            raw = raw[..., 0]
        value = raw.astype(np.float32) / (65535.0 if raw.dtype == np.uint16 else 255.0)
        out = apply_transform(np.repeat(value[..., None] * 255.0, 3, axis=2), self.transform)[..., 0] / 255.0
        if self.kind == "fixations":
            out = (out >= 0.5).astype(np.float32)
            if not out.any():
                raise ValueError(f"empty_fixations: {path} has no fixation after the transform")
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def compute(self, pixels: np.ndarray) -> list[np.ndarray]:
        return list(np.asarray(self.producer(np.asarray(pixels, np.float32)), np.float32))


def explain_batch(explainer, pixels: np.ndarray, *, humans: Sequence[np.ndarray | None] | None = None,
                  reference: Reference | None = None, faithfulness_fn=None, faithfulness_steps: int = 16,
                  seed: int = 0, pad_to: int | None = None) -> list[dict]:
    """Explains float pixels [N, S, S, 3]; one dict per image (``commands.explain`` documents the keys).

    ``humans``: the reference maps (from files), or None to compute them with ``reference``'s
    producer. ``faithfulness_fn``: a jitted ``images -> [N, K]`` of the explained outputs (None:
    skip). ``pad_to``: pad the batch to this many images (fewer compiled shapes).
    """
    n = len(pixels)
    batch = np.asarray(pixels, np.float32)
    if pad_to and n < pad_to:
        batch = np.concatenate([batch, np.zeros((pad_to - n, *batch.shape[1:]), np.float32)])
    explanation = explainer(batch)
    names = [o.name for o in explanation.outputs]
    if humans is None:
        humans = reference.compute(batch[:n]) if reference is not None and reference.spec else [None] * n
    results = []
    for i in range(n):
        results.append(dict(
            pixels=np.clip(np.rint(pixels[i]), 0, 255).astype(np.uint8), saliency=humans[i],
            predictions={name: float(explanation.predictions[i, j]) for j, name in enumerate(names)},
            maps={m: {name: explanation.maps[m][i, j] for j, name in enumerate(names)} for m in explanation.maps},
            raw={m: {name: explanation.raw[m][i, j] for j, name in enumerate(names)} for m in explanation.raw},
            flat={m: {name: bool(explanation.flat[m][i, j]) for j, name in enumerate(names)} for m in explanation.flat}))
    if reference is not None and reference.spec:
        _score_agreement(results, reference.kind, seed)
    if faithfulness_fn is not None:
        _score_faithfulness(results, faithfulness_fn, names, faithfulness_steps, seed)
    return results


def _score_agreement(results: list[dict], kind: str, seed: int) -> None:
    """Adds ``agreement`` {method: {output: metrics}} and ``baselines`` to every result."""
    from aesthetics_jax.explain import agreement  # pylint: disable=g-import-not-at-top

    fixations, problems = [], {}
    for i, r in enumerate(results):
        try:
            fixations.append(r["saliency"] > 0.5 if kind == "fixations"
                             else agreement.fixations_from_density(r["saliency"]))
        except ValueError as e:  # e.g. a constant reference map (a flat image): nothing to agree with
            fixations.append(None)
            problems[i] = str(e)
    for i, r in enumerate(results):
        r["agreement"], r["baselines"] = {}, {}
        if i in problems:
            nan = {name: float("nan") for name in AGREEMENT_COLUMNS}
            r["agreement"] = {method: {name: dict(nan) for name in maps} for method, maps in r["maps"].items()}
            r["agreement_error"] = problems[i]
            continue
        others = [f for j, f in enumerate(fixations) if j != i and f is not None]
        other = np.any(np.stack(others), axis=0) if others else None
        if other is not None and not other.any():
            other = None
        # One seed per image for every map of it (the model's and the baselines'): paired random negatives.
        score = functools.partial(agreement.score, reference=r["saliency"], kind=kind, other_fixations=other,
                                  rng=seed + i)
        shape = r["saliency"].shape
        r["baselines"] = {"center_bias": score(agreement.center_bias_map(shape)),
                          "uniform": score(agreement.uniform_map(shape))}
        r["agreement"] = {method: {name: score(heat) for name, heat in maps.items()}
                          for method, maps in r["maps"].items()}


def _score_faithfulness(results: list[dict], predict_fn, names: Sequence[str], steps: int, seed: int) -> None:
    """Adds ``faithfulness`` {method: {output: {...}}} to every result (module docstring)."""
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

    from aesthetics_jax.explain import faithfulness as faith  # pylint: disable=g-import-not-at-top

    images = jnp.asarray(np.stack([r["pixels"] for r in results]).astype(np.float32))
    for r in results:
        r["faithfulness"] = {}
    for mi, method in enumerate(results[0]["maps"]):
        for j, name in enumerate(names):
            maps = jnp.asarray(np.stack([r["maps"][method][name] for r in results]))
            key = jax.random.fold_in(jax.random.key(seed), mi * len(names) + j)
            rmaps = faith.random_maps(jax.random.fold_in(key, 1), maps.shape)
            found = {}
            for prefix, m, road_key in (("", maps, key), ("random_", rmaps, jax.random.fold_in(key, 2))):
                deletion = faith.deletion_curve(predict_fn, images, m, num_steps=steps, output=j)
                insertion = faith.insertion_curve(predict_fn, images, m, num_steps=steps, output=j)
                road = faith.road(predict_fn, images, m, road_key, output=j)
                change = jnp.abs(deletion.scores - deletion.scores[:, :1])
                gap = jnp.abs(insertion.scores[:, -1:] - insertion.scores)
                found.update({prefix + "deletion_auc": deletion.auc, prefix + "insertion_auc": insertion.auc,
                              prefix + "deletion_change": faith.trapezoid_auc(change, deletion.fractions),
                              prefix + "insertion_gap": faith.trapezoid_auc(gap, insertion.fractions),
                              prefix + "road_morf": road.morf, prefix + "road_lerf": road.lerf})
            for i, r in enumerate(results):
                r["faithfulness"].setdefault(method, {})[name] = {k: float(v[i]) for k, v in found.items()}
