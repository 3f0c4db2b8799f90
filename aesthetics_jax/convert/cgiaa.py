"""CG-IAA's released checkpoints -> one critic bundle (image tower + the four ClipCap experts).

    aesthetics-jax convert --from cgiaa CHECKPOINTS_DIR --out cgiaa_critic [--tokenizer GPT2_DIR]
    aesthetics-jax critique photos/ --model cgiaa_critic

`CHECKPOINTS_DIR` holds what sxfly99/CG-IAA releases (SCIENCE.md section 6):

  base_model.pt      the VLAP CLIP ViT-B/16: a state dict of CG-IAA's `BaseModel` (OpenAI CLIP
                     names under `clip_model.`; a bare OpenAI-layout dict is read too)
  color.pt, composition.pt, dof.pt, general.pt
                     `ClipCaptionModel` state dicts: the mapper under `clip_project.` (`linear`,
                     `prefix_const`, `transformer.layers.{i}.{norm1, attn.to_queries,
                     attn.to_keys_values, attn.project, norm2, mlp.fc1, mlp.fc2}`) and GPT-2 under
                     `gpt.` (transformers' `GPT2LMHeadModel` names)

read with `torch.load(weights_only=True)` (or safetensors files of the same names). The GPT-2
tokenizer files (`vocab.json`, `merges.txt` of the "gpt2" tokenizer CG-IAA uses) come from
`--tokenizer DIR` (any directory holding both; by default CHECKPOINTS_DIR) and are copied into the
bundle, so it decodes offline. An attribute whose file is missing is left out (at least one needed).

Architecture is read off the shapes: mapper width = GPT-2 width, clip_length = rows of `linear` /
width, prefix_length = rows of `prefix_const`, layers counted, hidden = rows of `fc1`; heads = 8
(the released mapper's, not in the weights: `mapper_heads=` to change). Strict: every target filled
with its shape, every source tensor used (GPT-2's causal-mask buffers are dropped by name).

The bundle's input transform is the released inference preprocessing: Resize((224, 224)) (a squash,
torchvision bilinear with antialias) and CLIP's mean/std.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

import numpy as np
from flax import traverse_util

from aesthetics_jax.convert import clip as clip_convert
from aesthetics_jax.convert import gpt2 as gpt2_convert
from aesthetics_jax.models import clipcap

ATTRIBUTES = ("color", "composition", "dof", "general")
BASE_FILE = "base_model"
MAPPER_HEADS = 8


def _find(directory: Path, stem: str) -> Path | None:
    for suffix in (".pt", ".pth", ".bin", ".safetensors"):
        path = directory / f"{stem}{suffix}"
        if path.is_file():
            return path
    return None


def _layer_count(sd, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in sd for m in [pattern.match(k)] if m}
    return max(found) + 1 if found else 0


def convert_mapper(sd: Mapping[str, np.ndarray], width: int, *, heads: int = MAPPER_HEADS,
                   origin: str = "<state dict>") -> tuple[dict, dict]:
    """The `clip_project.*` tensors (prefix stripped) -> (`TransformerMapper` params, config fields)."""
    sd = dict(sd)
    try:
        linear = sd["linear.weight"]
        const = sd["prefix_const"]
    except KeyError as e:
        raise ValueError(f"{origin}: mapper tensor {e.args[0]!r} missing (is this a transformer_encoder ClipCap?)") from None
    if linear.shape[0] % width:
        raise ValueError(f"{origin}: clip_project.linear.weight {linear.shape} is not a multiple of GPT-2's width {width}")
    layers = _layer_count(sd, "transformer.layers.")
    hidden = sd["transformer.layers.0.mlp.fc1.weight"].shape[0] if layers else 2 * width
    fields = dict(prefix_dim=int(linear.shape[1]), prefix_length=int(const.shape[0]), clip_length=linear.shape[0] // width,
                  num_layers=layers, num_heads=heads, mlp_ratio=hidden / width)
    expected = {("linear", "kernel"): (fields["prefix_dim"], linear.shape[0]), ("linear", "bias"): (linear.shape[0],),
                ("prefix_const",): (fields["prefix_length"], width)}
    rules = {"linear.weight": ("linear", "kernel"), "linear.bias": ("linear", "bias"), "prefix_const": ("prefix_const",)}
    for i in range(layers):
        src, dst = f"transformer.layers.{i}.", f"layers_{i}"
        for norm in ("norm1", "norm2"):
            rules[f"{src}{norm}.weight"] = (dst, norm, "scale")
            rules[f"{src}{norm}.bias"] = (dst, norm, "bias")
            expected[(dst, norm, "scale")] = expected[(dst, norm, "bias")] = (width,)
        for name, out, bias in (("attn.to_queries", width, False), ("attn.to_keys_values", 2 * width, False),
                                ("attn.project", width, True), ("mlp.fc1", hidden, True), ("mlp.fc2", width, True)):
            group, layer = name.split(".")
            rules[f"{src}{name}.weight"] = (dst, group, layer, "kernel")
            expected[(dst, group, layer, "kernel")] = (hidden if name == "mlp.fc2" else width, out)
            if bias:
                rules[f"{src}{name}.bias"] = (dst, group, layer, "bias")
                expected[(dst, group, layer, "bias")] = (out,)
    flat, errors = {}, []
    for key, value in sd.items():
        if key not in rules:
            errors.append(f"source tensor clip_project.{key} {tuple(value.shape)} is not used by any rule")
            continue
        path = rules[key]
        value = np.asarray(value, np.float32)
        if path[-1] == "kernel":
            value = value.T  # torch Linear [out, in] -> Flax Dense [in, out]
        if tuple(value.shape) != expected[path]:
            errors.append(f"clip_project.{key} -> {'/'.join(path)}: shape {tuple(value.shape)}, expected {expected[path]}")
            continue
        flat[path] = value
    missing = sorted("/".join(p) for p in expected if p not in flat)
    if missing:
        errors.append(f"mapper parameters with no source tensor: {missing}")
    if errors:
        raise ValueError(f"{origin}: ClipCap mapper conversion failed:\n  " + "\n  ".join(errors))
    return traverse_util.unflatten_dict(flat), fields


def convert_expert(sd: Mapping[str, np.ndarray], *, heads: int = MAPPER_HEADS, gpt_heads: int | None = None,
                   origin: str = "<state dict>"):
    """A `ClipCaptionModel` state dict -> (`ClipCap` params {'clip_project', 'gpt'}, ClipCapConfig).
    `gpt_heads`: GPT-2's head count (default width // 64, every released GPT-2)."""
    unknown = sorted(k for k in sd if not k.startswith(("clip_project.", "gpt.")))
    if unknown:
        raise ValueError(f"{origin}: tensors outside clip_project. / gpt.: {unknown[:10]}"
                         f"{' ...' if len(unknown) > 10 else ''} (not a ClipCaptionModel state dict?)")
    gpt_sd = {k: v for k, v in sd.items() if k.startswith("gpt.")}
    gpt_config = gpt2_convert.infer_config(gpt_sd, prefix="gpt.", n_head=gpt_heads)
    gpt_params = gpt2_convert.convert_state_dict(gpt_sd, gpt_config, prefix="gpt.", origin=origin)
    mapper_sd = {k[len("clip_project."):]: v for k, v in sd.items() if k.startswith("clip_project.")}
    mapper, fields = convert_mapper(mapper_sd, gpt_config.n_embd, heads=heads, origin=origin)
    return {"clip_project": mapper, "gpt": gpt_params}, clipcap.ClipCapConfig(gpt2=gpt_config, **fields)


