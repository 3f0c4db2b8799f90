"""CLIP-IQA through `predict` (`model="clip-iqa:DIR"`), `aesthetics-jax evaluate clip-iqa` and the
`clip_iqa` evaluator, on a tiny random transformers `CLIPModel` converted with `aesthetics-jax convert
--from hf-clip ... --arch clip`.

References are computed independently of the code under test: pixels by torchvision's own
`Resize(S, BICUBIC)` + `CenterCrop(S)` on the PIL image (CLIP's preprocess), scores by transformers
(`get_image_features` / `get_text_features`, L2-normalised, `logit_scale.exp()`, softmax over each
(positive, negative) pair) and, on the same pixels, `ClipIQA.from_dir(DIR)`; metrics by scipy on
the written CSV; labels from the AVA fixture's vote histograms. A LAION v1 predictor converted on the
same CLIP is checked through the predict CLI against torch.
"""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tv_transforms = pytest.importorskip("torchvision.transforms")
scipy_stats = pytest.importorskip("scipy.stats")
from PIL import Image  # noqa: E402

from aesthetics_jax import predict as predict_lib  # noqa: E402
from aesthetics_jax.models import clip_tokenizer  # noqa: E402
from aesthetics_jax.zeroshot import clip_iqa  # noqa: E402

SIZE, PATCH, CONTEXT = 32, 8, 16
LOGIT_SCALE = 8.0  # small enough that a random model's pair probabilities are not all 0 / 1
CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
GOOD = {"a.png": (40, 56), "b.png": (48, 48), "c.png": (70, 44)}  # name -> (height, width)


def _hf_model():
    cfg = transformers.CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, max_position_embeddings=CONTEXT, hidden_act="quick_gelu"),
        vision_config=dict(image_size=SIZE, patch_size=PATCH, hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=4, hidden_act="quick_gelu"),
        projection_dim=16,
    )
    torch.manual_seed(0)
    model = transformers.CLIPModel(cfg).eval()
    with torch.no_grad():  # HF's init is nearly trivial: perturb everything
        for name, p in model.named_parameters():
            if name == "logit_scale":
                p.fill_(float(np.log(LOGIT_SCALE)))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    return model


def _photo(h, w, seed):
    """Smooth colour fields (not noise: resizing must matter, and stay well conditioned)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    chans = [np.sin(rng.uniform(2, 9) * x + rng.uniform(1, 6) * y + rng.uniform(0, 6)) for _ in range(3)]
    return np.clip(np.round(127.5 + 120 * np.stack(chans, -1)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from aesthetics_jax.convert import commands

    root = tmp_path_factory.mktemp("clip_iqa_predict")
    model = _hf_model()
    model.save_pretrained(root / "hf")
    clip_dir = root / "clip"
    assert commands.main(["--from", "hf-clip", str(root / "hf" / "model.safetensors"), "--arch", "clip",
                          "--out", str(clip_dir)]) == 0
    folder = root / "photos"
    folder.mkdir()
    for k, (name, (h, w)) in enumerate(GOOD.items()):
        Image.fromarray(_photo(h, w, k)).save(folder / name)  # PNG: PIL decodes it in predict and here
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)))
    (folder / "empty.png").write_bytes(b"")
    return dict(root=root, model=model, clip=str(clip_dir), folder=str(folder))


def _predictor(setup, batch_size=32, **options):
    """One loaded `clip-iqa:DIR` predictor per option set (loading + compiling costs seconds)."""
    key = (batch_size, tuple(sorted(options.items())))
    cache = setup.setdefault("predictors", {})
    if key not in cache:
        cache[key] = predict_lib.load_predictor(f"clip-iqa:{setup['clip']}", batch_size=batch_size, **options)
    return cache[key]


def _clip_pixels(path, size):
    """CLIP's preprocess up to the tensor: torchvision Resize(size, BICUBIC) + CenterCrop(size)."""
    pil = Image.open(path).convert("RGB")
    resize = tv_transforms.Resize(size, interpolation=tv_transforms.InterpolationMode.BICUBIC)
    pil = tv_transforms.CenterCrop(size)(resize(pil))
    return np.asarray(pil)


