"""`aesthetics-jax explain`, `aesthetics_jax.explain(...)`, the `explain` evaluator and the renderer.

Models: the NIMA demo (EMD head: mean, sd) and the Aesthetics-XAI demo (six scores), both at
smoke size, trained here; a tiny CLIP for the ViT path.
"""

import csv
import json
import os

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import aesthetics_jax
from aesthetics_jax import cli, models
from aesthetics_jax.explain import cam as cam_lib
from aesthetics_jax.explain import render
from aesthetics_jax.train import trainer
from configs import nima_demo, xai_demo


def _train(config, workdir, data_dir):
    config.data.data_dir = data_dir
    config.async_checkpointing = False
    trainer.train_and_evaluate(config, workdir)
    return workdir


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("explain")
    data_dir = str(root / "data")
    xai = xai_demo.get_config("full,smoke")
    xai.evals.explain = dict(type="explain", split="test", num_images=3, methods=["gradcam", "layercam"],
                             outputs=["total", "quality"], saliency="spectral", faithfulness=True,
                             faithfulness_steps=4, batch_size=2, sheets=2)
    return {"nima": _train(nima_demo.get_config("smoke"), str(root / "nima"), data_dir),
            "xai": _train(xai, str(root / "xai"), data_dir), "data_dir": data_dir}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three real photographs (scikit-image) and one broken file."""
    from skimage import data as skdata  # pylint: disable=g-import-not-at-top

    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "coffee", "chelsea"):
        cv2.imwrite(str(folder / f"{name}.jpg"), getattr(skdata, name)()[..., ::-1])
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return folder


def test_cli_on_the_six_score_model(workdirs, photos, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["explain", str(photos), "--model", workdirs["xai"], "--out", str(out), "--method",
                     "gradcam,hirescam", "--outputs", "total,composition", "--faithfulness",
                     "--faithfulness-steps", "4", "--quiet"])
    assert code == 1  # the broken file failed, the others were explained
    printed = capsys.readouterr().out
    assert "Agreement with human saliency" in printed and "Faithfulness" in printed
    lines = [json.loads(line) for line in open(out / "explanations.jsonl")]
    assert len(lines) == 4 and sum("error" in line for line in lines) == 1
    assert [line["image"].endswith("broken.jpg") for line in lines if "error" in line] == [True]
    for name in ("astronaut", "coffee", "chelsea"):
        folder = out / name
        for method in ("gradcam", "hirescam"):
            for output in ("total", "composition"):
                overlay = cv2.imread(str(folder / f"overlay_{method}_{output}.png"))
                assert overlay is not None and overlay.shape == (80, 80, 3)
        assert cv2.imread(str(folder / "sheet.png")) is not None
        with np.load(folder / "maps.npz", allow_pickle=False) as maps:
            assert {"image", "saliency", "gradcam/total", "hirescam/composition", "raw/gradcam/total"} <= set(maps.files)
            heat = maps["gradcam/total"]
            assert heat.shape == (80, 80) and 0.0 <= heat.min() and heat.max() <= 1.0
    rows = list(csv.DictReader(open(out / "agreement.csv")))
    assert len(rows) == 3 * 2 * 2 + 3 * 2  # (image, method, output) + two baselines per image
    assert {r["method"] for r in rows} == {"gradcam", "hirescam", "center_bias", "uniform"}
    uniform = [r for r in rows if r["method"] == "uniform"]
    assert all(abs(float(r["auc_judd"]) - 0.5) < 0.05 for r in uniform)  # chance, by construction
    faith = list(csv.DictReader(open(out / "faithfulness.csv")))
    assert len(faith) == 3 * 2 * 2 and all(np.isfinite(float(r["random_deletion_auc"])) for r in faith)
    assert all(float(r[c]) >= 0 for r in faith for c in ("deletion_change", "insertion_gap", "random_insertion_gap"))
    assert (out / "summary.md").read_text().startswith("# Explanations of")


def test_python_api_on_the_nima_model(workdirs):
    images = np.random.RandomState(0).uniform(0, 255, (2, 50, 60, 3)).astype(np.uint8)
    items = aesthetics_jax.explain(images, model=workdirs["nima"], method="gradcam,gradient", saliency=None)
    assert len(items) == 2 and "error" not in items[0]
    assert set(items[0]["maps"]) == {"gradcam", "gradient"} and set(items[0]["maps"]["gradcam"]) == {"mean", "sd"}
    size = items[0]["pixels"].shape[0]
    assert items[0]["maps"]["gradient"]["mean"].shape == (size, size)
    assert "agreement" not in items[0] and items[0]["saliency"] is None
    bad = aesthetics_jax.explain([images[0], np.zeros((4, 4, 7))], model=workdirs["nima"])
    assert "error" not in bad[0] and "error" in bad[1]
    # a flat image has a constant reference map: NaN agreement with the reason, the other image is scored
    flat = aesthetics_jax.explain([np.full((40, 40, 3), 90, np.uint8), images[1]], model=workdirs["nima"],
                                  saliency="spectral")
    assert "agreement_error" in flat[0] and np.isnan(flat[0]["agreement"]["gradcam"]["mean"]["cc"])
    assert "agreement_error" not in flat[1] and np.isfinite(flat[1]["agreement"]["gradcam"]["mean"]["cc"])


def test_explain_evaluator_in_a_training_run(workdirs):
    metrics = json.load(open(os.path.join(workdirs["xai"], "eval", "final_metrics.json")))
    for key in ("explain/gradcam/total/cc", "explain/layercam/quality/auc_judd", "explain/baseline/center_bias/nss",
                "explain/gradcam/total/deletion_auc", "explain/gradcam/total/random_insertion_auc",
                "explain/gradcam/flat_fraction"):
        assert key in metrics, key
    assert metrics["explain/num_images"] == 3
    assert -1.0 <= metrics["explain/gradcam/total/cc"] <= 1.0
    sheets = os.listdir(os.path.join(workdirs["xai"], "eval", "explain_sheets"))
    assert len(sheets) == 2
    rows = list(csv.DictReader(open(os.path.join(workdirs["xai"], "eval", "explain_agreement.csv"))))
    assert len(rows) == 3 * 2 * 2 + 3 * 2


def test_overlay_colours_are_not_inverted(tmp_path):
    import matplotlib  # pylint: disable=g-import-not-at-top

    heat = np.zeros((8, 8), np.float32)
    heat[:, :4] = 1.0  # hot on the left
    image = np.full((8, 8, 3), 128, np.uint8)
    for name in ("jet", "viridis"):
        rgb = render.overlay(image, heat, alpha=1.0, colormap=name)
        top = np.rint(np.array(matplotlib.colormaps[name](1.0)[:3]) * 255)
        bottom = np.rint(np.array(matplotlib.colormaps[name](0.0)[:3]) * 255)
        np.testing.assert_array_equal(rgb[0, 0], top)
        np.testing.assert_array_equal(rgb[0, 7], bottom)
    jet = render.overlay(image, heat, alpha=1.0, colormap="jet")
    assert jet[0, 0, 0] > 100 and jet[0, 0, 2] < 10  # hot = red
    render.write_png(str(tmp_path / "o.png"), jet)
    back = cv2.imread(str(tmp_path / "o.png"))[..., ::-1]  # files are RGB-correct
    np.testing.assert_array_equal(back, jet)
    half = render.overlay(image, heat, alpha=0.4, colormap="jet")
    jet_top = np.rint(np.array(matplotlib.colormaps["jet"](1.0)[:3]) * 255)
    np.testing.assert_array_equal(half[0, 0], np.rint(0.4 * jet_top + 0.6 * 128))


def test_clip_tokens_reshaped_to_the_patch_grid():
    model = models.create("clip", heads={"scores": {"type": "scores", "names": ["a", "b"]}}, variant="tiny")
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    assert cam_lib.default_layer(model) == "backbone/resblocks_1/ln_1"
    explainer = cam_lib.Explainer(model, variables, methods=["gradcam", "hirescam", "eigencam"])
    images = np.random.RandomState(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    result = explainer(images)
    assert result.raw["gradcam"].shape == (2, 2, 4, 4)  # 32 px / patch 8: the class token dropped
    assert result.maps["hirescam"].shape == (2, 2, 32, 32)
    for method in ("gradcam", "hirescam", "eigencam"):
        assert np.all(np.isfinite(result.maps[method])) and result.maps[method].max() <= 1.0
    expected = np.asarray(model.apply(variables, images)["scores"]["scores"])
    np.testing.assert_allclose(result.predictions, expected, atol=1e-5)
    # an earlier block by path (intercepted), and a path that is not a module
    other = cam_lib.Explainer(model, variables, methods=["hirescam"], layer="backbone/resblocks_0/ln_1")
    assert other(images).raw["hirescam"].shape == (2, 2, 4, 4)
    with pytest.raises(ValueError, match="ran 0 times"):
        cam_lib.Explainer(model, variables, methods=["gradcam"], layer="backbone/nope")(images)


def test_flat_maps_are_zero_and_flagged():
    maps, flat = cam_lib.normalize_cams(jnp.asarray([[[-1.0, -2.0], [-3.0, -0.5]], [[0.0, 1.0], [2.0, 4.0]]]))
    np.testing.assert_array_equal(np.asarray(flat), [True, False])
    np.testing.assert_array_equal(np.asarray(maps[0]), np.zeros((2, 2)))
    np.testing.assert_allclose(np.asarray(maps[1]), np.array([[0, 0.25], [0.5, 1.0]]) / (1 + 2.5e-8), atol=1e-6)
    with pytest.raises(ValueError, match="unknown output"):
        cam_lib.select_outputs(cam_lib.model_outputs({"emd": {"type": "emd"}}), ["total"])
