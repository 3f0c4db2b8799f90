"""LAION aesthetic predictor import: torch reference MLPs with random weights in the released key
layouts (v1 `nn.Linear`, v2 `layers.{0,2,4,6,7}`, v2 ReLU `layers.{0,3,6,9,11}`) saved with
torch.save, on a tiny random `transformers.CLIPModel` converted with `aesthetics-jax convert --from
hf-clip`; `aesthetics-jax convert --from laion-aesthetic` -> bundle -> `aesthetics_jax.predict` on
real photos must give the torch pipeline's score (transformers image embedding of the same
preprocessed pixels, L2-normalised, through the torch MLP) to <= 1e-4."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from aesthetics_jax.convert import commands  # noqa: E402
from aesthetics_jax.convert import laion  # noqa: E402
from aesthetics_jax.models import heads as heads_lib  # noqa: E402

EMBED = 24  # the tiny CLIP's projection_dim
CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


class V2(torch.nn.Module):
    """improved-aesthetic-predictor's MLP (released: no activation); relu=True: the ReLU variant."""

    def __init__(self, in_dim, relu=False):
        super().__init__()
        if relu:
            self.layers = torch.nn.Sequential(
                torch.nn.Linear(in_dim, 1024), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                torch.nn.Linear(1024, 128), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                torch.nn.Linear(128, 64), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
        else:
            self.layers = torch.nn.Sequential(
                torch.nn.Linear(in_dim, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128),
                torch.nn.Dropout(0.2), torch.nn.Linear(128, 64), torch.nn.Dropout(0.1), torch.nn.Linear(64, 16),
                torch.nn.Linear(16, 1))

    def forward(self, x):
        return self.layers(x)


def _mlp(variant, in_dim, seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Linear(in_dim, 1) if variant == "v1" else V2(in_dim, relu=variant == "v2_relu")
    with torch.no_grad():  # weights ~ 1/sqrt(fan_in) so the score neither vanishes nor explodes
        for m in net.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn_like(m.weight) * 1.5 / m.weight.shape[1] ** 0.5)
                m.bias.copy_(0.3 * torch.randn_like(m.bias))
            if m is not net and isinstance(m, torch.nn.Linear) and m.out_features == 1:
                m.bias.add_(5.0)
        if variant == "v1":
            net.bias.add_(5.0)
    return net.eval()


def _hf_clip():
    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=80, num_hidden_layers=1,
                         num_attention_heads=4, max_position_embeddings=16, hidden_act="quick_gelu"),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=48, intermediate_size=96,
                           num_hidden_layers=2, num_attention_heads=4, hidden_act="quick_gelu"),
        projection_dim=EMBED,
    )
    torch.manual_seed(0)
    model = transformers.CLIPModel(cfg).eval()
    with torch.no_grad():  # HF's init is nearly trivial: perturb everything
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from PIL import Image
    from skimage import data

    root = tmp_path_factory.mktemp("laion")
    model = _hf_clip()
    src = root / "hf"
    model.save_pretrained(src)
    clip_dir = root / "clip"
    assert commands.main(["--from", "hf-clip", str(src / "model.safetensors"), "--arch", "clip",
                          "--out", str(clip_dir)]) == 0
    photos = []
    for name in ("astronaut", "coffee", "chelsea"):
        path = root / f"{name}.png"
        Image.fromarray(getattr(data, name)()).save(path)
        photos.append(str(path))
    return model, clip_dir, photos, root


def _torch_scores(clip, mlp, photos, transform):
    from PIL import Image

    from aesthetics_jax.data import preprocessing

    pixels = np.stack([preprocessing.apply_transform(np.asarray(Image.open(p).convert("RGB")), transform)
                       for p in photos])
    x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0 - CLIP_MEAN) / CLIP_STD
    with torch.no_grad():
        emb = clip.get_image_features(pixel_values=x)
        emb = getattr(emb, "pooler_output", emb)
        emb = emb / emb.norm(dim=-1, keepdim=True)
        return mlp(emb)[:, 0].numpy()


