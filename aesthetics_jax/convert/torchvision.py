"""torchvision state dicts -> our Flax backbones (`inception_v3`, `mobilenet_v2`).

Files: `.safetensors` (safetensors' numpy reader) or a torch state dict (`torch.save(
model.state_dict())`, `.pth` / `.pt` / `.bin`, read with `torch.load(..., weights_only=True)`:
tensors only, never arbitrary pickled objects; a `{'state_dict': ...}` wrapper and a DataParallel
`module.` prefix are accepted).

inception_v3 -> `models.create('inception', layout='torchvision', preprocess='torch',
transform_input=...)` (torchvision's ImageNet weights use transform_input=True). The i-th
`BasicConv2d` in `models.inception.torchvision_conv_names()` (`Conv2d_1a_3x3`,
`Mixed_5b.branch1x1`, ...) fills `conv2d_<i>` (`conv.weight` [O, I, kh, kw] -> kernel
[kh, kw, I, O]) and `batch_normalization_<i>` (`bn.weight` -> scale, `bn.bias` -> bias,
`bn.running_mean` / `bn.running_var` -> batch_stats mean / var).
Ignored by rule: `AuxLogits.*` (training-only auxiliary classifier), `fc.*` (ImageNet classifier),
`*.num_batches_tracked` (a counter, unused with momentum BN).

mobilenet_v2 -> `models.create('mobilenet_v2', layout='torchvision', preprocess='torch')` (stride-2
3x3 convs padded (1, 1) on both sides instead of Keras' `correct_pad`, BN eps 1e-5; all 17 blocks,
any width torchvision builds): `features.0` -> Conv1 / bn_Conv1,
`features.1.conv.{0.0, 0.1, 1, 2}` -> expanded_conv_{depthwise, depthwise_BN, project, project_BN},
`features.<k>.conv.{0.0, 0.1, 1.0, 1.1, 2, 3}` -> block_<k-1>_{expand, expand_BN, depthwise,
depthwise_BN, project, project_BN}, `features.18` -> Conv_1 / Conv_1_bn. Depthwise weights
[C, 1, 3, 3] become Flax grouped kernels [3, 3, 1, C]. Ignored: `classifier.*`,
`*.num_batches_tracked`.

Strict as everywhere (`keras_h5.merge_module_weights`): every target leaf filled unless in
`dont_load`, every tensor used or ignored by a rule above or an `ignore` regex; heads of our model
have no torchvision source, so they must be in `dont_load` (the CLI does that for backbone-only
conversion).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from aesthetics_jax.convert import keras_h5
from aesthetics_jax.models import inception as inception_lib

IGNORE_RULES = {
    "inception": (r"AuxLogits\..*", r"fc\..*", r".*\.num_batches_tracked"),
    "mobilenet_v2": (r"classifier\..*", r".*\.num_batches_tracked"),
}


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Tensors of a `.safetensors` file or a torch state dict file, as float32/int numpy arrays."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no state dict file at {path}")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        sd = dict(load_file(str(path)))
    else:
        import torch

        obj = torch.load(str(path), map_location="cpu", weights_only=True)
        if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
            obj = obj["state_dict"]
        if not isinstance(obj, Mapping):
            raise ValueError(f"{path}: expected a state dict (names -> tensors), got {type(obj).__name__}")
        sd = {}
        for key, value in obj.items():
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
            value = value.detach().cpu()
            sd[key] = (value.float() if value.is_floating_point() else value).numpy()
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return {k: (v.astype(np.float32) if np.issubdtype(v.dtype, np.floating) else v) for k, v in sd.items()}


def _conv(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))  # [O, I, kh, kw] -> [kh, kw, I, O]


def _bn(prefix: str, take) -> dict:
    return {
        ("params", "scale"): take(prefix + ".weight"),
        ("params", "bias"): take(prefix + ".bias"),
        ("batch_stats", "mean"): take(prefix + ".running_mean"),
        ("batch_stats", "var"): take(prefix + ".running_var"),
    }


def _mobilenet_v2_names(num_blocks: int = 17) -> list[tuple[str, str, str]]:
    """(our module, torch prefix, 'conv' | 'bn')."""
    names = [("Conv1", "features.0.0", "conv"), ("bn_Conv1", "features.0.1", "bn")]
    for block in range(num_blocks):
        f = f"features.{block + 1}.conv"
        if block == 0:
            p = "expanded_conv_"
            names += [(p + "depthwise", f + ".0.0", "conv"), (p + "depthwise_BN", f + ".0.1", "bn"),
                      (p + "project", f + ".1", "conv"), (p + "project_BN", f + ".2", "bn")]
        else:
            p = f"block_{block}_"
            names += [(p + "expand", f + ".0.0", "conv"), (p + "expand_BN", f + ".0.1", "bn"),
                      (p + "depthwise", f + ".1.0", "conv"), (p + "depthwise_BN", f + ".1.1", "bn"),
                      (p + "project", f + ".2", "conv"), (p + "project_BN", f + ".3", "bn")]
    names += [("Conv_1", "features.18.0", "conv"), ("Conv_1_bn", "features.18.1", "bn")]
    return names


def torchvision_weights(sd: Mapping[str, np.ndarray], backbone, *, ignore: Iterable[str] = (), source: str = "state dict"):
    """Maps a torchvision state dict onto `backbone` (an `Inception` or `MobileNetV2` module).
    Returns `(weights, ignored)`: `{'backbone/<module>': {(collection, leaf): array}}` and
    `[(rule, [keys])]`."""
    kind = type(backbone).__name__
    if kind == "Inception":
        if backbone.layout != "torchvision":
            raise ValueError(f"{source}: torchvision Inception weights need layout='torchvision' (BN gamma, "
                             f"count_include_pad pooling), got layout={backbone.layout!r}")
        family = "inception"
    elif kind == "MobileNetV2":
        if backbone.layout != "torchvision":
            raise ValueError(f"{source}: torchvision MobileNetV2 weights need layout='torchvision' (symmetric "
                             f"stride-2 padding, BN eps 1e-5), got layout={backbone.layout!r}")
        if backbone.num_blocks != 17:
            raise ValueError(f"{source}: torchvision's mobilenet_v2 has all 17 blocks; got num_blocks={backbone.num_blocks}")
        family = "mobilenet_v2"
    else:
        raise ValueError(f"{source}: no torchvision mapping for backbone {kind}")
    used: set[str] = set()
    missing: list[str] = []

    def take(key):
        if key not in sd:
            missing.append(key)
            return None
        used.add(key)
        return np.asarray(sd[key])

    weights = {}
    if family == "inception":
        for i, prefix in enumerate(inception_lib.torchvision_conv_names(backbone.num_mixed)):
            w = take(prefix + ".conv.weight")
            weights[f"backbone/{inception_lib.keras_conv_name(i)}"] = {("params", "kernel"): None if w is None else _conv(w)}
            weights[f"backbone/{inception_lib.keras_bn_name(i)}"] = _bn(prefix + ".bn", take)
    else:
        for module, prefix, what in _mobilenet_v2_names(backbone.num_blocks):
            if what == "conv":
                w = take(prefix + ".weight")
                weights[f"backbone/{module}"] = {("params", "kernel"): None if w is None else _conv(w)}
            else:
                weights[f"backbone/{module}"] = _bn(prefix, take)
    rules = [(r, re.compile(r)) for r in (*IGNORE_RULES[family], *ignore)]
    ignored: dict[str, list[str]] = {}
    unused = []
    for key in sd:
        if key in used:
            continue
        rule = next((r for r, c in rules if c.fullmatch(key)), None)
        if rule is None:
            unused.append(key)
        else:
            ignored.setdefault(rule, []).append(key)
    errors = []
    if missing:
        errors.append(f"{source}: missing tensors {missing[:20]}{' ...' if len(missing) > 20 else ''}")
    if unused:
        errors.append(f"{source}: tensors neither used nor ignored by a rule: {unused[:20]}"
                      f"{' ...' if len(unused) > 20 else ''} (pass an `ignore` regex to drop them)")
    if errors:
        raise ValueError("torchvision import failed:\n  " + "\n  ".join(errors))
    return weights, sorted(ignored.items())


def load_torchvision_file(path, model, variables=None, *, dont_load: Iterable[str] = (), ignore: Iterable[str] = (),
                          image_size: int = 75):
    """torchvision state dict file -> variables for `model` (an `AestheticsModel`); heads must be in
    `dont_load` (they keep their value from `variables`, or with `variables=None` their initial
    value, `keras_h5.init_variables(..., only=dont_load)`). Returns `(variables, report)`, report
    `{'ignored': [(rule, 'n tensors')], 'kept_init': [leaf paths]}`."""
    sd = read_state_dict(path)
    weights, ignored = torchvision_weights(sd, model.backbone, ignore=ignore, source=str(path))
    if variables is None:
        variables = keras_h5.init_variables(model, image_size, only=dont_load)
    new, kept = keras_h5.merge_module_weights(variables, weights, dont_load=dont_load, source=str(path))
    return new, {"ignored": [(rule, f"{len(keys)} tensors") for rule, keys in ignored], "kept_init": kept}
