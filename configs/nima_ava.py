r"""NIMA (Talebi & Milanfar 2018) as trained by idealo on AVA: MobileNet v1 α=1, 224², EMD r=2.

  python launch.py --config configs/nima_ava.py --workdir W --config.data.manual_dir /data/AVA

``manual_dir`` is an AVA directory in its public layout (AVA.txt, tags.txt, challenges.txt,
images/, aesthetics_image_lists/generic_test.jpgl). The official test list is the test split; 5% of
train (seeded) is the validation split that picks the best checkpoint.

Variants (``configs/nima_ava.py:VARIANT``):
  stage1   head only (backbone frozen), the first phase of idealo's schedule
  stage2   all layers, lower learning rate, initialised from a stage-1 workdir
           (``--config.init_from.workdir W1``)
  two_stage  stage1 then stage2 as one resumable run (``config.phases``: 5 of 20 epochs head only
           at 3e-3, then all layers at 3e-5, each phase from a fresh optimiser state)
  terms    EMD + 0.1 MSE(mean) + 0.1 MSE(sd) (``losses.distribution_aware``)
  smoke    a few steps on a tiny AVA-format fixture (the tests build it)
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variants = common.parse_variants(arg, known=("stage1", "stage2", "two_stage", "terms", "smoke"))
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = common.ava_data()
    c.data.image_size = 224
    c.data.resize_size = 256
    c.data.val_fraction = 0.05

    # idealo: MobileNet(alpha=1, include_top=False, pooling='avg') → Dropout(0.75) → Dense(10, softmax)
    c.model = common.nima_model(name="mobilenet", width=1.0, dropout=0.75)
    c.losses = common.emd_losses(r=2)

    c.batch_size = 96
    c.eval_batch_size = 128
    c.num_epochs = 20
    c.total_steps = 0
    c.optimizer = "adam"
    c.optimizer_kwargs = {}
    c.lr = 3e-5
    c.schedule = [(".*", dict(warmup_steps=500, decay_type="cosine"))]
    c.grad_clip_norm = 0.0
    c.init_from = ml_collections.ConfigDict(dict(workdir="", step=-1, dont_load=[]))  # "" = none

    c.log_every = 100
    c.eval_every = 2000
    c.precise_bn = 0  # N > 0: recompute BN statistics over N train batches before each eval (precise_bn.py)
    c.ckpt_every = 2000
    c.keep_ckpts = 2
    c.best_metric = "val/emd/srcc"
    c.best_mode = "max"
    c.evals = common.evals(val_split="validation", test_split="test")

    if "stage1" in variants:  # idealo: 5 epochs, dense layer only, lr 3e-3
        c.num_epochs = 5
        c.lr = 3e-3
        c.schedule = [("^emd/", dict(decay_type="constant")), (".*", None)]
    if "stage2" in variants:  # idealo: all layers, lr 3e-5, from --config.init_from.workdir
        c.num_epochs = 15
    if "two_stage" in variants:  # stage1 + stage2 as one resumable run: 5 of 20 epochs head only
        c.phases = common.two_stage_phases(head="^emd/", head_lr=3e-3, schedule=c.schedule)
    if "terms" in variants:  # EMD + 0.1 MSE(mean) + 0.1 MSE(sd) (losses.distribution_aware)
        c.losses = common.distribution_aware_losses(r=2)
    if "smoke" in variants:
        common.make_smoke(c)
    return c


def get_sweep(arg: str | None = None) -> list[dict]:
    """The NIMA ablation on AVA: idealo's two-stage schedule (the reference), one stage, EMD r = 1
    instead of 2, and the mean/sd terms added. ``arg`` is prefixed to every member's config argument;
    run it over seeds with ``aesthetics-jax sweep run configs/nima_ava.py --seeds 0,1,2 ...
    --set data.manual_dir=/data/AVA``."""
    base = f"{arg}," if arg else ""
    return [
        {":name": "idealo_two_stage", ":arg": base + "two_stage"},
        {":name": "one_stage", ":arg": base.rstrip(",")},
        {":name": "emd_r1", ":arg": base + "two_stage", "losses.emd.r": 1},
        {":name": "mean_sd_terms", ":arg": base + "two_stage,terms"},
    ]