@pytest.mark.parametrize("variant", ["v1", "v2", "v2_relu"])
def test_laion_bundle_parity(setup, variant):
    import aesthetics_jax

    clip, clip_dir, photos, root = setup
    mlp = _mlp(variant, EMBED, seed=len(variant))
    expected_keys = {"v1": ["bias", "weight"],
                     "v2": [f"layers.{i}.{k}" for i in (0, 2, 4, 6, 7) for k in ("bias", "weight")],
                     "v2_relu": [f"layers.{i}.{k}" for i in (0, 3, 6, 9, 11) for k in ("bias", "weight")]}
    assert sorted(mlp.state_dict()) == sorted(expected_keys[variant])  # the released layouts
    pth = root / f"{variant}.pth"
    torch.save(mlp.state_dict(), pth)
    out = root / f"bundle_{variant}"
    assert commands.main(["--from", "laion-aesthetic", str(pth), "--clip", str(clip_dir), "--out", str(out)]) == 0

    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["source"]["variant"] == variant
    from aesthetics_jax.export import bundle as bundle_lib
    assert provenance["source"]["sha256"] == bundle_lib.sha256_file(str(pth))
    loaded = bundle_lib.load(str(out), load_variables=False)
    hidden = {"v1": [], "v2": [1024, 128, 64, 16], "v2_relu": [1024, 128, 64, 16]}[variant]
    assert dict(loaded.heads) == {"laion": {"type": "scores", "names": ["laion_aesthetic"], "hidden": hidden,
                                            "activation": "relu" if variant == "v2_relu" else "none",
                                            "l2_normalize": True}}
    assert loaded.model_config["pooled"] == "projected"
    transform = loaded.transform
    size = loaded.image_size  # CLIP's preprocess: Resize(size, BICUBIC) + CenterCrop(size) (test_transforms.py)
    assert transform == {"name": "torchvision", "resize_size": size, "image_size": size, "bicubic": 1}

    results = aesthetics_jax.predict(photos, str(out))
    ours = np.array([r["scores"]["laion_aesthetic"] for r in results])
    ref = _torch_scores(clip, mlp, photos, transform)
    assert np.abs(ref).max() > 0.5 and np.ptp(ref) > 1e-3  # a non-trivial score
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)


def test_embed_dim_mismatch_refused(setup, tmp_path, capsys):
    _, clip_dir, _, _ = setup
    pth = tmp_path / "sac+logos+ava1-l14-linearMSE.pth"
    torch.save(_mlp("v2", 768).state_dict(), pth)
    with pytest.raises(ValueError, match=r"768-wide embeddings.*gives 24-wide"):
        laion.build(pth, clip_dir)
    assert commands.main(["--from", "laion-aesthetic", str(pth), "--clip", str(clip_dir),
                          "--out", str(tmp_path / "out")]) == 1
    assert "ViT-L/14" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unknown_layout_and_bad_shapes(tmp_path):
    from safetensors.torch import save_file

    seq = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    path = tmp_path / "other.pth"
    torch.save(seq.state_dict(), path)
    with pytest.raises(ValueError, match=r"other\.pth.*keys found: \['0\.bias', '0\.weight', '2\.bias', '2\.weight'\]"
                                         r".*v2: \[.*layers\.7\.weight"):
        laion.convert_state_dict(laion.read_weights(path), path)
    # A v2 file whose layers do not chain.
    sd = {k: v.clone() for k, v in _mlp("v2", 8).state_dict().items()}
    sd["layers.4.weight"] = torch.zeros(64, 100)
    with pytest.raises(ValueError, match=r"layers\.4\.weight: shape \[64, 100\] takes 100 inputs.*gives 128"):
        laion.convert_state_dict({k: v.numpy() for k, v in sd.items()}, "x.pth")
    # safetensors is read too; torch Linear [out, in] -> Flax kernel [in, out].
    lin = _mlp("v1", 8)
    save_file({k: v.contiguous() for k, v in lin.state_dict().items()}, str(tmp_path / "v1.safetensors"))
    variant, head, params, in_dim = laion.convert_state_dict(laion.read_weights(tmp_path / "v1.safetensors"))
    assert (variant, in_dim, head["hidden"], head["l2_normalize"]) == ("v1", 8, [], True)
    np.testing.assert_array_equal(params["dense"]["kernel"], lin.weight.detach().numpy().T)
    assert commands.main(["--from", "laion-aesthetic", str(path), "--out", str(tmp_path / "o")]) == 2  # no --clip


def test_scores_head_param_layout():
    x = jnp.ones((2, 6))
    default = heads_lib.build_head("aadb", {"type": "scores", "names": ["a", "b"]})
    params = default.init(jax.random.PRNGKey(0), x)["params"]
    assert jax.tree_util.tree_map(jnp.shape, params) == {"dense": {"kernel": (6, 2), "bias": (2,)}}
    mlp = heads_lib.build_head("laion", {"type": "scores", "names": ["s"], "hidden": [5, 3], "activation": "relu",
                                         "l2_normalize": True})
    params = mlp.init(jax.random.PRNGKey(0), x)["params"]
    assert jax.tree_util.tree_map(jnp.shape, params) == {
        "hidden_0": {"kernel": (6, 5), "bias": (5,)}, "hidden_1": {"kernel": (5, 3), "bias": (3,)},
        "dense": {"kernel": (3, 1), "bias": (1,)}}
    # l2_normalize: the scale of the input does not matter.
    out1 = mlp.apply({"params": params}, x)["scores"]
    out2 = mlp.apply({"params": params}, 7.0 * x)["scores"]
    np.testing.assert_allclose(out1, out2, rtol=1e-6)
    with pytest.raises(ValueError, match="activation"):
        heads_lib.build_head("h", {"type": "scores", "num_outputs": 1, "activation": "tanh"}).init(
            jax.random.PRNGKey(0), x)