def _torch_pairs(model, images, pairs, interpolate=False):
    """transformers reference: softmax over (positive, negative) of exp(logit_scale) * cosine."""
    pv = (torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0 - CLIP_MEAN) / CLIP_STD
    tokens = clip_tokenizer.tokenize([t for p in pairs for t in p], context_length=CONTEXT)
    ids = torch.from_numpy(tokens.astype(np.int64))
    with torch.no_grad():
        img = model.get_image_features(pixel_values=pv, interpolate_pos_encoding=interpolate)
        txt = model.get_text_features(input_ids=ids)
        img, txt = getattr(img, "pooler_output", img), getattr(txt, "pooler_output", txt)
        img, txt = img / img.norm(dim=-1, keepdim=True), txt / txt.norm(dim=-1, keepdim=True)
        logits = model.logit_scale.exp() * img @ txt.T
        return logits.reshape(len(images), -1, 2).softmax(-1)[..., 0].numpy()


def test_predict_equals_clipiqa_and_transformers(setup):
    folder = setup["folder"]
    results = predict_lib.predict([folder, os.path.join(folder, "missing.png")], model=f"clip-iqa:{setup['clip']}",
                                  prompts="pyiqa", batch_size=2)  # the one-line API with a model string
    names = sorted([*GOOD, "corrupt.jpg", "empty.png"])
    assert [r["image"] for r in results] == [os.path.join(folder, n) for n in names + ["missing.png"]]
    by_name = {os.path.basename(r["image"]): r for r in results}
    assert set(by_name["corrupt.jpg"]) == {"image", "error"} and "image" in by_name["corrupt.jpg"]["error"]
    assert by_name["empty.png"]["error"].startswith("empty_image")
    assert by_name["missing.png"]["error"] == "missing_image: file not found"

    pairs = clip_iqa.PROMPT_SETS["pyiqa"]
    labels = [f"{p}|{n}" for p, n in pairs]
    pixels = [_clip_pixels(os.path.join(folder, n), SIZE) for n in GOOD]
    assert all(p.shape == (SIZE, SIZE, 3) for p in pixels)
    ours = np.array([[by_name[n]["clip_iqa_pairs"][label] for label in labels] for n in GOOD])
    for n in GOOD:
        item = by_name[n]
        assert set(item) == {"image", "clip_iqa", "clip_iqa_pairs"} and list(item["clip_iqa_pairs"]) == labels
        assert item["clip_iqa"] == pytest.approx(np.mean(list(item["clip_iqa_pairs"].values())), abs=1e-6)
        assert 0.0 <= item["clip_iqa"] <= 1.0
    direct, mean = clip_iqa.ClipIQA.from_dir(setup["clip"], "pyiqa")(np.stack(pixels))
    np.testing.assert_allclose(ours, direct, atol=1e-6, rtol=0)
    np.testing.assert_allclose([by_name[n]["clip_iqa"] for n in GOOD], mean, atol=1e-6, rtol=0)
    ref = _torch_pairs(setup["model"], pixels, pairs)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
    assert ((ref > 0.02) & (ref < 0.98)).mean() > 0.5 and np.ptp(ref.mean(1)) > 1e-3  # not degenerate


def test_arrays_augmented_and_batch_sizes(setup):
    paths = [os.path.join(setup["folder"], n) for n in GOOD]
    model = _predictor(setup)
    by_path = predict_lib.predict(paths, model=model)
    by_one = predict_lib.predict(paths, model=_predictor(setup, batch_size=1))
    arrays = [np.asarray(Image.open(p).convert("RGB")).astype(np.float32) for p in paths]  # float [0, 255]
    from_arrays = predict_lib.predict(arrays, model=model)
    for a, b, c in zip(by_path, by_one, from_arrays):
        assert a["clip_iqa"] == pytest.approx(b["clip_iqa"], abs=1e-6) == c["clip_iqa"]
    (aug,) = predict_lib.predict(paths[0], model=model, augmented=True)
    pixels = _clip_pixels(paths[0], SIZE)
    ref = _torch_pairs(setup["model"], [pixels, pixels[:, ::-1].copy()], clip_iqa.PROMPT_SETS["default"])
    assert aug["clip_iqa"] == pytest.approx(float(ref.mean()), abs=1e-4)
    assert aug["clip_iqa"] != pytest.approx(by_path[0]["clip_iqa"], abs=1e-6)


