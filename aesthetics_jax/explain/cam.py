"""Class-activation maps (the Grad-CAM family) and pixel attributions for every output of a model.

    explainer = Explainer(model, variables, methods=("gradcam", "hirescam"), outputs=("total", "quality"))
    result = explainer(images)        # float [N, H, W, 3] pixels in [0, 255], the model's input size
    result.maps["gradcam"]            # [N, K, H, W] in [0, 1], one map per (image, output)
    result.raw["gradcam"]             # [N, K, h, w] normalised maps at the layer's resolution
    result.flat["gradcam"]            # [N, K] bool: the map had no positive evidence (zero map)

All outputs of a model come from **one jitted call**: the forward pass runs once, `jax.vjp` gives
the pullback, and the pullback is `vmap`ped over the K output cotangents (one-hot per output,
summed over the batch -- images are independent, so each image's gradient is its own). No hooks.

Outputs (`model_outputs`): every scalar the heads produce -- `scores` columns by name (EVA's total,
difficulty, visual, composition, quality, semantic), the EMD head's `mean` and `sd`, each
`attributes` name and `overall` -- named by their own name, or `<head>.<name>` where two heads
share a name. Distributions and logits are not targets.

Layers (`layer`):
  None (default)  CNN backbones (MobileNet v1/v2, InceptionV3): the backbone's `feature_map` (the
                  last conv block / last mixed block, i.e. torchvision's `features[-1]` /
                  `Mixed_7c`), through `heads_from_feature_map` (global average pool -> heads),
                  the exact map from that tensor to the outputs. CLIP: `backbone/resblocks_{L-1}/ln_1`
                  (norm1 of the last block, pytorch-grad-cam's usual ViT layer).
  "a/b/c"         any Flax module path (e.g. `backbone/conv2d_93`, `backbone/Conv_1_bn`,
                  `backbone/resblocks_10/ln_1`): its `__call__` output is captured and perturbed
                  through `flax.linen.intercept_methods` (the module must be called exactly once).
                  Token outputs [B, T, D] of a ViT are reshaped to the patch grid: the class
                  token (and any padding tokens) dropped, [B, g, g, D].

Methods (formulas as pytorch-grad-cam 1.5.7, `grad-cam` on PyPI; A = activations [h, w, C] of one
image, g = d output / d A; sums over i, j are spatial):
  gradcam     w_c = mean_ij g;                      cam = sum_c w_c A_c
  gradcam++   a = g^2 / (2 g^2 + (sum_ij A) g^3 + 1e-6), 0 where g = 0;  w_c = sum_ij relu(g) a
  xgradcam    w_c = sum_ij g A / (sum_ij A + 1e-7)
  hirescam    cam = sum_c g_c * A_c (elementwise)
  layercam    cam = sum_c relu(g_c) * A_c
  eigencam    cam = (A' v1), A' = A as [hw, C] minus its column means, v1 = the first right singular
              vector (no gradient: one map for all outputs). The SVD's sign is arbitrary (the
              reference keeps LAPACK's); here it is fixed so that the map correlates positively
              with the channel sum of A, i.e. it points to where activations are high.
then cam = relu(cam) and cam = (cam - min) / (max(cam - min) + 1e-7) per image and output, exactly
as pytorch-grad-cam's `scale_cam_image`. A map with no positive evidence (all of relu(cam) equal:
all-negative or flat) is the zero map -- never NaN -- and is flagged in `flat`. The normalised map
is resized to the input with bilinear interpolation (half-pixel centres, edge clamped: OpenCV's
`INTER_LINEAR`, which pytorch-grad-cam uses) and scaled to [0, 1] once more (the resized peak falls
between samples; pytorch-grad-cam's final `scale_cam_image` does the same), so `maps` is `raw`
resized and rescaled.

Pixel attributions (beside the CAMs; [N, K, H, W], channel-reduced, then scaled to [0, 1] by
their per-map max of |.|):
  gradient              |d output / d pixel|, max over RGB (Simonyan et al. 2014)
  smoothgrad            the gradient averaged over `smoothgrad_samples` copies with Gaussian noise
                        of sd `smoothgrad_sigma` x 255 (Smilkov et al. 2017: 10-20 % of the range),
                        then |.| max over RGB
  integrated_gradients  (x - x') * mean_{alpha} grad(x' + alpha (x - x')) with `ig_steps` midpoint
                        alphas (Sundararajan et al. 2017), summed over RGB (signed: the sum over
                        pixels approximates f(x) - f(x')), baseline x' = black (zeros)
  integrated_gradients_blur   the same from a Gaussian-blurred baseline (sigma `ig_blur_sigma` px,
                        `faithfulness.gaussian_blur`: the insertion protocol's blur)
`result.attributions[method]` keeps the signed, unscaled per-pixel values for these.

Batch norm runs in inference mode and dropout is off (``train=False``).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["CAM_METHODS", "PIXEL_METHODS", "METHODS", "Output", "model_outputs", "select_outputs", "gather_outputs",
           "Explainer", "Explanation", "default_layer", "cam_from_gradients", "eigen_cam", "normalize_cams",
           "resize_maps"]

CAM_METHODS = ("gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigencam")
PIXEL_METHODS = ("gradient", "smoothgrad", "integrated_gradients", "integrated_gradients_blur")
METHODS = CAM_METHODS + PIXEL_METHODS
_EPS_SCALE = 1e-7
_EPS_PLUSPLUS = 1e-6
_EPS_XGRAD = 1e-7


@dataclasses.dataclass(frozen=True)
class Output:
    """One scalar output of a model: `outputs[head][key]` ([B]) or its column `index` ([B, k])."""

    name: str
    head: str
    key: str
    index: int | None = None


def model_outputs(heads: dict) -> list[Output]:
    """Every explainable scalar output of heads `{name: {'type': ..., ...}}` (module docstring)."""
    found: list[Output] = []
    for head, config in heads.items():
        kind = config.get("type")
        if kind == "emd":
            found += [Output("mean", head, "mean"), Output("sd", head, "sd")]
        elif kind == "scores":
            names = list(config.get("names") or [])
            count = int(config.get("num_outputs") or len(names))
            names = names or [f"score_{i}" for i in range(count)]
            found += [Output(n, head, "scores", i) for i, n in enumerate(names)]
        elif kind == "attributes":
            found += [Output(n, head, "attributes", i) for i, n in enumerate(config["names"])]
            found.append(Output("overall", head, "overall"))
        else:
            raise ValueError(f"head {head!r}: no explainable outputs known for type {kind!r}")
    counts: dict[str, int] = {}
    for o in found:
        counts[o.name] = counts.get(o.name, 0) + 1
    return [o if counts[o.name] == 1 else dataclasses.replace(o, name=f"{o.head}.{o.name}") for o in found]


def select_outputs(available: Sequence[Output], names: Sequence[str] | None) -> list[Output]:
    """The outputs called `names` (all if None / empty); `<head>.<name>` also accepted."""
    if not names:
        return list(available)
    by_name = {o.name: o for o in available}
    by_name.update({f"{o.head}.{o.name.split('.')[-1]}": o for o in available})
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown output(s) {unknown}; this model explains {[o.name for o in available]}")
    return [by_name[n] for n in names]


def default_layer(model) -> str | None:
    """None (the backbone feature map) for CNN backbones; the last block's ln_1 for CLIP."""
    backbone = model.backbone
    if type(backbone).__name__ == "CLIPVisionTransformer":
        return f"backbone/resblocks_{backbone.config.layers - 1}/ln_1"
    return None


