"""CG-IAA stages end to end at smoke size: VLAP (contrastive) -> experts -> fusion, on 8 devices.

The fusion model's towers are loaded from the earlier runs by prefix (``init_from.sources``) and stay
frozen: after training they still equal the source checkpoints' parameters exactly, while the
fusion block and the head have moved. The ablation arms (fusion off, an expert dropped) build and
train from the same sources.
"""

import json
import os

import numpy as np
import pytest
from flax import traverse_util

from aesthetics_jax.train import checkpointing, trainer
from configs import cgiaa, clip_demo, clip_vlap

GROUPS = clip_vlap.GROUPS


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """A VLAP smoke run and one expert run; the other experts reuse it (same tower shapes)."""
    root = tmp_path_factory.mktemp("cgiaa")
    data_dir = str(root / "data")
    vlap = clip_vlap.get_config("smoke")
    vlap.data.data_dir = data_dir
    vlap.async_checkpointing = False
    results = trainer.train_and_evaluate(vlap, str(root / "runs" / "vlap"))
    expert = clip_vlap.get_config("smoke,expert=dof")
    expert.data.data_dir = data_dir
    expert.async_checkpointing = False
    expert.init_from.workdir = str(root / "runs" / "vlap")
    trainer.train_and_evaluate(expert, str(root / "runs" / "expert_dof"))
    for g in ("color", "composition", "general"):
        os.symlink(root / "runs" / "expert_dof", root / "runs" / f"expert_{g}")
    return {"root": root, "data_dir": data_dir, "runs": str(root / "runs"), "vlap_results": results}


def _params(workdir, what="params"):
    return traverse_util.flatten_dict(checkpointing.restore_params(os.path.join(workdir, "checkpoints"))[what],
                                      sep="/")


def test_vlap_smoke_reports_retrieval(stages):
    results = stages["vlap_results"]
    for key in ("test/i2t/r1", "test/t2i/r5", "test/rsum", "test/i2t/chance_r1", "test/dof/i2t_r1"):
        assert key in results and np.isfinite(results[key]), key
    assert 0.0 <= results["test/i2t/r1"] <= 1.0
    assert os.path.isfile(os.path.join(stages["runs"], "vlap", "eval", "test_retrieval.csv"))


def test_expert_trains_on_its_groups_captions_from_vlap(stages):
    vlap, expert = _params(os.path.join(stages["runs"], "vlap")), _params(os.path.join(stages["runs"], "expert_dof"))
    assert set(vlap) == set(expert)
    assert any(not np.array_equal(vlap[k], expert[k]) for k in vlap)  # it trained


def test_fusion_loads_frozen_towers_and_trains_the_rest(stages, tmp_path):
    config = cgiaa.get_config(f"smoke,runs={stages['runs']},train_base=0")  # the demo fine-tunes the base
    config.data.data_dir = stages["data_dir"]
    config.async_checkpointing = False
    results = trainer.train_and_evaluate(config, str(tmp_path / "fusion"))
    assert "test/emd/srcc" in results and np.isfinite(results["test/emd/mae"])
    fused = _params(str(tmp_path / "fusion"))
    vlap, expert = _params(os.path.join(stages["runs"], "vlap")), _params(os.path.join(stages["runs"], "expert_dof"))
    for key, value in vlap.items():
        if key.startswith("visual/"):
            np.testing.assert_array_equal(fused["backbone/base/" + key[len("visual/"):]], value)
    for g in ("color", "dof"):
        for key, value in expert.items():
            target = {"visual": f"backbone/expert_{g}", "text": f"backbone/text_{g}"}.get(key.split("/")[0])
            if target:
                np.testing.assert_array_equal(fused[target + key[key.index("/"):]], value)
        np.testing.assert_array_equal(fused[f"backbone/logit_scale_{g}"], expert["logit_scale"])
    # The towers' batch-norm running averages were loaded and, all towers frozen, never updated.
    fused_stats = _params(str(tmp_path / "fusion"), "batch_stats")
    vlap_stats = _params(os.path.join(stages["runs"], "vlap"), "batch_stats")
    expert_stats = _params(os.path.join(stages["runs"], "expert_dof"), "batch_stats")
    assert vlap_stats and set(fused_stats) == ({"backbone/base/" + k[len("visual/"):] for k in vlap_stats}
                                               | {f"backbone/expert_{g}/" + k[len("visual/"):]
                                                  for g in GROUPS for k in expert_stats})
    for key, value in vlap_stats.items():
        np.testing.assert_array_equal(fused_stats["backbone/base/" + key[len("visual/"):]], value)
    for key, value in expert_stats.items():
        np.testing.assert_array_equal(fused_stats["backbone/expert_color/" + key[len("visual/"):]], value)
    # The fusion block and the head trained (they were not loaded: dont_load).
    init = json.load(open(tmp_path / "fusion" / "config.json"))
    assert init["init_from"]["dont_load"] == ["^emd/", "^backbone/fusion/"]
    assert any(k.startswith("backbone/fusion/") for k in fused) and any(k.startswith("emd/") for k in fused)


