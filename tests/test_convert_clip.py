"""CLIP weight import: a tiny random `transformers.CLIPModel` (CPU torch) saved in its native
formats (save_pretrained safetensors / .bin) and the same tensors rewritten in OpenAI's and
open_clip's key layouts -> `convert.clip.load_clip_state_dict` (and `aesthetics-jax convert`) ->
`models.clip.CLIP`; image embeddings, text embeddings and logits_per_image must match
transformers to max abs diff <= 1e-4 in float32 (logits, scaled by 100: <= 1e-5 relative to the
largest logit where that is larger)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from aesthetics_jax import models  # noqa: E402
from aesthetics_jax.convert import clip as clip_convert  # noqa: E402
from aesthetics_jax.models import clip as clip_model  # noqa: E402
from aesthetics_jax.models import clip_tokenizer  # noqa: E402
from aesthetics_jax.models import preprocessing  # noqa: E402

PROMPTS = ["a photo of a cat", "a blurry, badly exposed photo", "an award-winning landscape photograph",
           "HDR sunset!!! 123"]
CONTEXT = 16


def _hf_model(act: str, seed: int = 0, *, head_dim_64: bool = False, eos_token_id: int = 49407):
    """Tiny CLIPModel. head_dim_64: OpenAI's convention (heads = width // 64), which OpenAI /
    open_clip state dicts rely on (they do not store the head count)."""
    v_width, v_heads, t_width, t_heads = (128, 2, 64, 1) if head_dim_64 else (48, 4, 32, 4)
    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=t_width, intermediate_size=80, num_hidden_layers=2,
                         num_attention_heads=t_heads, max_position_embeddings=CONTEXT, hidden_act=act,
                         eos_token_id=eos_token_id),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=v_width, intermediate_size=96,
                           num_hidden_layers=2, num_attention_heads=v_heads, hidden_act=act),
        projection_dim=24,
    )
    torch.manual_seed(seed)
    model = transformers.CLIPModel(cfg).eval()
    with torch.no_grad():  # HF's init is nearly trivial (std 0.02, LN = identity): perturb everything
        for name, p in model.named_parameters():
            if name == "logit_scale":
                p.fill_(float(np.log(100.0)))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    return model


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    tokens = clip_tokenizer.tokenize(PROMPTS, context_length=CONTEXT)
    return images, tokens


def _hf_outputs(model, images, tokens):
    pixels = np.asarray(preprocessing.normalize(images, "clip"))  # NHWC float32
    pv = torch.from_numpy(pixels.copy()).permute(0, 3, 1, 2).contiguous()
    ids = torch.from_numpy(tokens.astype(np.int64))
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=pv)
        img = model.get_image_features(pixel_values=pv)
        txt = model.get_text_features(input_ids=ids)
    img = getattr(img, "pooler_output", img)
    txt = getattr(txt, "pooler_output", txt)
    return {"image": img.numpy(), "text": txt.numpy(), "logits": out.logits_per_image.numpy()}, pixels


def _ours(params, config, pixels, tokens):
    apply = jax.jit(clip_model.CLIP(config).apply)
    logits, img, txt = apply({"params": params}, jnp.asarray(pixels), jnp.asarray(tokens))
    return {"image": np.asarray(img), "text": np.asarray(txt), "logits": np.asarray(logits)}


def _assert_match(ours, ref, keys=("image", "text", "logits")):
    for key in keys:
        assert ours[key].shape == ref[key].shape, key
        diff = float(np.abs(ours[key] - ref[key]).max())
        bound = max(1e-4, 1e-5 * float(np.abs(ref[key]).max()))
        assert diff <= bound, f"{key}: max abs diff {diff:.3g} > {bound:.3g}"


@pytest.fixture(scope="module")
def hf_quickgelu(tmp_path_factory):
    model = _hf_model("quick_gelu")
    out = tmp_path_factory.mktemp("hf_clip")
    model.save_pretrained(out)  # model.safetensors + config.json
    images, tokens = _inputs()
    ref, pixels = _hf_outputs(model, images, tokens)
    return model, out, images, tokens, pixels, ref


def test_hf_safetensors_parity(hf_quickgelu):
    model, out, images, tokens, pixels, ref = hf_quickgelu
    assert (out / "model.safetensors").is_file()
    params, config = clip_convert.load_clip_state_dict(out / "model.safetensors", "hf-clip")
    assert config.vision == clip_model.CLIPVisionConfig(image_size=32, patch_size=8, width=48, layers=2, num_heads=4,
                                                        mlp_ratio=2.0, embed_dim=24, act="quick_gelu")
    assert (config.text.num_heads, config.text.context_length, config.text.mlp_ratio) == (4, CONTEXT, 2.5)
    _assert_match(_ours(params, config, pixels, tokens), ref)
    # Large logits (scale 100): the relative bound is what applies there.
    assert np.abs(ref["logits"]).max() > 10


def test_hf_pytorch_bin_parity(hf_quickgelu, tmp_path):
    """`pytorch_model.bin` as transformers 4.x wrote it (a torch.save'd state dict; transformers 5
    writes only safetensors), with config.json beside it; read with weights_only=True."""
    model, _, images, tokens, pixels, ref = hf_quickgelu
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    model.config.save_pretrained(tmp_path)
    params, config = clip_convert.load_clip_state_dict(tmp_path / "pytorch_model.bin", "hf")
    assert config.vision.num_heads == config.text.num_heads == 4  # from config.json, not width // 64
    _assert_match(_ours(params, config, pixels, tokens), ref)


# --- OpenAI / open_clip layouts, built by renaming the HF tensors (mapping written independently
# of the converter: HF -> OpenAI's `model.py` names and shapes).

def _hf_to_openai_names(sd):
    out = {}
    for key, value in sd.items():
        v = value.clone()
        if key.endswith("position_ids"):
            continue
        tower_v = key.startswith("vision_model.")
        if key == "logit_scale":
            out["logit_scale"] = v
        elif key == "visual_projection.weight":
            out["visual.proj"] = v.T.contiguous()
        elif key == "text_projection.weight":
            out["text_projection"] = v.T.contiguous()
        elif key.endswith("embeddings.class_embedding"):
            out["visual.class_embedding"] = v
        elif key.endswith("embeddings.patch_embedding.weight"):
            out["visual.conv1.weight"] = v
        elif key.endswith("embeddings.position_embedding.weight"):
            out["visual.positional_embedding" if tower_v else "positional_embedding"] = v
        elif key.endswith("token_embedding.weight"):
            out["token_embedding.weight"] = v
        elif ".pre_layrnorm." in key:
            out["visual.ln_pre." + key.rsplit(".", 1)[1]] = v
        elif ".post_layernorm." in key:
            out["visual.ln_post." + key.rsplit(".", 1)[1]] = v
        elif ".final_layer_norm." in key:
            out["ln_final." + key.rsplit(".", 1)[1]] = v
        elif ".encoder.layers." in key:
            rest = key.split(".encoder.layers.", 1)[1]
            idx, part = rest.split(".", 1)
            prefix = ("visual.transformer" if tower_v else "transformer") + f".resblocks.{idx}."
            kind = part.rsplit(".", 1)[1]
            if part.startswith("self_attn.q_proj"):
                base = key.replace("q_proj", "{}")
                out[prefix + f"attn.in_proj_{kind}"] = torch.cat([sd[base.format(c)] for c in ("q_proj", "k_proj", "v_proj")])
            elif part.startswith(("self_attn.k_proj", "self_attn.v_proj")):
                continue
            else:
                names = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
                         "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
                out[prefix + names[part.rsplit(".", 1)[0]] + "." + kind] = v
        else:
            raise AssertionError(f"unmapped HF key {key}")
    return out


def test_openai_state_dict_parity(hf_quickgelu, tmp_path):
    model, _, _, tokens, pixels, ref = hf_quickgelu
    sd = _hf_to_openai_names(model.state_dict())
    sd["input_resolution"] = torch.tensor(32)  # OpenAI metadata, ignored by rule
    sd["context_length"] = torch.tensor(CONTEXT)
    sd["vocab_size"] = torch.tensor(49408)
    torch.save(sd, tmp_path / "openai_sd.pt")
    params, config = clip_convert.load_clip_state_dict(tmp_path / "openai_sd.pt", "openai-clip",
                                                       vision_heads=4, text_heads=4)
    assert config.vision.act == "quick_gelu"
    _assert_match(_ours(params, config, pixels, tokens), ref)


def test_open_clip_checkpoint_gelu_parity(tmp_path):
    model = _hf_model("gelu", seed=1)
    images, tokens = _inputs(seed=1)
    ref, pixels = _hf_outputs(model, images, tokens)
    sd = _hf_to_openai_names(model.state_dict())
    sd["attn_mask"] = torch.full((CONTEXT, CONTEXT), float("-inf")).triu_(1)
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "epoch_3.pt")
    params, config = clip_convert.load_clip_state_dict(tmp_path / "epoch_3.pt", "open-clip",
                                                       vision_heads=4, text_heads=4)
    assert config.vision.act == config.text.act == "gelu"
    _assert_match(_ours(params, config, pixels, tokens), ref)
    # CustomTextCLIP layout: the text tower under `text.`.
    custom = {("text." + k if not k.startswith(("visual.", "logit_scale")) else k): v for k, v in sd.items()}
    torch.save(custom, tmp_path / "custom_text.bin")
    params2, _ = clip_convert.load_clip_state_dict(tmp_path / "custom_text.bin", "open_clip",
                                                   vision_heads=4, text_heads=4)
    for a, b in zip(jax.tree_util.tree_leaves(params2), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b)
    # The wrong activation is not silently close.
    wrong = _ours(params, clip_model.CLIPConfig(
        vision=clip_model.CLIPVisionConfig(**{**vars(config.vision), "act": "quick_gelu"}),
        text=clip_model.CLIPTextConfig(**{**vars(config.text), "act": "quick_gelu"})), pixels, tokens)
    assert np.abs(wrong["image"] - ref["image"]).max() > 1e-3


def test_bf16_safetensors_read(tmp_path):
    from safetensors.torch import save_file

    t = torch.randn(5, 7).to(torch.bfloat16)
    save_file({"w": t, "i": torch.arange(4)}, tmp_path / "x.safetensors")
    out = clip_convert.read_safetensors(tmp_path / "x.safetensors")
    np.testing.assert_array_equal(out["w"], t.float().numpy())
    np.testing.assert_array_equal(out["i"], np.arange(4))


def test_strict_errors_name_keys(hf_quickgelu, tmp_path):
    model = hf_quickgelu[0]
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    extra = dict(sd, **{"vision_model.extra_head.weight": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"not used by any rule.*vision_model\.extra_head\.weight"):
        clip_convert.convert_state_dict(extra, "hf", vision_heads=4, text_heads=4)
    missing = {k: v for k, v in sd.items() if k != "vision_model.encoder.layers.1.mlp.fc2.bias"}
    with pytest.raises(ValueError, match=r"no source tensor.*visual/resblocks_1/c_proj/bias"):
        clip_convert.convert_state_dict(missing, "hf", vision_heads=4, text_heads=4)
    bad = dict(sd, **{"vision_model.post_layernorm.bias": np.zeros(5, np.float32)})
    with pytest.raises(ValueError, match=r"vision_model\.post_layernorm\.bias.*shape \(5,\)"):
        clip_convert.convert_state_dict(bad, "hf", vision_heads=4, text_heads=4)
    with pytest.raises(ValueError, match="unknown CLIP source"):
        clip_convert.convert_state_dict(sd, "keras")


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_archive_refused(tmp_path):
    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.lin(x)

    path = tmp_path / "ViT-B-32.pt"
    torch.jit.save(torch.jit.script(Tiny()), str(path))
    with pytest.raises(ValueError, match="TorchScript archive"):
        clip_convert.load_clip_state_dict(path, "openai")


def test_converter_module_imports_no_torch():
    code = ("import sys; from aesthetics_jax.convert import clip; "
            "assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_hf_legacy_eos_token_id(tmp_path):
    """Configs from before transformers PR #24773 (e.g. openai/clip-vit-base-patch32) say
    eos_token_id=2 and pool the text at argmax(input_ids); the converter maps that to EOT = 49407."""
    model = _hf_model("quick_gelu", seed=2, eos_token_id=2)
    images, tokens = _inputs(seed=2)
    ref, pixels = _hf_outputs(model, images, tokens)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["text_config"]["eos_token_id"] == 2
    params, config = clip_convert.load_clip_state_dict(tmp_path / "model.safetensors", "hf")
    assert config.text.eot_token_id == 49407
    _assert_match(_ours(params, config, pixels, tokens), ref)


def test_safetensors_truncated_file_is_a_clear_error(hf_quickgelu, tmp_path):
    src = hf_quickgelu[1] / "model.safetensors"
    broken = tmp_path / "model.safetensors"
    broken.write_bytes(src.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        clip_convert.read_safetensors(broken)


# --- `aesthetics-jax convert` end to end, one test per source format, on files written by torch /
# transformers / safetensors.


def _write_source(source, model, directory):
    if source == "hf-clip":
        model.save_pretrained(directory)
        return directory / "model.safetensors"
    sd = _hf_to_openai_names(model.state_dict())
    if source == "openai-clip":
        path = directory / "vit_tiny_state_dict.pt"
        torch.save(sd, path)
        return path
    from safetensors.torch import save_file

    path = directory / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


@pytest.mark.parametrize("source,act", [("hf-clip", "quick_gelu"), ("openai-clip", "quick_gelu"),
                                        ("open-clip", "gelu")])
def test_cli_convert(source, act, tmp_path):
    import orbax.checkpoint as ocp

    from aesthetics_jax.convert import commands
    from aesthetics_jax.train import checkpointing

    # OpenAI / open_clip files do not store head counts: heads = width // 64 as in their configs.
    model = _hf_model(act, seed=3, head_dim_64=True)
    images, tokens = _inputs(seed=3)
    ref, pixels = _hf_outputs(model, images, tokens)
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    src = _write_source(source, model, src_dir)
    out = tmp_path / "out"
    assert commands.main(["--from", source, str(src), "--arch", "clip", "--out", str(out)]) == 0

    meta = json.loads((out / "convert.json").read_text())
    assert meta["source"]["from"] == source and meta["backbone_only"] is True
    assert meta["model"]["name"] == "clip" and meta["model"]["preprocess"] == "clip"
    assert meta["model"]["act"] == act and meta["model"]["width"] == 128 and meta["model"]["num_heads"] == 2
    # The image tower as a backbone checkpoint: models.create(**model) fed raw uint8 pixels gives
    # transformers' image features.
    restored = checkpointing.restore_params(str(out / "checkpoints"))
    assert set(restored["params"]) == {"backbone"}
    net = models.create(**meta["model"], heads={"emd": {"type": "emd"}})
    variables = jax.eval_shape(net.init, jax.random.PRNGKey(0), jnp.asarray(images))
    head = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), variables["params"]["emd"])
    features = jax.jit(lambda v, x: net.apply(v, x, method="features"))(
        {"params": {"backbone": restored["params"]["backbone"], "emd": head}}, jnp.asarray(images))
    _assert_match({"image": np.asarray(features["pooled"])}, ref, keys=("image",))
    # The whole CLIP (both towers + logit scale) for zero-shot scoring.
    config = clip_model.CLIPConfig.from_dict(meta["clip_config"])
    with ocp.StandardCheckpointer() as ckptr:
        clip_params = ckptr.restore(os.path.abspath(out / "clip"))
    _assert_match(_ours(clip_params, config, pixels, tokens), ref)