def gather_outputs(outputs: dict, targets: Sequence[Output]) -> jax.Array:
    """[B, K] float32 of the target outputs."""
    columns = []
    for t in targets:
        value = outputs[t.head][t.key]
        columns.append(value if t.index is None else value[:, t.index])
    return jnp.stack(columns, axis=1).astype(jnp.float32)


def _tokens_to_grid(x: jax.Array, model) -> jax.Array:
    """ViT tokens [B, T, D] -> [B, g, g, D] (class and padding tokens dropped)."""
    config = model.backbone.config
    grid = config.image_size // config.patch_size
    return x[:, 1:1 + grid * grid].reshape(x.shape[0], grid, grid, x.shape[-1])


# --- the maps from activations and gradients ----------------------------------------------------


def cam_from_gradients(method: str, activations: jax.Array, gradients: jax.Array) -> jax.Array:
    """Unnormalised CAM [..., h, w] of `activations` A [B, h, w, C] and `gradients` g [..., B, h, w, C].

    Leading axes of g beyond A's (e.g. K outputs) broadcast. Before relu and scaling.
    """
    a = activations.astype(jnp.float32)
    g = gradients.astype(jnp.float32)
    spatial = (-3, -2)
    if method == "gradcam":
        weights = jnp.mean(g, axis=spatial, keepdims=True)
        return jnp.sum(weights * a, axis=-1)
    if method == "gradcam++":
        g2 = g * g
        g3 = g2 * g
        sum_a = jnp.sum(a, axis=spatial, keepdims=True)
        alpha = g2 / (2.0 * g2 + sum_a * g3 + _EPS_PLUSPLUS)
        alpha = jnp.where(g != 0, alpha, 0.0)
        weights = jnp.sum(jnp.maximum(g, 0.0) * alpha, axis=spatial, keepdims=True)
        return jnp.sum(weights * a, axis=-1)
    if method == "xgradcam":
        sum_a = jnp.sum(a, axis=spatial, keepdims=True)
        weights = jnp.sum(g * a / (sum_a + _EPS_XGRAD), axis=spatial, keepdims=True)
        return jnp.sum(weights * a, axis=-1)
    if method == "hirescam":
        return jnp.sum(g * a, axis=-1)
    if method == "layercam":
        return jnp.sum(jnp.maximum(g, 0.0) * a, axis=-1)
    raise ValueError(f"unknown gradient CAM method {method!r}; known: {CAM_METHODS[:-1]}")


