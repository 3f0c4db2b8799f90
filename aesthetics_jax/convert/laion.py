"""LAION aesthetic predictor weights + a converted CLIP image tower -> a model bundle.

    aesthetics-jax convert --from openai-clip vit_l14_state_dict.pt --arch clip --out clip_l14
    aesthetics-jax convert --from laion-aesthetic sac+logos+ava1-l14-linearMSE.pth --clip clip_l14 --out laion_v2
    aesthetics-jax predict photos/ --model laion_v2      # scores.laion_aesthetic = the LAION score

The LAION predictors score the L2-normalised CLIP ViT-L/14 image embedding (768 wide):

  v1          `torch.nn.Linear(768, 1)` state dict (LAION-AI/aesthetic-predictor
              `sa_0_4_vit_l_14_linear.pth`): keys `weight` [1, 768], `bias` [1].
  v2          improved-aesthetic-predictor `MLP` (`sac+logos+ava1-l14-linearMSE.pth`):
              `layers = Sequential(Linear(768, 1024), Dropout, Linear(1024, 128), Dropout,
              Linear(128, 64), Dropout, Linear(64, 16), Linear(16, 1))`, *no* activation; keys
              `layers.{0,2,4,6,7}.{weight,bias}`.
  v2_relu     the same with a ReLU after each hidden Linear: `Linear, ReLU, Dropout` x3,
              `Linear(64, 16), ReLU, Linear(16, 1)`; keys `layers.{0,3,6,9,11}.{weight,bias}`.

The variant is read off the key set; any other set is an error naming the keys found and the
layouts expected. The widths are read off the shapes (checked to chain: each layer's input is the
previous layer's output, the last has one output). Dropout acts only in training: at inference it
is the identity, so it has no counterpart in the converted head.

The bundle's model is the `clip` backbone of the CLIP conversion (its `convert.json['model']`:
variant and architecture fields, preprocess 'clip' = CLIP's mean/std inside the model) with
`pooled='projected'` and one head, `laion` (`LAION_HEAD`): a `scores` head named
`laion_aesthetic` with `hidden` per variant, `activation` 'none' | 'relu' and
`l2_normalize=True`. Torch `Linear.weight` [out, in] becomes the Flax kernel [in, out].
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

HEAD_NAME = "laion"
SCORE_NAME = "laion_aesthetic"

# variant -> (source module prefixes of the Linear layers in order, activation between them)
LAYOUTS = {
    "v1": ([""], "none"),
    "v2": ([f"layers.{i}." for i in (0, 2, 4, 6, 7)], "none"),
    "v2_relu": ([f"layers.{i}." for i in (0, 3, 6, 9, 11)], "relu"),
}
# The embedding the released predictors were trained on.
RELEASED_EMBED_DIM = 768
RELEASED_CLIP_VARIANTS = ("vit_l14",)


def _layout_keys(variant: str) -> set[str]:
    return {p + s for p in LAYOUTS[variant][0] for s in ("weight", "bias")}


def _describe_layouts() -> str:
    return "; ".join(f"{v}: {sorted(_layout_keys(v), key=_key_order)}" for v in LAYOUTS)


def _key_order(key: str):
    parts = key.split(".")
    return [int(p) if p.isdigit() else p for p in parts]


def read_weights(path: str | Path) -> dict[str, np.ndarray]:
    """A LAION predictor file (.pth/.pt state dict read with weights_only=True, or .safetensors)
    as numpy float32; a leading `module.` (DataParallel) is stripped."""
    from aesthetics_jax.convert import clip as clip_convert

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no LAION aesthetic predictor file at {path}")
    sd = clip_convert.read_safetensors(path) if path.suffix == ".safetensors" else clip_convert.read_torch(path)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return {k: np.asarray(v, np.float32) for k, v in sd.items()}


def detect_variant(sd: Mapping[str, np.ndarray], path: str | Path = "<state dict>") -> str:
    keys = set(sd)
    for variant in LAYOUTS:
        if keys == _layout_keys(variant):
            return variant
    raise ValueError(f"{path}: not a LAION aesthetic predictor state dict; keys found: "
                     f"{sorted(keys, key=_key_order)}; expected exactly one of the layouts {_describe_layouts()}")


def convert_state_dict(sd: Mapping[str, np.ndarray], path: str | Path = "<state dict>"):
    """A LAION predictor state dict -> `(variant, head_config, head_params, input_dim)`; strict.

    `head_config` is the `scores` head config (`{'type': 'scores', 'names': [...], 'hidden': [...],
    'activation': ..., 'l2_normalize': True}`), `head_params` its Flax params
    (`hidden_{i}/kernel|bias`, `dense/kernel|bias`)."""
    variant = detect_variant(sd, path)
    prefixes, activation = LAYOUTS[variant]
    errors, layers = [], []
    previous_out = None
    for i, prefix in enumerate(prefixes):
        w, b = np.asarray(sd[prefix + "weight"]), np.asarray(sd[prefix + "bias"])
        if w.ndim != 2:
            errors.append(f"{prefix}weight: shape {list(w.shape)}, expected a Linear weight [out, in]")
            continue
        out_dim, in_dim = w.shape
        if b.shape != (out_dim,):
            errors.append(f"{prefix}bias: shape {list(b.shape)}, expected [{out_dim}] (rows of {prefix}weight)")
        if previous_out is not None and in_dim != previous_out:
            errors.append(f"{prefix}weight: shape {list(w.shape)} takes {in_dim} inputs, but the layer before "
                          f"gives {previous_out}")
        if i == len(prefixes) - 1 and out_dim != 1:
            errors.append(f"{prefix}weight: shape {list(w.shape)}, the last layer must have 1 output (the score)")
        previous_out = out_dim
        layers.append((w, b))
    if errors:
        raise ValueError(f"{path} ({variant} layout): " + "; ".join(errors))
    params = {}
    for i, (w, b) in enumerate(layers):
        name = "dense" if i == len(layers) - 1 else f"hidden_{i}"
        params[name] = {"kernel": np.ascontiguousarray(w.T, np.float32), "bias": np.asarray(b, np.float32)}
    head = {"type": "scores", "names": [SCORE_NAME], "hidden": [int(w.shape[0]) for w, _ in layers[:-1]],
            "activation": activation, "l2_normalize": True}
    return variant, head, params, int(layers[0][0].shape[1])


def read_clip_dir(clip_dir: str | Path) -> tuple[dict, dict, dict]:
    """A CLIP conversion directory (`aesthetics-jax convert --from openai-clip|open-clip|hf-clip ...
    --arch clip --out DIR`) -> `(convert_json, backbone_model_config, backbone_params)`."""
    from aesthetics_jax.convert import clip as clip_convert
    from aesthetics_jax.train import checkpointing

    clip_dir = Path(clip_dir)
    meta = clip_convert.read_conversion(clip_dir)
    model = dict(meta.get("model") or {})
    if model.get("name") != "clip":
        raise ValueError(f"--clip {clip_dir}: convert.json model is {model.get('name')!r}, not a CLIP image tower "
                         "(convert one with --arch clip)")
    model.pop("heads", None)
    ckpt = clip_dir / meta.get("checkpoint", "checkpoints")
    restored = checkpointing.restore_params(os.path.abspath(ckpt))
    backbone = restored.get("params", {}).get("backbone")
    if not backbone:
        raise ValueError(f"--clip {clip_dir}: checkpoint {ckpt} has no params['backbone']")
    if "proj" not in backbone:
        raise ValueError(f"--clip {clip_dir}: the image tower has no projection `proj`; the LAION predictors score "
                         "the projected CLIP image embedding")
    return meta, model, backbone


def _clip_arch(model: dict) -> dict:
    """The image tower's architecture fields (its variant's values where `model` leaves them out)."""
    import dataclasses

    from aesthetics_jax.models import clip as clip_model

    base = clip_model.VARIANTS.get(model.get("variant") or "vit_b16", clip_model.VARIANTS["vit_b16"]).vision
    return {f.name: model.get(f.name) if model.get(f.name) is not None else getattr(base, f.name)
            for f in dataclasses.fields(base) if f.name != "act"}


def build(src: str | Path, clip_dir: str | Path):
    """Everything a bundle needs: `(model_config, params, image_size, info)`.

    `model_config` is the `config.model` (name 'clip', backbone kwargs of the CLIP conversion,
    pooled='projected', heads {'laion': scores head}); `info` has the variant, widths and the
    CLIP conversion's provenance."""
    sd = read_weights(src)
    variant, head, head_params, in_dim = convert_state_dict(sd, src)
    meta, model, backbone = read_clip_dir(clip_dir)
    embed_dim = int(np.asarray(backbone["proj"]).shape[-1])
    if in_dim != embed_dim:
        raise ValueError(
            f"{src}: the {variant} predictor takes {in_dim}-wide embeddings, but the CLIP image tower in {clip_dir} "
            f"(variant {model.get('variant')!r}) gives {embed_dim}-wide ones; the released LAION predictors need "
            f"CLIP ViT-L/14 ({RELEASED_EMBED_DIM})")
    model.update(pooled="projected", preprocess=model.get("preprocess") or "clip")
    model["heads"] = {HEAD_NAME: head}
    image_size = int(meta.get("image_size") or model.get("image_size") or 224)
    info = {
        "variant": variant,
        "layers": [[int(p["kernel"].shape[0]), int(p["kernel"].shape[1])] for p in head_params.values()],
        "clip": {"dir": os.path.abspath(clip_dir), "variant": model.get("variant"), "embed_dim": embed_dim,
                 "source": meta.get("source")},
    }
    arch = _clip_arch(model)
    info["clip"]["arch"] = arch
    if not any(arch == _clip_arch({"variant": v}) for v in RELEASED_CLIP_VARIANTS):
        info["note"] = (f"the released LAION predictors were trained on CLIP ViT-L/14 embeddings; the CLIP "
                        f"image tower here is {arch}")
    return model, {"backbone": backbone, HEAD_NAME: head_params}, image_size, info