def convert_base(sd: Mapping[str, np.ndarray], origin: str = "<state dict>", *, vision_heads=None, text_heads=None):
    """CG-IAA's `base_model.pt` (OpenAI CLIP names, optionally under `clip_model.`) -> (CLIP params, CLIPConfig)."""
    if any(k.startswith("clip_model.") for k in sd):
        other = sorted(k for k in sd if not k.startswith("clip_model."))
        if other:
            raise ValueError(f"{origin}: tensors outside clip_model.: {other[:10]}")
        sd = {k[len("clip_model."):]: v for k, v in sd.items()}
    try:
        return clip_convert.convert_state_dict(sd, "openai", act="quick_gelu", vision_heads=vision_heads,
                                               text_heads=text_heads)
    except ValueError as e:
        raise ValueError(f"{origin}: {e}") from None


def read(directory: str | Path, *, attributes=ATTRIBUTES, mapper_heads: int = MAPPER_HEADS, gpt_heads: int | None = None,
         vision_heads: int | None = None, text_heads: int | None = None):
    """Reads a CG-IAA checkpoints directory: `(clip_params, clip_config, experts, clipcap_config, files)`.

    `experts` maps attribute -> ClipCap params; all experts must share one architecture (they are
    decoded together). `files` are the source files read (for provenance)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a directory (give the folder holding base_model.pt and the "
                                "expert .pt files)")
    base = _find(directory, BASE_FILE)
    if base is None:
        raise FileNotFoundError(f"{directory}: no {BASE_FILE}.pt (CG-IAA's VLAP CLIP; the experts read its image feature)")
    clip_params, clip_config = convert_base(clip_convert.read_state_dict(base), origin=str(base),
                                            vision_heads=vision_heads, text_heads=text_heads)
    experts, config, files = {}, None, {"base": base}
    for attr in attributes:
        path = _find(directory, attr)
        if path is None:
            continue
        params, cfg = convert_expert(clip_convert.read_state_dict(path), heads=mapper_heads, gpt_heads=gpt_heads,
                                     origin=str(path))
        if config is not None and cfg != config:
            raise ValueError(f"{path}: expert architecture {cfg} differs from the others' {config}")
        if cfg.prefix_dim != clip_config.vision.embed_dim:
            raise ValueError(f"{path}: the mapper reads {cfg.prefix_dim}-wide features; {base} gives "
                             f"{clip_config.vision.embed_dim}")
        experts[attr], config, files[attr] = params, cfg, path
    if not experts:
        raise FileNotFoundError(f"{directory}: none of {', '.join(f'{a}.pt' for a in attributes)}")
    return clip_params, clip_config, experts, config, files


def tokenizer_files(directory: str | Path) -> tuple[Path, Path]:
    directory = Path(directory)
    vocab, merges = directory / "vocab.json", directory / "merges.txt"
    missing = [str(p) for p in (vocab, merges) if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"GPT-2 tokenizer files missing: {missing}. CG-IAA decodes with the 'gpt2' tokenizer; put its vocab.json and "
            "merges.txt in one directory (e.g. `huggingface-cli download gpt2 vocab.json merges.txt --local-dir DIR` on "
            "a machine with internet) and pass --tokenizer DIR")
    return vocab, merges


def source_info(files: dict) -> dict:
    from aesthetics_jax.export import bundle

    return {name: {"path": os.path.abspath(p), "sha256": bundle.sha256_file(str(p)), "size_bytes": os.path.getsize(p)}
            for name, p in files.items()}