def eigen_cam(activations: jax.Array) -> jax.Array:
    """EigenCAM [B, h, w]: projection on the first principal component (sign fixed, docstring)."""
    a = activations.astype(jnp.float32)
    b, h, w, c = a.shape
    flat = a.reshape(b, h * w, c)
    centred = flat - jnp.mean(flat, axis=1, keepdims=True)
    _, _, vt = jnp.linalg.svd(centred, full_matrices=False)
    projection = jnp.einsum("bpc,bc->bp", centred, vt[:, 0, :], precision=jax.lax.Precision.HIGHEST)
    reference = jnp.sum(flat, axis=-1)
    reference = reference - jnp.mean(reference, axis=1, keepdims=True)
    sign = jnp.where(jnp.sum(projection * reference, axis=1, keepdims=True) < 0, -1.0, 1.0)
    return (projection * sign).reshape(b, h, w)


def normalize_cams(cam: jax.Array) -> tuple[jax.Array, jax.Array]:
    """relu, then (x - min) / (max(x - min) + 1e-7) over the last two axes; (maps, flat flags)."""
    cam = jnp.maximum(cam, 0.0)
    cam = cam - jnp.min(cam, axis=(-2, -1), keepdims=True)
    peak = jnp.max(cam, axis=(-2, -1))
    flat = peak <= 0.0
    return cam / (peak[..., None, None] + _EPS_SCALE), flat