def test_fine_tuned_base_updates_its_batch_norm_the_frozen_experts_do_not(stages, tmp_path):
    """The demo's default (train_base=all): the base tower trains with batch statistics, so its
    running averages move; the frozen experts run on theirs and keep them exactly."""
    config = cgiaa.get_config(f"smoke,runs={stages['runs']}")
    assert config.model.train_base_statistics
    config.data.data_dir = stages["data_dir"]
    config.async_checkpointing = False
    config.total_steps = 2
    trainer.train_and_evaluate(config, str(tmp_path / "fusion"))
    fused = _params(str(tmp_path / "fusion"), "batch_stats")
    vlap = _params(os.path.join(stages["runs"], "vlap"), "batch_stats")
    expert = _params(os.path.join(stages["runs"], "expert_dof"), "batch_stats")
    assert all(not np.array_equal(fused["backbone/base/" + k[len("visual/"):]], v) for k, v in vlap.items())
    for g in GROUPS:
        for key, value in expert.items():
            np.testing.assert_array_equal(fused[f"backbone/expert_{g}/" + key[len("visual/"):]], value)


@pytest.mark.parametrize("arm", ["fusion=none", "drop=color"])
def test_ablation_arms_train(stages, tmp_path, arm):
    config = cgiaa.get_config(f"smoke,runs={stages['runs']},{arm}")
    config.data.data_dir = stages["data_dir"]
    config.async_checkpointing = False
    config.total_steps = 2
    trainer.train_and_evaluate(config, str(tmp_path / "arm"))
    params = _params(str(tmp_path / "arm"))
    experts = {k.split("/")[1] for k in params if k.startswith("backbone/expert_")}
    assert experts == (set() if arm == "fusion=none" else {"expert_composition", "expert_dof", "expert_general"})


def test_fusion_reads_generated_critiques(stages, tmp_path):
    """textual=generated: the experts' text towers read each image's critiques from a file (here the
    demo's own critiques standing in for generated ones); no temperature is loaded or created."""
    from aesthetics_jax.data.builders import demo_captions

    raw = os.path.join(stages["data_dir"], "demo", "raw")
    demo_captions.write_demo_critiques(raw)
    texts = {g: {e["img_id"]: e["caption"] for e in json.load(open(os.path.join(raw, "critiques", f"{g}.json")))}
             for g in GROUPS}
    path = tmp_path / "critiques.jsonl"
    with open(path, "w") as f:
        for image_id in texts["color"]:
            f.write(json.dumps({"image": f"{raw}/images/{image_id}.jpg",
                                "critiques": {g: texts[g][image_id] for g in GROUPS}}) + "\n")
    config = cgiaa.get_config(f"smoke,runs={stages['runs']},textual=generated,critiques={path}")
    config.data.data_dir = stages["data_dir"]
    config.async_checkpointing = False
    config.total_steps = 2
    results = trainer.train_and_evaluate(config, str(tmp_path / "generated"))
    assert np.isfinite(results["test/emd/mae"])
    params = _params(str(tmp_path / "generated"))
    assert not any(k.startswith("backbone/logit_scale_") for k in params)
    assert {k.split("/")[1] for k in params if k.startswith("backbone/text_")} == {f"text_{g}" for g in GROUPS}


def test_init_from_is_strict_about_unmapped_and_missing_parameters(stages, tmp_path):
    config = cgiaa.get_config(f"smoke,runs={stages['runs']},fusion=none")
    config.data.data_dir = stages["data_dir"]
    config.async_checkpointing = False
    # The whole VLAP CLIP without a rename: its text tower has nowhere to go.
    config.init_from.sources = [dict(workdir=os.path.join(stages["runs"], "vlap"), step=-1, rename=[])]
    with pytest.raises(ValueError, match="unused checkpoint params.*text/"):
        trainer.train_and_evaluate(config, str(tmp_path / "a"))
    # No source for the base tower: every one of its parameters is missing.
    config.init_from.sources = [dict(workdir=os.path.join(stages["runs"], "vlap"), step=-1,
                                     rename=[("^logit_scale$", "unused/logit_scale")])]
    with pytest.raises(ValueError, match="missing from the checkpoint.*backbone/base/"):
        trainer.train_and_evaluate(config, str(tmp_path / "b"))


def test_demo_config_stages_and_sweep():
    assert clip_demo.get_config("vlap").task == "contrastive"
    expert = clip_demo.get_config("expert=color,runs=/w")
    assert expert.init_from.workdir == "/w/vlap" and tuple(expert.data.captions.groups) == ("color",)
    fusion = clip_demo.get_config("cgiaa,runs=/w,drop=dof")
    assert tuple(fusion.model.experts) == ("color", "composition", "general")
    assert [s["workdir"] for s in fusion.init_from.sources] == ["/w/vlap", "/w/expert_color", "/w/expert_composition",
                                                               "/w/expert_general"]
    assert clip_demo.get_sweep("runs=/w") == [
        "cgiaa,runs=/w", "cgiaa,runs=/w,fusion=none", "cgiaa,runs=/w,drop=color", "cgiaa,runs=/w,drop=composition",
        "cgiaa,runs=/w,drop=dof", "cgiaa,runs=/w,drop=general"]
    with pytest.raises(ValueError, match="STAGE"):
        clip_demo.get_config("fusion")
    # The demo's convolutional tower has no blocks to pick: block-wise options are refused.
    with pytest.raises(ValueError, match="no blocks"):
        clip_demo.get_config("cgiaa,runs=/w,train_base=1")
    with pytest.raises(ValueError, match="no blocks"):
        clip_vlap.get_config("demo,tune_blocks=2")
    assert not clip_demo.get_config("cgiaa,runs=/w,train_base=0").model.train_base_statistics
