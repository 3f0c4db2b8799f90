"""CLIP checkpoints (OpenAI, open_clip, Hugging Face `CLIPModel`) -> `models.clip.CLIP` params.

    params, config = load_clip_state_dict("model.safetensors", "hf")
    model = clip.CLIP(config)                       # params: {'visual', 'text', 'logit_scale'}
    backbone = models.create("clip", heads=..., **backbone_kwargs(config))   # params['visual']
                                                    # go under 'backbone'

Sources (`source`; the CLI's names `openai-clip`, `open-clip`, `hf-clip` are accepted too):

  openai     an OpenAI CLIP *state dict* (`torch.save(model.state_dict())`, names `visual.conv1.weight`,
             `visual.transformer.resblocks.0.attn.in_proj_weight`, `token_embedding.weight`, ...).
             The files OpenAI distributes (`ViT-B-32.pt`, ...) are TorchScript archives: loading
             one runs pickled code, so they are refused. Convert once on a trusted machine with
             `m, _ = clip.load("ViT-B-32.pt", jit=False); torch.save(m.state_dict(), "vit_b32_sd.pt")`.
  open_clip  open_clip's OpenAI-style towers (same names as OpenAI): `open_clip_pytorch_model.bin`
             / `open_clip_model.safetensors`, or a training checkpoint `{'state_dict': ...}` (a
             leading `module.` is stripped). `CustomTextCLIP` checkpoints, whose text tower sits
             under `text.` (`text.token_embedding.weight`, ...), are read too. The activation is
             not in the weights: open_clip's own models use GELU (`act='gelu'`, the default here);
             OpenAI-pretrained weights and `*-quickgelu` models need `act='quick_gelu'`.
  hf         a Hugging Face `CLIPModel` saved with `save_pretrained` (`model.safetensors` or
             `pytorch_model.bin`); `config.json` beside it gives heads, activation and EOS id.

Files are read with safetensors (parsed here; float32/float16/bfloat16 all become float32) or
`torch.load(..., weights_only=True)` — never by unpickling arbitrary objects.

The architecture is read off the tensor shapes (as OpenAI's `build_model` does): widths, depths,
patch size, image size, context length, vocabulary and embedding sizes. Heads default to
width // 64 (all OpenAI and open_clip ViT configs) unless `config.json` (hf) or
`vision_heads=` / `text_heads=` say otherwise.

Strict: every target parameter must be filled with the expected shape and every source tensor
used or dropped by a named rule (`IGNORED`: position-id buffers, the text attention mask, OpenAI's
scalar metadata); otherwise a ValueError names the keys.
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np
from flax import traverse_util

from aesthetics_jax.models import clip as clip_model

SOURCES = {"openai": "openai", "openai-clip": "openai", "open_clip": "open_clip", "open-clip": "open_clip",
           "hf": "hf", "hf-clip": "hf"}

# Source tensors dropped on purpose: (regex, reason).
IGNORED = {
    "openai": [(r"(input_resolution|context_length|vocab_size)", "OpenAI scalar metadata"),
               (r"attn_mask", "causal mask buffer (rebuilt by the model)")],
    "open_clip": [(r"(input_resolution|context_length|vocab_size)", "scalar metadata"),
                  (r"attn_mask", "causal mask buffer (rebuilt by the model)")],
    "hf": [(r"(vision|text)_model\.embeddings\.position_ids", "position id buffer")],
}

_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
                       "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a .safetensors file as numpy (BF16 widened to float32 exactly).

    The format is parsed here (8-byte little-endian header length, JSON header, raw data) so that
    BF16 needs no torch; sizes are checked against the header."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (header_len,) = struct.unpack("<Q", head)
        try:
            header = json.loads(f.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError, MemoryError, OverflowError) as e:
            raise ValueError(f"{path}: not a safetensors file (unreadable JSON header: {e})") from None
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info.get("dtype")
        shape = tuple(info["shape"])
        start, end = info["data_offsets"]
        itemsize = 2 if dtype == "BF16" else np.dtype(_SAFETENSORS_DTYPES.get(dtype, np.uint8)).itemsize
        if end > len(data) or end - start != int(np.prod(shape, dtype=np.int64)) * itemsize:
            raise ValueError(f"{path}: tensor {name!r} ({dtype} {list(shape)}) has byte range [{start}, {end}) that "
                             f"does not fit its shape or the file ({len(data)} data bytes): truncated or corrupt")
        raw = data[start:end]
        if dtype == "BF16":
            bits = np.frombuffer(raw, np.uint16).astype(np.uint32) << 16
            out[name] = bits.view(np.float32).reshape(shape)
        elif dtype in _SAFETENSORS_DTYPES:
            out[name] = np.frombuffer(raw, _SAFETENSORS_DTYPES[dtype]).reshape(shape).copy()
        else:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
    return out


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def read_torch(path: str | Path) -> dict[str, np.ndarray]:
    """A torch state dict via `torch.load(weights_only=True)`, tensors -> numpy float32/ints."""
    import torch

    path = Path(path)
    if _is_torchscript(path):
        raise ValueError(
            f"{path} is a TorchScript archive (OpenAI's released CLIP .pt files are): it can only be read by "
            "executing its pickled code, which this loader refuses. On a trusted machine run "
            "`m, _ = clip.load(PATH, jit=False); torch.save(m.state_dict(), OUT)` and convert OUT."
        )
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    out = {}
    for key, value in obj.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            out[key] = (value.float() if value.is_floating_point() else value).numpy()
        elif isinstance(value, (int, float)):
            out[key] = np.asarray(value)
        else:
            raise ValueError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
    return out


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    sd = read_safetensors(path) if path.suffix == ".safetensors" else read_torch(path)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


# ----------------------------------------------------------------------------------------------
# Name mapping. Each source is first brought to OpenAI's layout (`visual.transformer.resblocks.
# {i}.attn.in_proj_weight`, ...) with torch shapes, then to Flax.


def _hf_to_openai(sd: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """HF CLIPModel names -> OpenAI names (q/k/v fused, projections transposed to [width, embed]).
    Returns the renamed dict and `{openai_name: hf_name(s)}` for error messages."""
    out, origin = {}, {}

    def put(name, value, *sources):
        out[name] = value
        origin[name] = " + ".join(sources)

    simple = {
        "vision_model.embeddings.class_embedding": "visual.class_embedding",
        "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
        "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
        "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
        "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
        "vision_model.post_layernorm.weight": "visual.ln_post.weight",
        "vision_model.post_layernorm.bias": "visual.ln_post.bias",
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
        "logit_scale": "logit_scale",
    }
    layer_parts = {
        "layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
        "self_attn.out_proj": "attn.out_proj",
    }
    used = set()
    for hf, oa in simple.items():
        if hf in sd:
            put(oa, sd[hf], hf)
            used.add(hf)
    for hf, oa in (("visual_projection.weight", "visual.proj"), ("text_projection.weight", "text_projection")):
        if hf in sd:
            put(oa, sd[hf].T, hf)
            used.add(hf)
    layer_re = re.compile(r"(vision|text)_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)")
    qkv: dict[tuple[str, str, str], dict[str, str]] = {}
    for key in sd:
        m = layer_re.fullmatch(key)
        if not m:
            continue
        tower, idx, part, kind = m.groups()
        prefix = ("visual.transformer" if tower == "vision" else "transformer") + f".resblocks.{idx}"
        if part in layer_parts:
            put(f"{prefix}.{layer_parts[part]}.{kind}", sd[key], key)
            used.add(key)
        elif part in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            qkv.setdefault((prefix, kind, "in_proj_" + kind), {})[part[10]] = key
    for (prefix, kind, name), parts in qkv.items():
        if sorted(parts) != ["k", "q", "v"]:
            raise ValueError(f"HF checkpoint: {prefix} has only {sorted(parts)} of the q/k/v projections")
        keys = [parts[c] for c in "qkv"]
        put(f"{prefix}.attn.{name}", np.concatenate([sd[k] for k in keys], axis=0), *keys)
        used.update(keys)
    for key in sd:
        if key not in used:
            out[key] = sd[key]  # left for the strictness check (ignored by rule, or reported)
            origin[key] = key
    return out, origin


def _count_blocks(sd, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    ids = {int(m.group(1)) for k in sd for m in [pattern.match(k)] if m}
    if ids != set(range(len(ids))):
        raise ValueError(f"checkpoint blocks under {prefix} are not numbered 0..n-1: {sorted(ids)}")
    return len(ids)


def _require(sd, key, origin):
    if key not in sd:
        raise ValueError(f"checkpoint has no tensor {origin.get(key, key)!r} (needed to read the architecture)")
    return sd[key]


def infer_config(sd, origin=None, *, act="quick_gelu", vision_heads=None, text_heads=None,
                 eot_token_id=49407) -> clip_model.CLIPConfig:
    """The `CLIPConfig` of an OpenAI-layout state dict, read off the tensor shapes."""
    origin = origin or {}
    conv = _require(sd, "visual.conv1.weight", origin)
    v_width, _, patch, _ = conv.shape
    v_pos = _require(sd, "visual.positional_embedding", origin)
    grid = int(round((v_pos.shape[0] - 1) ** 0.5))
    if grid * grid + 1 != v_pos.shape[0]:
        raise ValueError(f"visual positional embedding has {v_pos.shape[0]} rows, not 1 + a square grid")
    v_layers = _count_blocks(sd, "visual.transformer.resblocks")
    v_mlp = _require(sd, "visual.transformer.resblocks.0.mlp.c_fc.weight", origin).shape[0]
    proj = _require(sd, "visual.proj", origin)
    tok = _require(sd, "token_embedding.weight", origin)
    t_pos = _require(sd, "positional_embedding", origin)
    t_width = _require(sd, "ln_final.weight", origin).shape[0]
    t_layers = _count_blocks(sd, "transformer.resblocks")
    t_mlp = _require(sd, "transformer.resblocks.0.mlp.c_fc.weight", origin).shape[0]
    t_proj = _require(sd, "text_projection", origin)
    vision = clip_model.CLIPVisionConfig(
        image_size=int(patch * grid), patch_size=int(patch), width=int(v_width), layers=v_layers,
        num_heads=int(vision_heads or v_width // 64), mlp_ratio=v_mlp / v_width, embed_dim=int(proj.shape[1]), act=act,
    )
    text = clip_model.CLIPTextConfig(
        vocab_size=int(tok.shape[0]), context_length=int(t_pos.shape[0]), width=int(t_width), layers=t_layers,
        num_heads=int(text_heads or t_width // 64), mlp_ratio=t_mlp / t_width, embed_dim=int(t_proj.shape[1]),
        act=act, eot_token_id=int(eot_token_id),
    )
    for name, c in (("vision", vision), ("text", text)):
        if c.num_heads <= 0 or c.width % c.num_heads:
            raise ValueError(f"{name} width {c.width} is not divisible by num_heads {c.num_heads}; pass {name}_heads=")
    return clip_model.CLIPConfig(vision, text)


def _target(name: str, value: np.ndarray) -> tuple[tuple[str, ...], np.ndarray] | None:
    """OpenAI name + torch tensor -> (Flax path, array in Flax layout), None if not a model weight."""
    if name.startswith("visual."):
        tower, rest = "visual", name[len("visual.") :]
    else:
        tower, rest = "text", name
    if rest == "logit_scale" and tower == "text":
        return ("logit_scale",), value.reshape(())
    direct = {
        ("visual", "class_embedding"): ("class_embedding",),
        ("visual", "positional_embedding"): ("positional_embedding",),
        ("visual", "proj"): ("proj",),
        ("text", "positional_embedding"): ("positional_embedding",),
        ("text", "text_projection"): ("text_projection",),
        ("text", "token_embedding.weight"): ("token_embedding", "embedding"),
    }
    if (tower, rest) in direct:
        return (tower,) + direct[(tower, rest)], value
    if (tower, rest) == ("visual", "conv1.weight"):
        return ("visual", "conv1", "kernel"), value.transpose(2, 3, 1, 0)
    m = re.fullmatch(r"(ln_pre|ln_post|ln_final)\.(weight|bias)", rest)
    if m and (m.group(1) == "ln_final") == (tower == "text"):
        return (tower, m.group(1), "scale" if m.group(2) == "weight" else "bias"), value
    m = re.fullmatch(r"transformer\.resblocks\.(\d+)\.(.+)", rest)
    if not m:
        return None
    block, part = f"resblocks_{m.group(1)}", m.group(2)
    m2 = re.fullmatch(r"(ln_1|ln_2)\.(weight|bias)", part)
    if m2:
        return (tower, block, m2.group(1), "scale" if m2.group(2) == "weight" else "bias"), value
    linear = {"attn.in_proj_weight": ("attn", "in_proj", "kernel"), "attn.in_proj_bias": ("attn", "in_proj", "bias"),
              "attn.out_proj.weight": ("attn", "out_proj", "kernel"), "attn.out_proj.bias": ("attn", "out_proj", "bias"),
              "mlp.c_fc.weight": ("c_fc", "kernel"), "mlp.c_fc.bias": ("c_fc", "bias"),
              "mlp.c_proj.weight": ("c_proj", "kernel"), "mlp.c_proj.bias": ("c_proj", "bias")}
    if part in linear:
        path = linear[part]
        return (tower, block) + path, value.T if path[-1] == "kernel" else value
    return None


def _expected_shapes(config: clip_model.CLIPConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
    import jax
    import jax.numpy as jnp

    model = clip_model.CLIP(config)
    v, t = config.vision, config.text
    shapes = jax.eval_shape(
        model.init,
        jax.random.PRNGKey(0),
        jnp.zeros((1, v.image_size, v.image_size, 3), jnp.float32),
        jnp.zeros((1, t.context_length), jnp.int32),
    )
    return {k: tuple(x.shape) for k, x in traverse_util.flatten_dict(shapes["params"]).items()}


def convert_state_dict(sd: Mapping[str, np.ndarray], source: str, *, act: str | None = None,
                       vision_heads: int | None = None, text_heads: int | None = None,
                       eot_token_id: int = 49407, origin: Mapping[str, str] | None = None):
    """An OpenAI / open_clip / HF-layout state dict (numpy) -> `(params, CLIPConfig)`; strict."""
    if source not in SOURCES:
        raise ValueError(f"unknown CLIP source {source!r}; known: {', '.join(SOURCES)}")
    source = SOURCES[source]
    sd = dict(sd)
    origin = dict(origin or {k: k for k in sd})
    if source == "hf":
        sd, hf_origin = _hf_to_openai(sd)
        origin = {k: hf_origin[k] for k in sd}
    if source == "open_clip" and "token_embedding.weight" not in sd and "text.token_embedding.weight" in sd:
        # CustomTextCLIP: the text tower is the module `text` (same names below it).
        renamed = {(k[len("text."):] if k.startswith("text.") else k): k for k in sd}
        sd = {new: sd[old] for new, old in renamed.items()}
        origin = {new: origin.get(old, old) for new, old in renamed.items()}
    if act is None:
        act = {"openai": "quick_gelu", "open_clip": "gelu", "hf": "quick_gelu"}[source]
    config = infer_config(sd, origin, act=act, vision_heads=vision_heads, text_heads=text_heads,
                          eot_token_id=eot_token_id)
    expected = _expected_shapes(config)
    ignore = [(re.compile(p), why) for p, why in IGNORED[source]]
    flat, errors, unused = {}, [], []
    for name, value in sd.items():
        mapped = _target(name, np.asarray(value))
        if mapped is None or mapped[0] not in expected:
            if not any(r.fullmatch(origin.get(name, name)) or r.fullmatch(name) for r, _ in ignore):
                unused.append(origin.get(name, name))
            continue
        path, array = mapped
        if path in flat:
            errors.append(f"{'/'.join(path)} filled twice (last from {origin.get(name, name)!r})")
        if tuple(array.shape) != expected[path]:
            errors.append(f"{origin.get(name, name)!r} -> {'/'.join(path)}: shape {tuple(array.shape)}, "
                          f"expected {expected[path]}")
            continue
        flat[path] = np.asarray(array, np.float32)
    missing = sorted("/".join(p) for p in expected if p not in flat)
    if missing:
        errors.append(f"target parameters with no source tensor: {missing}")
    if unused:
        errors.append(f"source tensors not used by any rule: {sorted(unused)}")
    if errors:
        raise ValueError(f"CLIP ({source}) -> Flax conversion failed:\n  " + "\n  ".join(errors))
    return traverse_util.unflatten_dict(flat), config


def _hf_config_options(path: Path) -> dict:
    """heads / activation / EOS id from the `config.json` beside an HF checkpoint, if present."""
    config_path = path.parent / "config.json"
    if not config_path.is_file():
        return {}
    cfg = json.loads(config_path.read_text())
    vision, text = cfg.get("vision_config", {}), cfg.get("text_config", {})
    acts = {vision.get("hidden_act", "quick_gelu"), text.get("hidden_act", "quick_gelu")}
    if len(acts) != 1:
        raise ValueError(f"{config_path}: different vision/text activations {sorted(acts)} are not supported")
    act = acts.pop()
    act = {"gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh"}.get(act, act)
    for name, sub in (("vision_config", vision), ("text_config", text)):
        eps = sub.get("layer_norm_eps", clip_model.LN_EPS)
        if abs(eps - clip_model.LN_EPS) > 1e-12:
            raise ValueError(f"{config_path}: {name}.layer_norm_eps={eps}; the Flax CLIP uses {clip_model.LN_EPS}")
    options = {"act": act}
    if "num_attention_heads" in vision:
        options["vision_heads"] = vision["num_attention_heads"]
    if "num_attention_heads" in text:
        options["text_heads"] = text["num_attention_heads"]
    eos = text.get("eos_token_id", 49407)
    if not isinstance(eos, int):
        raise ValueError(f"{config_path}: text_config.eos_token_id={eos!r}; a single integer id is supported")
    # transformers treats eos_token_id == 2 as the legacy config: pool at argmax(input_ids), i.e.
    # at the largest id, which for CLIP's vocabulary is <|endoftext|> = vocab_size - 1.
    options["eot_token_id"] = (text.get("vocab_size", 49408) - 1) if eos == 2 else eos
    return options


def load_clip_state_dict(path, source: str, *, act: str | None = None, vision_heads: int | None = None,
                         text_heads: int | None = None):
    """Reads a CLIP checkpoint file and returns `(params, CLIPConfig)` (see module docstring).

    Args:
      path: .safetensors, or a torch state dict file (.bin / .pt / .pth) read with weights_only.
      source: 'openai' | 'open_clip' | 'hf' (or 'openai-clip' | 'open-clip' | 'hf-clip').
      act: 'quick_gelu' | 'gelu' | 'gelu_tanh'; default: OpenAI/HF config -> quick_gelu (HF: its
        config.json), open_clip -> gelu.
      vision_heads, text_heads: attention heads (default config.json for hf, else width // 64).

    Returns:
      params `{'visual': ..., 'text': ..., 'logit_scale': ...}` (numpy float32) for
      `models.clip.CLIP(config)`; `params['visual']` is the `clip` backbone's subtree.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown CLIP source {source!r}; known: {', '.join(SOURCES)}")
    path = Path(path)
    sd = read_state_dict(path)
    options = {}
    if SOURCES[source] == "hf":
        options = _hf_config_options(path)
    if act is not None:
        options["act"] = act
    if vision_heads is not None:
        options["vision_heads"] = vision_heads
    if text_heads is not None:
        options["text_heads"] = text_heads
    try:
        return convert_state_dict(sd, source, **options)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def backbone_kwargs(config: clip_model.CLIPConfig) -> dict:
    """`models.create('clip', **backbone_kwargs(config), heads=...)` for a converted image tower."""
    kwargs = {"variant": "vit_b16"}
    for name, variant in clip_model.VARIANTS.items():
        if variant.vision == config.vision:
            kwargs["variant"] = name
    kwargs.update({k: v for k, v in vars(config.vision).items()})
    return kwargs


def read_conversion(clip_dir: str | Path) -> dict:
    """`convert.json` of a CLIP conversion directory (`aesthetics-jax convert --from openai-clip|
    open-clip|hf-clip FILE --arch clip --out DIR`); ValueError naming the directory if it has none.
    Read by the models built on a converted CLIP (convert/laion.py, zeroshot/clip_iqa.py)."""
    clip_dir = Path(clip_dir)
    meta_path = clip_dir / "convert.json"
    if not meta_path.is_file():
        raise ValueError(f"{clip_dir}: no convert.json; give the output directory of `aesthetics-jax convert "
                         "--from openai-clip|open-clip|hf-clip FILE --arch clip --out DIR`")
    return json.loads(meta_path.read_text())


def is_conversion(path: str | Path) -> bool:
    """Whether `path` is a whole-CLIP conversion directory (convert.json + clip/)."""
    path = Path(path)
    return (path / "convert.json").is_file() and (path / "clip").is_dir()


def load_conversion(clip_dir: str | Path) -> tuple[clip_model.CLIPConfig, dict]:
    """A CLIP conversion directory (`aesthetics-jax convert --from openai-clip|open-clip|hf-clip FILE
    --arch clip --out DIR`) -> `(CLIPConfig, params)` of the whole CLIP (`DIR/clip`: `visual`,
    `text`, `logit_scale`). Read by CLIP-IQA and by the trainer's `init_from` (VLAP from a
    converted checkpoint)."""
    clip_dir = Path(clip_dir)
    meta = read_conversion(clip_dir)
    if "clip_config" not in meta or not (clip_dir / "clip").is_dir():
        raise ValueError(f"{clip_dir}: not a full-CLIP conversion (needs convert.json['clip_config'] and {clip_dir}/clip/, "
                         "written by `aesthetics-jax convert ... --arch clip`); zero-shot scoring and VLAP need the "
                         "text tower")
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

    with ocp.StandardCheckpointer() as ckptr:
        params = ckptr.restore(str((clip_dir / "clip").absolute()))
    return clip_model.CLIPConfig.from_dict(meta["clip_config"]), params