def test_interpolate_native_and_sized(setup):
    folder = setup["folder"]
    paths = [os.path.join(folder, n) for n in GOOD]
    native = predict_lib.predict(paths, model=_predictor(setup, prompts="ava_attributes", pos_embed="interpolate"))
    pairs = clip_iqa.PROMPT_SETS["ava_attributes"]
    for path, item in zip(paths, native):  # each image whole, at its own size (40x56 -> a 5x7 grid, ...)
        pixels = np.asarray(Image.open(path).convert("RGB"))
        h, w = (s // PATCH * PATCH for s in pixels.shape[:2])  # trailing pixels dropped, as the patch conv does
        ref = _torch_pairs(setup["model"], [pixels[:h, :w]], pairs, interpolate=True)[0]
        np.testing.assert_allclose(list(item["clip_iqa_pairs"].values()), ref, atol=1e-4, rtol=0)
    sized = predict_lib.predict(paths, model=f"clip-iqa:{setup['clip']}", pos_embed="interpolate", image_size=48,
                                kernel="bilinear")
    pixels = [_clip_pixels(p, 48) for p in paths]
    iqa = clip_iqa.ClipIQA.from_dir(setup["clip"], pos_embed="interpolate", kernel="bilinear")
    np.testing.assert_allclose([r["clip_iqa"] for r in sized], iqa(np.stack(pixels))[1], atol=1e-6, rtol=0)
    # an image smaller than one patch is a per-item error at native size
    (tiny,) = predict_lib.predict(np.zeros((5, 40, 3), np.uint8),
                                  model=_predictor(setup, prompts="ava_attributes", pos_embed="interpolate"))
    assert "smaller than one 8x8 patch" in tiny["error"]


def test_prompt_file_and_option_errors(setup, tmp_path):
    model = f"clip-iqa:{setup['clip']}"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# look\nSharp photo.|Blurry photo.\n\n  Bright photo. | Dark photo.  \n")
    path = os.path.join(setup["folder"], "b.png")
    (item,) = predict_lib.predict(path, model=model, prompts=str(prompts))
    assert list(item["clip_iqa_pairs"]) == ["Sharp photo.|Blurry photo.", "Bright photo.|Dark photo."]
    (pyiqa,) = predict_lib.predict(path, model=_predictor(setup, batch_size=2, prompts="pyiqa"))
    assert item["clip_iqa_pairs"]["Sharp photo.|Blurry photo."] != pytest.approx(
        pyiqa["clip_iqa_pairs"]["Sharp image|blurry image"], abs=1e-6)  # the prompts are live
    bad = tmp_path / "bad.txt"
    bad.write_text("Good photo.|Bad photo.\nno separator here\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: expected 'positive\|negative'"):
        predict_lib.predict(path, model=model, prompts=str(bad))
    with pytest.raises(ValueError, match="unknown CLIP-IQA prompt set 'nope'"):
        predict_lib.predict(path, model=model, prompts="nope")
    with pytest.raises(ValueError, match=r"pos_embed='none' scores at the model's image_size 32; got image_size=48"):
        predict_lib.predict(path, model=model, image_size=48)
    with pytest.raises(ValueError, match="jax backend only"):
        predict_lib.predict(path, model=model, backend="onnx")
    with pytest.raises(FileNotFoundError, match="no directory"):
        predict_lib.predict(path, model=f"clip-iqa:{tmp_path / 'nope'}")
    with pytest.raises(ValueError, match="no convert.json"):
        predict_lib.predict(path, model=f"clip-iqa:{tmp_path}")
    with pytest.raises(ValueError, match="prompts: option"):
        predict_lib.predict(path, model=str(tmp_path / "some.bundle"), prompts="pyiqa")


def test_cli_json_csv_and_exit_codes(setup, capsys):
    folder, model = setup["folder"], f"clip-iqa:{setup['clip']}"
    assert predict_lib.main([folder, "--model", model, "--no-cache", "--batch-size", "2"]) == 1  # bad files inside
    out = capsys.readouterr()
    lines = [json.loads(line) for line in out.out.strip().splitlines()]
    api = predict_lib.predict(folder, model=_predictor(setup, batch_size=2))
    assert [x["image"] for x in lines] == [x["image"] for x in api]
    for a, b in zip(lines, api):
        assert a.keys() == b.keys()
        if "error" not in a:
            assert a["clip_iqa"] == pytest.approx(b["clip_iqa"], abs=1e-7)
    assert "2 failed" in out.err
    good = [os.path.join(folder, n) for n in GOOD]
    assert predict_lib.main(good + ["--model", model, "--format", "csv", "--quiet", "--no-cache",
                                    "--prompts", "pyiqa", "--batch-size", "2"]) == 0  # the reference's batches
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    labels = [f"{p}|{n}" for p, n in clip_iqa.PROMPT_SETS["pyiqa"]]
    assert list(rows[0]) == ["image", "clip_iqa", *(f"clip_iqa_pairs.{x}" for x in labels), "error"]
    assert [r["image"] for r in rows] == good and all(r["error"] == "" for r in rows)
    ref = predict_lib.predict(good, model=_predictor(setup, batch_size=2, prompts="pyiqa"))
    for row, item in zip(rows, ref):
        assert float(row["clip_iqa"]) == pytest.approx(item["clip_iqa"], abs=1e-7)
        assert float(row[f"clip_iqa_pairs.{labels[2]}"]) == pytest.approx(item["clip_iqa_pairs"][labels[2]], abs=1e-7)
    assert predict_lib.main(good + ["--model", "clip-iqa:/nonexistent/clip", "--quiet", "--no-cache"]) == 2
    assert "no directory /nonexistent/clip" in capsys.readouterr().err
    assert predict_lib.main(good + ["--model", model, "--quiet", "--no-cache", "--pos-embed", "none",
                                    "--image-size", "64"]) == 2
    assert "pos_embed='interpolate'" in capsys.readouterr().err


def test_laion_bundle_through_predict_cli(setup, capsys):
    """A LAION v1 predictor (random torch Linear, the released key layout) converted on the same
    CLIP: `aesthetics-jax predict --format csv` gives `scores.laion_aesthetic` = torch's score."""
    from aesthetics_jax.convert import commands

    root = setup["root"]
    torch.manual_seed(3)
    linear = torch.nn.Linear(16, 1)
    with torch.no_grad():
        linear.weight.copy_(torch.randn_like(linear.weight) * 2.0)
        linear.bias.fill_(5.0)
    torch.save(linear.state_dict(), root / "laion_v1.pth")
    bundle = root / "laion_bundle"
    assert commands.main(["--from", "laion-aesthetic", str(root / "laion_v1.pth"), "--clip", setup["clip"],
                          "--out", str(bundle)]) == 0
    capsys.readouterr()
    good = [os.path.join(setup["folder"], n) for n in GOOD]
    assert predict_lib.main(good + ["--model", str(bundle), "--format", "csv", "--quiet", "--no-cache"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == ["image", "scores.laion_aesthetic", "error"]
    pv = (torch.from_numpy(np.stack([_clip_pixels(p, SIZE) for p in good])).permute(0, 3, 1, 2).float() / 255.0
          - CLIP_MEAN) / CLIP_STD
    with torch.no_grad():
        emb = setup["model"].get_image_features(pixel_values=pv)
        emb = getattr(emb, "pooler_output", emb)
        ref = linear(emb / emb.norm(dim=-1, keepdim=True))[:, 0].numpy()
    np.testing.assert_allclose([float(r["scores.laion_aesthetic"]) for r in rows], ref, atol=1e-4, rtol=0)
    assert np.ptp(ref) > 1e-2


# ----------------------------------------------------------------------------- evaluation


@pytest.fixture(scope="module")
def ava(setup):
    from ava_fixture import write_ava_fixture

    manual = setup["root"] / "ava"
    fixture = write_ava_fixture(manual)
    return dict(manual=str(manual), data_dir=str(setup["root"] / "tfds"), good=fixture["good"])


def test_evaluate_cli_on_ava_fixture(setup, ava, tmp_path, capsys):
    from aesthetics_jax.evaluate import commands

    out = tmp_path / "eval"
    rc = commands.main(["clip-iqa", "--clip", setup["clip"], "--manual_dir", ava["manual"], "--data_dir",
                        ava["data_dir"], "--split", "train", "--prompts", "pyiqa", "--out", str(out), "--quiet",
                        "--batch-size", "4"])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    metrics = json.loads((out / "train_metrics.json").read_text())
    with open(out / "train_predictions.csv") as f:
        rows = list(csv.DictReader(f))
    train_ids = sorted(i for i, row in ava["good"].items() if not row["test"])
    assert sorted(int(r["id"]) for r in rows) == train_ids and len(rows) == 9
    # labels: the mean vote of each fixture histogram
    for r in rows:
        hist = ava["good"][int(r["id"])]["histogram"]
        assert float(r["true_mean"]) == pytest.approx((hist * np.arange(1, 11)).sum() / hist.sum(), abs=1e-5)
    true = np.array([float(r["true_mean"]) for r in rows])
    pred = np.array([float(r["clip_iqa_pred_mean"]) for r in rows])
    assert metrics["clip_iqa/srcc"] == pytest.approx(scipy_stats.spearmanr(true, pred).statistic, abs=1e-12)
    assert metrics["clip_iqa/plcc"] == pytest.approx(scipy_stats.pearsonr(true, pred).statistic, abs=1e-9)
    assert metrics["clip_iqa/krcc"] == pytest.approx(scipy_stats.kendalltau(true, pred).statistic, abs=1e-12)
    for k in range(1, 6):  # one head per pyiqa pair
        p = np.array([float(r[f"clip_iqa_pair{k}_pred_mean"]) for r in rows])
        assert metrics[f"clip_iqa_pair{k}/srcc"] == pytest.approx(scipy_stats.spearmanr(true, p).statistic, abs=1e-12)
    # the predictions: 1 + 9 * CLIP-IQA of the stored image, CLIP-preprocessed (torchvision) here
    pixels = np.stack([_clip_pixels(os.path.join(ava["manual"], "images", f"{r['id']}.jpg"), SIZE) for r in rows])
    pairs, score = clip_iqa.ClipIQA.from_dir(setup["clip"], "pyiqa")(pixels)
    np.testing.assert_allclose(pred, 1 + 9 * score, atol=1e-4)
    np.testing.assert_allclose([float(r["clip_iqa_pair3_pred_mean"]) for r in rows], 1 + 9 * pairs[:, 2], atol=1e-4)
    assert np.ptp(score) > 1e-3
    info = json.loads((out / "train_clip_iqa.json").read_text())
    assert info["heads"]["clip_iqa_pair1"] == "Good image|bad image" and info["score_scale"] == [1.0, 10.0]
    assert info["options"]["prompt_set"] == "pyiqa" and info["num_images"] == 9
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["train/clip_iqa/srcc"] == pytest.approx(metrics["clip_iqa/srcc"]) and summary["num_examples"] == 9
    for kind in ("scatter", "hist"):
        assert (out / f"train_{kind}.png").read_bytes()[:4] == b"\x89PNG"
    assert "train/clip_iqa/srcc" in printed
    # errors: a split that is not there, a --clip that is not a conversion
    assert commands.main(["clip-iqa", "--clip", setup["clip"], "--manual_dir", ava["manual"], "--data_dir",
                          ava["data_dir"], "--split", "nope", "--out", str(tmp_path / "x"), "--quiet"]) == 1
    assert "split 'nope' not in" in capsys.readouterr().err
    assert commands.main(["clip-iqa", "--clip", str(tmp_path), "--manual_dir", ava["manual"], "--out",
                          str(tmp_path / "y")]) == 1
    assert "no convert.json" in capsys.readouterr().err


def test_evaluator_protocol_and_eva_targets(setup, ava, tmp_path):
    """The `clip_iqa` evaluator as a training-time `config.evals` type: `inputs` scores the split once
    (cached), `run` ignores the trained model's predictions; EVA targets go through a scores head."""
    import ml_collections

    from aesthetics_jax.data import datasets
    from aesthetics_jax.evaluate import clip_iqa as evaluator
    from aesthetics_jax.evaluate import commands

    data = commands.clip_iqa_data_config(manual_dir=ava["manual"], data_dir=ava["data_dir"])
    source = datasets.source(datasets.prepare(data), "test", data)
    ev = ml_collections.ConfigDict(dict(type="clip_iqa", split="test", clip=setup["clip"], prompts="default",
                                        pos_embed="none", image_size=None))
    extra = evaluator.inputs(ev, source=source, predict=None, data_config=data, heads={}, final=True)
    assert evaluator.inputs(ev, source=source)["clip_iqa"] is extra["clip_iqa"]  # scored once
    metrics = evaluator.run(predictions={"emd.mean": np.zeros(3)}, targets={}, ids=np.arange(3), outdir=str(tmp_path),
                            prefix="test_clip_iqa", heads={"emd": {"type": "emd"}}, write_files=False, **extra)
    scored = extra["clip_iqa"]
    s = scored["pairs"].mean(1)
    assert sorted(scored["ids"].tolist()) == [1010, 1011, 1012] and scored["pairs"].shape == (3, 1)
    true = scored["targets"]["mean_score"]
    assert metrics["clip_iqa/srcc"] == pytest.approx(scipy_stats.spearmanr(true, s).statistic)
    assert metrics["clip_iqa/accuracy"] == pytest.approx(np.mean((true >= 5) == (s >= 4 / 9)))
    assert not list(tmp_path.iterdir())  # write_files=False
    with pytest.raises(ValueError, match="scores its own pass"):
        evaluator.run(predictions={}, targets={}, ids=[], outdir=str(tmp_path), prefix="x", heads={})

    # EVA-style targets (six raw means per image; the total first), synthetic: a scores head `total`.
    rng = np.random.default_rng(0)
    n = 12
    eva_scored = dict(pairs=rng.uniform(size=(n, 2)).astype(np.float32), ids=np.arange(n), kind="eva",
                      scale=(0.0, 10.0), names=["A|a", "B|b"], options={},
                      targets={"scores": np.column_stack([rng.uniform(0, 10, n), rng.uniform(1, 4, (n, 5))])})
    m = evaluator.evaluate_scores(eva_scored, outdir=str(tmp_path), prefix="eva", plots=False)
    total, mean = eva_scored["targets"]["scores"][:, 0], eva_scored["pairs"].astype(np.float64).mean(1)
    assert m["clip_iqa/total/srcc"] == pytest.approx(scipy_stats.spearmanr(total, mean).statistic, abs=1e-12)
    assert m["clip_iqa_pair2/total/plcc"] == pytest.approx(
        scipy_stats.pearsonr(total, eva_scored["pairs"][:, 1]).statistic, abs=1e-6)
    assert m["clip_iqa/total/mae"] == pytest.approx(np.abs(total - 10 * mean).mean(), abs=1e-6)
    with open(tmp_path / "eva_predictions.csv") as f:
        row = next(csv.DictReader(f))
    assert float(row["clip_iqa_pred_total"]) == pytest.approx(10 * mean[0], abs=1e-6)
    assert float(row["true_scores_total"]) == pytest.approx(total[0])