def resize_maps(maps: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bilinear resize of [..., h, w] maps to `size` (half-pixel centres, edges clamped)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return jax.image.resize(maps, maps.shape[:-2] + tuple(size), method="linear", antialias=False)


def _scale_abs(x: jax.Array) -> jax.Array:
    """[..., H, W] -> |x| / max |x| per map (0 for an all-zero map)."""
    x = jnp.abs(x)
    peak = jnp.max(x, axis=(-2, -1), keepdims=True)
    return jnp.where(peak > 0, x / jnp.where(peak > 0, peak, 1.0), 0.0)


# --- the explainer ------------------------------------------------------------------------------


@dataclasses.dataclass
class Explanation:
    """Maps of one batch: dicts keyed by method (see the module docstring for shapes)."""

    outputs: list[Output]
    predictions: np.ndarray                        # [N, K] the explained outputs' values
    maps: dict[str, np.ndarray]                    # [N, K, H, W] in [0, 1] (eigencam: K copies)
    raw: dict[str, np.ndarray]                     # CAMs: [N, K, h, w] normalised, before resizing
    flat: dict[str, np.ndarray]                    # CAMs: [N, K] bool
    attributions: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # pixel methods, signed


class Explainer:
    """All requested methods for all requested outputs of a model, one jitted call per batch.

    Args:
      model: an `AestheticsModel` (`models.create(...)`, `Bundle.create_model()`).
      variables: its variables (`params`, `batch_stats`).
      methods: names from `METHODS`.
      outputs: output names (`model_outputs`; None = all).
      layer: None (`default_layer`) or a Flax module path (module docstring).
      smoothgrad_samples, smoothgrad_sigma, ig_steps, ig_blur_sigma: pixel-method settings.
    """

    def __init__(self, model, variables, *, methods: Sequence[str] = ("gradcam",), outputs: Sequence[str] | None = None,
                 layer: str | None = None, smoothgrad_samples: int = 16, smoothgrad_sigma: float = 0.15,
                 ig_steps: int = 32, ig_blur_sigma: float = 10.0, seed: int = 0):
        unknown = [m for m in methods if m not in METHODS]
        if unknown or not methods:
            raise ValueError(f"unknown explanation method(s) {unknown or methods}; known: {list(METHODS)}")
        heads = {name: dict(config) for name, config in (model.heads.items() if hasattr(model.heads, "items")
                                                          else model.heads)}
        self.model, self.variables = model, variables
        self.methods = tuple(dict.fromkeys(methods))
        self.all_outputs = model_outputs(heads)
        self.outputs = select_outputs(self.all_outputs, outputs)
        self.layer = layer if layer is not None else default_layer(model)
        self.smoothgrad_samples, self.smoothgrad_sigma = int(smoothgrad_samples), float(smoothgrad_sigma)
        self.ig_steps, self.ig_blur_sigma = int(ig_steps), float(ig_blur_sigma)
        self.seed = int(seed)
        self._fn = jax.jit(self._explain)

    # -- activations and their pullback ----------------------------------------------------------

    def _feature_map_pullback(self, images):
        model, variables, targets = self.model, self.variables, self.outputs
        features = model.apply(variables, images, train=False, method=model.features)
        activations = features["feature_map"].astype(jnp.float32)

        def head(a):
            return gather_outputs(model.apply(variables, a, train=False, method=model.heads_from_feature_map), targets)

        predictions, pullback = jax.vjp(head, activations)
        return activations, predictions, pullback

    def _layer_pullback(self, images):
        model, variables, targets, path = self.model, self.variables, self.outputs, tuple(self.layer.split("/"))

        def run(delta):
            seen = []

            def interceptor(next_fun, args, kwargs, context):
                out = next_fun(*args, **kwargs)
                if context.method_name == "__call__" and tuple(context.module.path) == path:
                    seen.append(out)
                    if delta is not None:
                        out = out + delta.astype(out.dtype)
                return out

            with nn.intercept_methods(interceptor):
                outputs = model.apply(variables, images, train=False)
            if len(seen) != 1:
                raise ValueError(f"layer {self.layer!r}: the module ran {len(seen)} times in one forward pass "
                                 "(need exactly once; check the path, e.g. 'backbone/conv2d_93')")
            return gather_outputs(outputs, targets), seen[0].astype(jnp.float32)

        shape = jax.eval_shape(lambda: run(None)[1])
        predictions, pullback, activations = jax.vjp(run, jnp.zeros(shape.shape, jnp.float32), has_aux=True)
        return activations, predictions, pullback

    def _activations_and_gradients(self, images):
        """A [B, h, w, C] (float32), predictions [B, K], gradients [K, B, h, w, C]."""
        if self.layer is None:
            activations, predictions, pullback = self._feature_map_pullback(images)
        else:
            activations, predictions, pullback = self._layer_pullback(images)
        k = len(self.outputs)
        cotangents = jnp.broadcast_to(jnp.eye(k, dtype=jnp.float32)[:, None, :], (k,) + predictions.shape)
        gradients = jax.vmap(lambda ct: pullback(ct)[0])(cotangents)
        if activations.ndim == 3:  # ViT tokens
            activations = _tokens_to_grid(activations, self.model)
            gradients = jax.vmap(lambda g: _tokens_to_grid(g, self.model))(gradients)
        if activations.ndim != 4:
            raise ValueError(f"layer {self.layer!r}: activations of shape {activations.shape}; need [B, h, w, C] "
                             "or ViT tokens [B, T, D]")
        return activations, predictions, gradients

    def _input_gradients(self, images):
        """Pixel gradients [K, B, H, W, 3] of the outputs, and the predictions [B, K]."""
        model, variables, targets = self.model, self.variables, self.outputs

        def f(x):
            return gather_outputs(model.apply(variables, x, train=False), targets)

        predictions, pullback = jax.vjp(f, images)
        k = len(targets)
        cotangents = jnp.broadcast_to(jnp.eye(k, dtype=jnp.float32)[:, None, :], (k,) + predictions.shape)
        return jax.vmap(lambda ct: pullback(ct)[0])(cotangents), predictions

    def _integrated(self, images, baseline):
        alphas = (jnp.arange(self.ig_steps, dtype=jnp.float32) + 0.5) / self.ig_steps

        def step(total, alpha):
            grads, _ = self._input_gradients(baseline + alpha * (images - baseline))
            return total + grads, None

        k = len(self.outputs)
        total, _ = jax.lax.scan(step, jnp.zeros((k,) + images.shape, jnp.float32), alphas)
        return jnp.sum((images - baseline)[None] * total / self.ig_steps, axis=-1)  # [K, B, H, W]

    def _explain(self, images):
        images = images.astype(jnp.float32)
        size = images.shape[1:3]
        maps, raw, flat, attributions = {}, {}, {}, {}
        predictions = None
        cams = [m for m in self.methods if m in CAM_METHODS]
        if cams:
            activations, predictions, gradients = self._activations_and_gradients(images)
            for method in cams:
                if method == "eigencam":
                    cam = jnp.broadcast_to(eigen_cam(activations)[None], gradients.shape[:-1])
                else:
                    cam = cam_from_gradients(method, activations, gradients)       # [K, B, h, w]
                normalised, is_flat = normalize_cams(cam)
                raw[method] = jnp.swapaxes(normalised, 0, 1)
                flat[method] = jnp.swapaxes(is_flat, 0, 1)
                maps[method] = normalize_cams(resize_maps(raw[method], size))[0]
        if "gradient" in self.methods:
            grads, predictions = self._input_gradients(images)
            attributions["gradient"] = jnp.swapaxes(jnp.max(jnp.abs(grads), axis=-1), 0, 1)
        if "smoothgrad" in self.methods:
            keys = jax.random.split(jax.random.key(self.seed), self.smoothgrad_samples)

            def noisy(total, key):
                noise = jax.random.normal(key, images.shape, jnp.float32) * (self.smoothgrad_sigma * 255.0)
                grads, _ = self._input_gradients(images + noise)
                return total + grads, None

            total, _ = jax.lax.scan(noisy, jnp.zeros((len(self.outputs),) + images.shape, jnp.float32), keys)
            attributions["smoothgrad"] = jnp.swapaxes(jnp.max(jnp.abs(total / self.smoothgrad_samples), axis=-1), 0, 1)
        if "integrated_gradients" in self.methods:
            attributions["integrated_gradients"] = jnp.swapaxes(self._integrated(images, jnp.zeros_like(images)), 0, 1)
        if "integrated_gradients_blur" in self.methods:
            from aesthetics_jax.explain import faithfulness  # pylint: disable=g-import-not-at-top

            baseline = faithfulness.gaussian_blur(images, self.ig_blur_sigma)
            attributions["integrated_gradients_blur"] = jnp.swapaxes(self._integrated(images, baseline), 0, 1)
        for method, value in attributions.items():
            maps[method] = _scale_abs(value)
        if predictions is None:
            predictions = gather_outputs(self.model.apply(self.variables, images, train=False), self.outputs)
        return predictions, maps, raw, flat, attributions

    def __call__(self, images) -> Explanation:
        """Explains a batch of float pixels [N, H, W, 3] in [0, 255] at the model's input size."""
        predictions, maps, raw, flat, attributions = jax.device_get(self._fn(jnp.asarray(images, jnp.float32)))
        return Explanation(outputs=list(self.outputs), predictions=np.asarray(predictions),
                           maps={k: np.asarray(v) for k, v in maps.items()},
                           raw={k: np.asarray(v) for k, v in raw.items()},
                           flat={k: np.asarray(v) for k, v in flat.items()},
                           attributions={k: np.asarray(v) for k, v in attributions.items()})
