"""Hugging Face GPT-2 checkpoints -> `models.gpt2.GPT2LMHeadModel` params.

    params, config = load_pretrained("gpt2_dir")      # a transformers `save_pretrained` directory
    model = gpt2.GPT2LMHeadModel(config)
    logits, _ = model.apply({'params': params}, embeds)

Source names (after stripping `prefix`) are those of transformers' `GPT2LMHeadModel`
(`transformer.wte.weight`, `transformer.h.0.attn.c_attn.weight`, ..., `lm_head.weight`) or of a
bare `GPT2Model` (`wte.weight`, `h.0.attn.c_attn.weight`, ...)::

    [transformer.]wte.weight                      -> wte/embedding           [vocab, n_embd]
    [transformer.]wpe.weight                      -> wpe/embedding           [n_positions, n_embd]
    [transformer.]h.{i}.ln_{1,2}.{weight,bias}    -> h_{i}/ln_{1,2}/{scale,bias}
    [transformer.]h.{i}.attn.c_attn.{weight,bias} -> h_{i}/attn/c_attn/{kernel,bias}
    [transformer.]h.{i}.attn.c_proj.{weight,bias} -> h_{i}/attn/c_proj/{kernel,bias}
    [transformer.]h.{i}.mlp.c_fc.{weight,bias}    -> h_{i}/mlp/c_fc/{kernel,bias}
    [transformer.]h.{i}.mlp.c_proj.{weight,bias}  -> h_{i}/mlp/c_proj/{kernel,bias}
    [transformer.]ln_f.{weight,bias}              -> ln_f/{scale,bias}
    lm_head.weight                                   checked equal to wte (tied), then dropped

HF's `Conv1D` stores its weight as [in, out], Flax's Dense kernel layout, so nothing is
transposed. `save_pretrained` usually omits the tied `lm_head.weight`; `model.state_dict()`
includes it. An `lm_head.weight` different from wte (an untied head) is refused: the Flax model
reads its logits from wte.

`prefix` (e.g. "gpt." for a ClipCap state dict, whose keys are `gpt.transformer.h.0...`) is
stripped from every key; keys *without* the prefix are not skipped but reported as unexpected
(strictness: nothing is dropped silently), so a caller holding a larger state dict passes only
its GPT-2 part: `{k: v for k, v in sd.items() if k.startswith("gpt.")}` with `prefix="gpt."`.

Strict: every target parameter must be filled with the expected shape and every source tensor
used or dropped by a named rule (`IGNORED`: the `attn.bias` causal-mask and `attn.masked_bias`
buffers stored by older transformers versions); otherwise a ValueError names the keys and
`origin` (the file, for `load_pretrained`).

Files are read with `convert.clip.read_safetensors` (parsed without torch) or
`convert.clip.read_torch` (`torch.load(weights_only=True)`), never by unpickling objects.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Mapping

import numpy as np
from flax import traverse_util

from aesthetics_jax.convert.clip import read_safetensors, read_torch
from aesthetics_jax.models import gpt2 as gpt2_model

# Source tensors dropped on purpose: (regex on the name without prefix / "transformer.", reason).
IGNORED = [
    (r"h\.\d+\.attn\.bias", "causal-mask buffer of older transformers checkpoints (rebuilt by the model)"),
    (r"h\.\d+\.attn\.masked_bias", "masked-score constant buffer of older transformers checkpoints"),
]

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_SHARD_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")

_LAYER_PARTS = {
    "ln_1.weight": ("ln_1", "scale"), "ln_1.bias": ("ln_1", "bias"),
    "ln_2.weight": ("ln_2", "scale"), "ln_2.bias": ("ln_2", "bias"),
    "attn.c_attn.weight": ("attn", "c_attn", "kernel"), "attn.c_attn.bias": ("attn", "c_attn", "bias"),
    "attn.c_proj.weight": ("attn", "c_proj", "kernel"), "attn.c_proj.bias": ("attn", "c_proj", "bias"),
    "mlp.c_fc.weight": ("mlp", "c_fc", "kernel"), "mlp.c_fc.bias": ("mlp", "c_fc", "bias"),
    "mlp.c_proj.weight": ("mlp", "c_proj", "kernel"), "mlp.c_proj.bias": ("mlp", "c_proj", "bias"),
}
_TOP = {
    "wte.weight": ("wte", "embedding"),
    "wpe.weight": ("wpe", "embedding"),
    "ln_f.weight": ("ln_f", "scale"),
    "ln_f.bias": ("ln_f", "bias"),
}
LM_HEAD = "lm_head.weight"


def _normalise(sd: Mapping[str, np.ndarray], prefix: str) -> tuple[dict[str, np.ndarray], dict[str, str], list[str]]:
    """Strips `prefix` then `transformer.`; returns (renamed, {new: original key}, keys outside prefix)."""
    out, names, outside = {}, {}, []
    for key, value in sd.items():
        if not key.startswith(prefix):
            outside.append(key)
            continue
        name = key[len(prefix):]
        if name.startswith("transformer."):
            name = name[len("transformer."):]
        if name in out:
            raise ValueError(f"source keys {names[name]!r} and {key!r} both map to {name!r} (GPT2LMHeadModel and "
                             "GPT2Model names mixed)")
        out[name] = np.asarray(value)
        names[name] = key
    return out, names, outside


def _target(name: str) -> tuple[str, ...] | None:
    if name in _TOP:
        return _TOP[name]
    m = re.fullmatch(r"h\.(\d+)\.(.+)", name)
    if m and m.group(2) in _LAYER_PARTS:
        return (f"h_{int(m.group(1))}",) + _LAYER_PARTS[m.group(2)]
    return None


def _expected_shapes(config: gpt2_model.GPT2Config) -> dict[tuple[str, ...], tuple[int, ...]]:
    import jax
    import jax.numpy as jnp

    model = gpt2_model.GPT2LMHeadModel(config)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 1, config.n_embd), jnp.float32))
    return {k: tuple(x.shape) for k, x in traverse_util.flatten_dict(shapes["params"]).items()}


def convert_state_dict(sd: Mapping[str, np.ndarray], config: gpt2_model.GPT2Config, *, prefix: str = "",
                       origin: str = "<state dict>") -> dict:
    """A transformers GPT-2 state dict (numpy arrays) -> params of `GPT2LMHeadModel(config)`
    (nested dict of float32 numpy; use as `{'params': params}`). Strict; see the module docstring."""
    config.validate()
    named, names, outside = _normalise(sd, prefix)
    expected = _expected_shapes(config)
    ignore = [(re.compile(p), why) for p, why in IGNORED]
    flat, errors, unused = {}, [], [*outside]
    for name, value in named.items():
        if name == LM_HEAD:
            continue
        path = _target(name)
        if path is None or path not in expected:
            if not any(r.fullmatch(name) for r, _ in ignore):
                unused.append(names[name])
            continue
        if tuple(value.shape) != expected[path]:
            errors.append(f"{names[name]!r} -> {'/'.join(path)}: shape {tuple(value.shape)}, expected {expected[path]}")
            continue
        flat[path] = np.asarray(value, np.float32)
    if LM_HEAD in named:
        head, wte = named[LM_HEAD], flat.get(("wte", "embedding"))
        if wte is not None and (head.shape != wte.shape or not np.array_equal(np.asarray(head, np.float32), wte)):
            errors.append(f"{names[LM_HEAD]!r} (shape {tuple(head.shape)}) differs from the token embedding wte: an "
                          "untied LM head is not supported (GPT2LMHeadModel computes logits with wte)")
    missing = sorted("/".join(p) for p in expected if p not in flat)
    if missing:
        errors.append(f"target parameters with no source tensor: {missing}")
    if unused:
        where = f" (prefix {prefix!r})" if prefix else ""
        errors.append(f"source tensors not used by any rule{where}: {sorted(unused)}")
    if errors:
        raise ValueError(f"GPT-2 -> Flax conversion of {origin} failed:\n  " + "\n  ".join(errors))
    return traverse_util.unflatten_dict(flat)


def infer_config(sd: Mapping[str, np.ndarray], *, prefix: str = "", n_head: int | None = None,
                 **overrides) -> gpt2_model.GPT2Config:
    """The `GPT2Config` of a state dict, read off the tensor shapes: vocab_size and n_embd (wte),
    n_positions (wpe), n_layer (blocks h.0 .. h.{n-1}); n_head defaults to n_embd // 64 (every
    released GPT-2); `overrides` set other fields (activation, layer_norm_epsilon, eos_token_id, ...)."""
    named, names, _ = _normalise(sd, prefix)
    for key in ("wte.weight", "wpe.weight"):
        if key not in named:
            raise ValueError(f"state dict has no {prefix}[transformer.]{key} (needed to read the architecture)")
    vocab, n_embd = named["wte.weight"].shape
    n_positions = named["wpe.weight"].shape[0]
    layers = {int(m.group(1)) for k in named for m in [re.match(r"h\.(\d+)\.", k)] if m}
    if layers != set(range(len(layers))):
        raise ValueError(f"state dict blocks h.<i> are not numbered 0..n-1: {sorted(layers)}")
    fc = named.get("h.0.mlp.c_fc.weight")
    if fc is not None and tuple(fc.shape) != (n_embd, 4 * n_embd):
        raise ValueError(f"{names['h.0.mlp.c_fc.weight']!r} has shape {tuple(fc.shape)}; only the standard MLP width "
                         f"4 * n_embd ({(n_embd, 4 * n_embd)}) is supported")
    heads = n_head if n_head is not None else n_embd // 64
    if heads <= 0 or n_embd % heads:
        raise ValueError(f"n_embd {n_embd} is not divisible by n_head {heads}; pass n_head=")
    try:
        config = gpt2_model.GPT2Config(vocab_size=int(vocab), n_positions=int(n_positions), n_embd=int(n_embd),
                                       n_layer=len(layers), n_head=int(heads))
        return dataclasses.replace(config, **overrides).validate()
    except TypeError as e:
        fields = [f.name for f in dataclasses.fields(gpt2_model.GPT2Config)]
        raise ValueError(f"GPT2Config override: {e}; fields {fields}") from None


def _read_weights(directory: Path) -> tuple[dict[str, np.ndarray], str]:
    for name in WEIGHT_FILES:
        path = directory / name
        if path.is_file():
            return (read_safetensors(path) if name.endswith(".safetensors") else read_torch(path)), str(path)
    for name in _SHARD_INDEXES:
        index = directory / name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            sd = {}
            for shard in shards:
                path = directory / shard
                if not path.is_file():
                    raise FileNotFoundError(f"{index} lists shard {shard}, which is missing from {directory}")
                sd.update(read_safetensors(path) if shard.endswith(".safetensors") else read_torch(path))
            return sd, str(index)
    raise FileNotFoundError(
        f"{directory}: no GPT-2 weights ({' or '.join(WEIGHT_FILES)}, or a sharded "
        f"{' / '.join(_SHARD_INDEXES)}); expected a transformers `save_pretrained` directory, e.g. from "
        "`huggingface-cli download gpt2 config.json model.safetensors`"
    )


def load_pretrained(directory) -> tuple[dict, gpt2_model.GPT2Config]:
    """A transformers GPT-2 `save_pretrained` directory (`config.json` + `model.safetensors` or
    `pytorch_model.bin`) -> `(params, GPT2Config)` for `GPT2LMHeadModel(config)`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a directory (expected a transformers GPT-2 save_pretrained "
                                "directory)")
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory}: no config.json (expected a transformers GPT-2 save_pretrained "
                                "directory)")
    try:
        config = gpt2_model.GPT2Config.from_hf(json.loads(config_path.read_text()))
    except ValueError as e:
        raise ValueError(f"{config_path}: {e}") from None
    sd, origin = _read_weights(directory)
    return convert_state_dict(sd, config, origin=origin), config


def is_pretrained_dir(path) -> bool:
    """Whether ``path`` looks like a transformers GPT-2 directory (config.json with model_type gpt2)."""
    config_path = Path(path) / "config.json"
    if not config_path.is_file():
        return False
    try:
        return json.loads(config_path.read_text()).get("model_type") == "gpt2"
    except (ValueError, OSError):
        return False
