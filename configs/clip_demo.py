r"""CG-IAA at demo scale: VLAP -> four attribute experts -> fusion, on the embedded demo photographs.

  bash scripts/clip_demo.sh [OUT] [--ablation]   # all stages (--ablation: + fusion off, each expert dropped)

or stage by stage (``runs=W`` is the directory holding the stages' workdirs)::

  python launch.py --config configs/clip_demo.py:vlap --workdir W/vlap
  python launch.py --config configs/clip_demo.py:expert=color,runs=W --workdir W/expert_color   # x 4
  python launch.py --config configs/clip_demo.py:cgiaa,runs=W --workdir W/fusion
  python launch.py --config configs/clip_demo.py:cgiaa,runs=W,fusion=none --workdir W/fusion_off

The demo renderer knows what it did to every image (haze, blur, exposure, colour cast, noise, JPEG,
crop); ``data/builders/demo_captions.py`` turns that into one critique per attribute group (Color &
Light, Composition, Depth & Focus, General Feelings) in CG-IAA's released file format, and the
``captions`` builder reads them like CG-IAA's own files. Stages:

  vlap         a tiny CLIP (``clip_vlap.DEMO_CONVNET`` / ``DEMO_TEXT``: 112-px crops, a convolutional
               image tower with batch norm and mean + sd pooling (``clip.CLIPConvNet``), a 2-block
               text transformer of width 64) trained from scratch with InfoNCE on all critiques; its
               evaluator retrieves held-out photos' critiques and classifies their attributes
               zero-shot from one prompt per class (``demo_captions.ATTRIBUTE_CLASSES``) against the
               renderer's labels, next to chance (balanced accuracy vs uniform) and the majority class.
  expert=G     the VLAP model tuned on group G's critiques only (``clip_vlap.py:demo,expert=G``).
  cgiaa        the fusion model (``configs/cgiaa.py:demo``): the VLAP tower as base (fine-tuned),
               the frozen experts' critiques matched in banks = the class prompts, the concat fusion
               with expert dropout 0.5 + NIMA's EMD head trained on the votes; options fusion=none |
               fusion=attention | drop=G | textual=hard | train_base=0 as in cgiaa.py.

Held-out = AVA's test list of the demo = whole base photographs never seen in any stage.
"""

import ml_collections

from configs import cgiaa, clip_vlap


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    items = [item.strip() for item in (arg or "").split(",") if item.strip()]
    stage = items[0] if items else ""
    rest = items[1:]
    runs = next((i.partition("=")[2] for i in rest if i.startswith("runs=")), "")
    others = [i for i in rest if not i.startswith("runs=")]
    if stage == "vlap":
        if others:
            raise ValueError(f"the vlap stage takes no options but runs=, got {others}")
        return clip_vlap.get_config("demo")
    if stage.startswith("expert="):
        if others:
            raise ValueError(f"the expert stage takes no options but runs=, got {others}")
        c = clip_vlap.get_config(f"demo,{stage}")
        if runs:
            c.init_from.workdir = f"{runs}/vlap"
        return c
    if stage == "cgiaa":
        return cgiaa.get_config(",".join(["demo"] + ([f"runs={runs}"] if runs else []) + others))
    raise ValueError(f"configs/clip_demo.py:STAGE[,options]: STAGE is vlap, expert=GROUP or cgiaa; got {arg!r}")


def get_sweep(arg: str | None = None) -> list[str]:
    """The fusion ablation at demo scale (``cgiaa.get_sweep``) as clip_demo.py arguments."""
    return ["cgiaa" + ("," + a if a else "") for a in cgiaa.get_sweep(arg)]
