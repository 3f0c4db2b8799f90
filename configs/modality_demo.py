r"""Modality NIMA at demo scale: the demo photos as RGB, saliency, blur and RGB + blur, on a 2-core CPU.

  bash scripts/modality_demo.sh [WORKDIR]            # everything below, then the analysis report

  python launch.py --config configs/modality_demo.py:rgb --workdir W/rgb
  python launch.py --config configs/modality_demo.py:blur,init=transfer,freeze=7 --workdir W/blur_k7 \
      --config.init_from.workdir W/rgb

The demo dataset (the embedded photographs with documented degradations, AVA's format, whole base
photos held out; configs/nima_demo.py) read through ``config.data.modality`` as in
configs/modality_nima.py: ``rgb | saliency | blur | depth | rgb+saliency | rgb+blur | rgb+depth``
(depth needs ``--config.data.modality.params.model_dir=DIR``, a local transformers checkpoint).
The model is the demo's NIMA (MobileNet v1 width 0.25, 112 px, trained from scratch: no pretrained
weights in a demo), with the distribution-aware loss (EMD r2 + 0.1 MSE(mean) + 0.1 MSE(sd)).

  rgb             from scratch, 4500 steps of batch 16, Adam 3e-3 cosine: the main demo's recipe
                  (configs/nima_demo.py; 3000 steps gave a held-out SRCC of 0.566, 4500 steps 0.686
                  and 0.680 over two seeds; see BENCHMARKS.md)
  init=transfer   from the RGB model (``--config.init_from.workdir``), 600 steps, lr 1e-3: the
                  paper's transfer learning from an RGB NIMA to a modality
  freeze=K        the first K of the 14 MobileNet blocks frozen (0 = all trained, 14 = head only)
  init=scratch    (default for every modality) 4500 steps from random weights
  smoke           a few steps on tiny renders (tests)
"""

import ml_collections

from configs import common
from configs import modality_nima


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    names, options = common.parse_options(arg, flags=modality_nima.MODALITIES + ("smoke",),
                                          options={"freeze": int, "init": ("scratch", "transfer")})
    modality = [n for n in names if n in modality_nima.MODALITIES]
    if len(modality) > 1:
        raise ValueError(f"name one modality, got {sorted(modality)}")
    modality = modality[0] if modality else "rgb"
    init = options.get("init", "scratch")

    c = ml_collections.ConfigDict()
    c.seed = 0
    c.modality = modality
    c.data = common.demo_data(versions_per_photo=120)
    c.data.image_size = 112
    c.data.resize_size = 128
    c.data.val_fraction = 0.1
    c.data.modality = modality_nima.modality_data(modality)

    c.model = common.nima_model(name="mobilenet", width=0.25, dropout=0.2)
    c.losses = common.distribution_aware_losses(r=2, mean_weight=0.1, sd_weight=0.1)

    c.batch_size = 16
    c.eval_batch_size = 64
    c.num_epochs = 0
    c.total_steps = 4500 if init == "scratch" else 600
    c.optimizer = "adam"
    c.optimizer_kwargs = {}
    c.lr = 3e-3 if init == "scratch" else 1e-3
    c.grad_clip_norm = 1.0
    modality_nima.apply_freezing(c, options.get("freeze", 0),
                                 dict(warmup_steps=50 if init == "scratch" else 20, decay_type="cosine"))
    modality_nima.apply_init(c, init)

    c.log_every = 50
    c.eval_every = 1000
    c.ckpt_every = 250
    c.keep_ckpts = 2
    c.best_metric = "val/emd/srcc"
    c.best_mode = "max"
    c.evals = common.evals(val_split="validation", test_split="test")

    if "smoke" in names:
        common.make_smoke(c)
        c.model.num_blocks = 3
        modality_nima.apply_freezing(c, min(options.get("freeze", 0), 4), dict(warmup_steps=1, decay_type="cosine"))
    return c
