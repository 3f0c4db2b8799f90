"""`aesthetics-jax convert`: a Keras / torchvision / CLIP weight file -> a model bundle or a checkpoint.

    aesthetics-jax convert --from keras weights_mobilenet_aesthetic_0.07.hdf5 --arch nima_mobilenet --out nima_idealo
    aesthetics-jax predict photos/ --model nima_idealo          # usable at once: OUT is a bundle
    aesthetics-jax convert --from keras inception_v3.weights.h5 --arch inception --out incv3
    aesthetics-jax convert --from torchvision inception_v3.pth --arch inception --out incv3_tv
    aesthetics-jax convert --from hf-clip clip/model.safetensors --arch clip --out clip_b16
    aesthetics-jax convert --from openai-clip vit_l14_sd.pt --arch clip --out clip_l14
    aesthetics-jax convert --from laion-aesthetic sac+logos+ava1-l14-linearMSE.pth --clip clip_l14 --out laion_v2

A model with heads (`--arch nima_mobilenet`, or any arch with `--option heads=...`) is written as a
**verified model bundle** (`export/bundle.py`: safetensors params, model.json with the input
transform, manifest with sha256s; provenance.json records the source file's format, path, sha256 and
size and the conversion report). Every consumer takes it as it is: `predict`, `export`,
`evaluate`, `bundle pack` (archives it), `models add` (registers it), and training's
`--config.init_from.workdir OUT`. Its input transform reproduces the original inference
preprocessing of the source (`--transform` overrides it):

    keras         keras_load_img: Keras `load_img(target_size=(S, S))`, Pillow NEAREST squash
                  (idealo's NIMA predict and evaluate; the Keras applications' documented usage)
    torchvision   torchvision: Resize(342) + CenterCrop(299) for InceptionV3 (IMAGENET1K_V1),
                  Resize(256) + CenterCrop(224) for MobileNetV2 IMAGENET1K_V1 (V2 weights:
                  `--transform torchvision:resize_size=232`)

`--from cgiaa CHECKPOINTS_DIR [--tokenizer DIR]` (no --arch): CG-IAA's released base_model.pt and
{color,composition,dof,general}.pt -> a critics-only bundle (`convert/cgiaa.py`) for
`aesthetics-jax critique PHOTOS --model OUT`.

`--from laion-aesthetic FILE --clip DIR` (no --arch): a LAION aesthetic predictor (v1 linear, v2 MLP,
v2 ReLU MLP; `convert/laion.py`) on the CLIP image tower converted into DIR (a backbone-only CLIP
conversion, below) -> a bundle whose `laion` scores head gives `scores.laion_aesthetic`, the LAION
score. Its input transform: `torchvision:resize_size=S,bicubic=1` (shorter side to S with Pillow
BICUBIC, centre crop S; S = the CLIP image size), CLIP's own `preprocess`; CLIP's mean/std
normalisation is the model's 'clip' preset.

A backbone-only conversion (bare `mobilenet`, `mobilenet_v2`, `inception`, `clip`) has nothing to
score with; it is written as a checkpoint for training heads on, and the command prints the next
step. Backbone-only output directory `OUT`:
  OUT/checkpoints/0/state   Orbax (StandardSave) pytree `{'params', 'batch_stats'}`, the layout
                            `train.checkpointing.restore_params(OUT/checkpoints)` reads, so the
                            result initialises a training run with `--config.init_from.workdir OUT`
                            (backbone-only archs: add `--config.init_from.dont_load='["^emd/"]'`,
                            one pattern per head of the new model).
  OUT/convert.json          `model`: the `config.model` fields (`name`, `heads`, `dropout`,
                            `preprocess`, backbone kwargs) that rebuild the model with
                            `models.create(**model)`; `image_size`; `source`: format, path, sha256,
                            size; `conversion`: source tensors ignored and by which rule, leaves kept
                            at their initial value; `init_from`: the flags to train from it.
  OUT/clip/                 CLIP only: the whole CLIP (image + text towers, logit scale) as a
                            StandardSave pytree, for zero-shot scoring; `convert.json['clip_config']`.

`--arch`: a preset of `ARCHS` (an idealo-style NIMA model with its head, or a bare backbone whose
checkpoint holds only `backbone/...`). `--transform NAME[:key=value,...]` sets the bundle's input
transform (`data.preprocessing.TRANSFORMS`). `--option key=value` adds/overrides backbone kwargs (values
parsed as JSON where possible: `--option width=0.5`). `--dont-load REGEX` keeps matching leaves at
their initial value (e.g. re-initialise a head), `--ignore REGEX` drops matching source layers /
tensors.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from typing import Any

from aesthetics_jax.export import bundle

# name -> (model config for models.create, standard image size, sources it can come from)
ARCHS: dict[str, dict[str, Any]] = {
    "nima_mobilenet": dict(
        model=dict(name="mobilenet", width=1.0, heads={"emd": {"type": "emd"}}, dropout=0.75, preprocess="keras_tf"),
        image_size=224, sources=("keras",),
        doc="idealo NIMA: MobileNet a=1, avg pool, Dropout 0.75, Dense(10, softmax)"),
    "mobilenet": dict(model=dict(name="mobilenet", width=1.0, preprocess="keras_tf"), image_size=224,
                      sources=("keras",), doc="Keras MobileNet v1 backbone (--option width=0.25..1.0)"),
    "mobilenet_v2": dict(model=dict(name="mobilenet_v2", width=1.0), image_size=224, sources=("keras", "torchvision"),
                         doc="MobileNetV2 backbone (torchvision: layout='torchvision', preprocess='torch')"),
    "inception": dict(model=dict(name="inception"), image_size=299, sources=("keras", "torchvision"),
                      doc="InceptionV3 backbone (torchvision: layout='torchvision', transform_input, preprocess='torch')"),
    "clip": dict(model=dict(name="clip", preprocess="clip"), image_size=224,
                 sources=("openai-clip", "open-clip", "hf-clip"), doc="CLIP image tower (+ full CLIP in OUT/clip)"),
}
SOURCES = ("keras", "torchvision", "openai-clip", "open-clip", "hf-clip", "msi-net", "laion-aesthetic", "cgiaa")
# torchvision's documented eval resize per arch (the weights' `transforms()`: ImageClassification).
TORCHVISION_RESIZE = {"inception": 342, "mobilenet_v2": 256, "mobilenet": 256}


def default_transform(source: str, arch: str, image_size: int) -> dict | None:
    """The original inference transform of weights from ``source`` (None: none is documented)."""
    if source == "keras":
        return {"name": "keras_load_img", "image_size": image_size}
    if source == "torchvision":
        return {"name": "torchvision", "resize_size": TORCHVISION_RESIZE[arch], "image_size": image_size}
    return None


def _bad_paths(args) -> bool:
    """Prints why and returns True when the source file is missing or the output directory is not empty."""
    if not os.path.isfile(args.src):
        print(f"aesthetics-jax convert: no file {args.src}", file=sys.stderr)
        return True
    if os.path.exists(args.out) and os.listdir(args.out):
        print(f"aesthetics-jax convert: output directory {args.out} is not empty", file=sys.stderr)
        return True
    return False


def parse_transform(text: str, image_size: int) -> dict:
    """``NAME[:key=value,...]`` -> a transform spec (``image_size`` defaults to the model's)."""
    from aesthetics_jax.data import preprocessing

    name, _, rest = text.partition(":")
    fields = {"image_size": image_size}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--transform {text!r}: {item!r} is not key=value")
        fields[key.strip()] = int(value)
    return preprocessing.transform_spec(name, **fields)


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def write_checkpoint(out_dir: str, params, batch_stats) -> str:
    """Writes `{'params', 'batch_stats'}` as step 0 of `OUT/checkpoints` (item 'state')."""
    import jax
    import numpy as np
    import orbax.checkpoint as ocp

    directory = os.path.join(os.path.abspath(out_dir), "checkpoints")
    state = jax.tree.map(np.asarray, {"params": params, "batch_stats": batch_stats})
    manager = ocp.CheckpointManager(
        directory, item_handlers={"state": ocp.StandardCheckpointHandler()},
        options=ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=False),
    )
    manager.save(0, args=ocp.args.Composite(state=ocp.args.StandardSave(state)), force=True)
    manager.wait_until_finished()
    manager.close()
    return directory


def _backbone_only(variables):
    return {
        "params": {"backbone": variables["params"]["backbone"]},
        "batch_stats": {"backbone": variables.get("batch_stats", {}).get("backbone", {})},
    }


def _convert_cnn(args, model_cfg: dict, with_heads: bool):
    from aesthetics_jax import models
    from aesthetics_jax.convert import keras_h5

    cfg = dict(model_cfg)
    name = cfg.pop("name")
    heads = cfg.pop("heads", None) or {"emd": {"type": "emd"}}
    dont_load = list(args.dont_load) + ([] if with_heads else [f"^{h}/" for h in heads])
    model = models.create(name, heads=heads, **cfg)
    init = keras_h5.init_variables(model, max(75, args.init_size), only=dont_load)
    if args.source == "keras":
        variables, report = keras_h5.load_keras_file(args.src, model, init, dont_load=dont_load, ignore=args.ignore)
        fmt = "keras-legacy-h5" if keras_h5.is_legacy_h5(args.src) else "keras3-weights-h5"
    else:
        from aesthetics_jax.convert import torchvision as tv

        variables, report = tv.load_torchvision_file(args.src, model, init, dont_load=dont_load, ignore=args.ignore)
        fmt = "safetensors" if args.src.endswith(".safetensors") else "torch-state-dict"
    if not with_heads:
        variables = _backbone_only(variables)
        report["kept_init"] = [k for k in report["kept_init"] if ":backbone/" in k]
    return variables["params"], variables["batch_stats"], fmt, report, {}


def _convert_clip(args, model_cfg: dict):
    from aesthetics_jax.convert import clip as clip_convert

    if args.dont_load or args.ignore:
        raise ValueError("--dont-load / --ignore apply to keras and torchvision sources; a CLIP file is "
                         "converted whole (image and text towers)")
    # --option act=quick_gelu|gelu, vision_heads=N, text_heads=N steer how the file is read.
    load_kw = {k: model_cfg.pop(k) for k in ("act", "vision_heads", "text_heads") if k in model_cfg}
    params, config = clip_convert.load_clip_state_dict(args.src, args.source, **load_kw)
    model_cfg.update(clip_convert.backbone_kwargs(config))
    model_cfg["_image_size"] = int(config.vision.image_size)
    fmt = "safetensors" if args.src.endswith(".safetensors") else "torch-state-dict"
    extra = {"clip_params": params, "clip_config": _jsonable(config)}
    return {"backbone": params["visual"]}, {}, fmt, {"ignored": [], "kept_init": []}, extra


def _jsonable(obj):
    import dataclasses

    if dataclasses.is_dataclass(obj):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj if isinstance(obj, (str, int, float, bool, type(None))) else str(obj)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aesthetics-jax convert",
        description="Convert Keras / torchvision / CLIP weights into an Orbax checkpoint.",
        epilog="archs:\n" + "\n".join(f"  {k:<15} {v['doc']} (from: {', '.join(v['sources'])})" for k, v in ARCHS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--from", dest="source", required=True, choices=SOURCES)
    p.add_argument("src", help="weight file (.h5/.hdf5/.weights.h5, .pth/.pt/.bin, .safetensors); msi-net: "
                               "a TF checkpoint prefix/.index, a frozen .pb, or a SavedModel directory")
    p.add_argument("--arch", default=None, choices=sorted(ARCHS),
                   help="required except for --from msi-net and --from laion-aesthetic")
    p.add_argument("--clip", default=None, metavar="DIR",
                   help="--from laion-aesthetic: a CLIP conversion directory (convert --from openai-clip|open-clip|"
                        "hf-clip FILE --arch clip --out DIR) whose image tower the predictor scores")
    p.add_argument("--tokenizer", default=None, metavar="DIR",
                   help="--from cgiaa: the directory holding GPT-2's vocab.json and merges.txt (default: SRC)")
    p.add_argument("--out", required=True, help="output directory (must be empty or absent)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="model option (backbone kwarg, or heads/dropout/preprocess), JSON-parsed")
    p.add_argument("--dont-load", action="append", default=[], metavar="REGEX",
                   help="leaves (e.g. '^emd/') kept at their initial value")
    p.add_argument("--ignore", action="append", default=[], metavar="REGEX",
                   help="source layers / tensors to drop")
    p.add_argument("--init-size", type=int, default=75, help="image size used to initialise the model")
    p.add_argument("--onnx", action="store_true",
                   help="models with heads: also store model.onnx in the bundle (needs the [export] extra)")
    p.add_argument("--transform", default=None, metavar="NAME[:key=value,...]",
                   help="input transform of the bundle (default: the source's documented inference transform)")
    return p


def _bundle_data_config(image_size: int, transform: dict) -> dict:
    """The `config.data` of a converted bundle: AVA with the official split and no validation
    carve-out, so that `aesthetics-jax evaluate BUNDLE --manual_dir /data/AVA` scores the official
    test split (generic_test.jpgl) with the bundle's transform."""
    data_dir = os.environ.get("AESTHETICS_JAX_DATA", "~/aesthetics_jax_data")  # as configs/common.py
    return {"name": "ava", "manual_dir": "", "data_dir": data_dir, "train_split": "train", "val_fraction": 0.0,
            "split_seed": 0, "num_threads": 4, "num_workers": 0, "image_size": image_size,
            "resize_size": transform.get("resize_size", image_size), "eval_transform": transform}


def _convert_msinet(args) -> int:
    """MSI-Net saliency weights (TF formats, read with the [tf] extra) -> OUT/msinet.safetensors."""
    from aesthetics_jax.convert import msinet

    if os.path.exists(args.out) and os.listdir(args.out):
        print(f"aesthetics-jax convert: output directory {args.out} is not empty", file=sys.stderr)
        return 2
    try:
        meta = msinet.convert(args.src, args.out, ignore=args.ignore)
    except ImportError as e:
        print(f"aesthetics-jax convert: {e}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as e:
        print(f"aesthetics-jax convert: {args.src} -> msi-net failed:\n{e}", file=sys.stderr)
        return 1
    print(f"converted {args.src} ({meta['format']}) -> {os.path.join(args.out, 'msinet.safetensors')}; use it: "
          f"aesthetics-jax maps compute PHOTOS --out MAPS --producer msinet --param weights={args.out}  |  "
          f"modalities.create('msinet', weights={args.out!r})")
    return 0


def _write_bundle(args, model_json: dict, image_size: int, transform: dict, params, batch_stats, source: dict,
                  conversion: dict) -> None:
    """Writes OUT as a verified model bundle (the output of a conversion with heads)."""
    if os.path.isdir(args.out):
        os.rmdir(args.out)  # empty (checked by main)
    model_config = {**model_json, "dtype": "float32"}
    provenance = {"source": source, "conversion": conversion, "arch": args.arch,
                  "command": "aesthetics-jax convert " + " ".join(args.argv)}
    bundle.write(args.out, model_config=model_config, variables={"params": params, "batch_stats": batch_stats},
                 image_size=image_size, resize_size=transform.get("resize_size"), transform=transform,
                 config={"model": model_config, "data": _bundle_data_config(image_size, transform), "eval_batch_size": 32},
                 metrics={"note": f"converted from {os.path.basename(source['path'])}; no metrics were measured here"},
                 provenance=provenance, onnx=args.onnx)
    bundle.load(args.out)  # verify what was written: every sha256, and the variables read back


def _convert_laion(args) -> int:
    """LAION aesthetic predictor (.pth / .safetensors) + a CLIP conversion directory -> a bundle."""
    from aesthetics_jax.convert import laion

    if args.clip is None:
        print("aesthetics-jax convert: --from laion-aesthetic needs --clip DIR (a CLIP image tower converted with "
              "--from openai-clip|open-clip|hf-clip FILE --arch clip --out DIR)", file=sys.stderr)
        return 2
    unused = [flag for flag, value in (("--arch", args.arch), ("--option", args.option), ("--dont-load", args.dont_load),
                                       ("--ignore", args.ignore)) if value]
    if unused:
        print(f"aesthetics-jax convert: {', '.join(unused)} do not apply to --from laion-aesthetic "
              "(the model is the CLIP tower of --clip plus the predictor)", file=sys.stderr)
        return 2
    if _bad_paths(args):
        return 2
    try:
        model_cfg, params, image_size, info = laion.build(args.src, args.clip)
        transform = (parse_transform(args.transform, image_size) if args.transform
                     else parse_transform(f"torchvision:resize_size={image_size},bicubic=1", image_size))
    except (ValueError, KeyError, OSError) as e:
        print(f"aesthetics-jax convert: {args.src} -> laion-aesthetic failed:\n{e}", file=sys.stderr)
        return 1
    fmt = "safetensors" if args.src.endswith(".safetensors") else "torch-state-dict"
    source = {"from": args.source, "format": fmt, "path": os.path.abspath(args.src),
              "sha256": bundle.sha256_file(args.src), "size_bytes": os.path.getsize(args.src),
              "variant": info["variant"], "clip": info["clip"]}
    conversion = {"ignored": [], "kept_init": [], "dont_load": [], "ignore": [], "laion": info}
    args.arch = f"laion_aesthetic_{info['variant']}"
    _write_bundle(args, model_cfg, image_size, transform, params, {}, source, conversion)
    note = f"\nnote: {info['note']}" if "note" in info else ""
    print(f"converted {args.src} ({fmt}, LAION aesthetic {info['variant']}, layers {info['layers']}) on the CLIP "
          f"image tower of {args.clip} -> model bundle {args.out} (verified; input transform {transform['name']})"
          f"\nuse it: aesthetics-jax predict PHOTOS --model {args.out}   (score: scores.{laion.SCORE_NAME})   |   "
          f"aesthetics-jax models add {args.out} --name NAME{note}")
    return 0


def _convert_cgiaa(args) -> int:
    """CG-IAA's released checkpoints directory -> a critics-only bundle (`convert/cgiaa.py`)."""
    from aesthetics_jax.convert import cgiaa
    from aesthetics_jax.convert import clip as clip_convert

    unused = [flag for flag, value in (("--arch", args.arch), ("--clip", args.clip), ("--option", args.option),
                                       ("--dont-load", args.dont_load), ("--ignore", args.ignore)) if value]
    if unused:
        print(f"aesthetics-jax convert: {', '.join(unused)} do not apply to --from cgiaa", file=sys.stderr)
        return 2
    if os.path.exists(args.out) and (not os.path.isdir(args.out) or os.listdir(args.out)):
        print(f"aesthetics-jax convert: output {args.out} exists and is not an empty directory", file=sys.stderr)
        return 2
    try:
        clip_params, clip_config, experts, clipcap_config, files = cgiaa.read(args.src)
        vocab, merges = cgiaa.tokenizer_files(args.tokenizer or args.src)
    except (ValueError, KeyError, OSError) as e:
        print(f"aesthetics-jax convert: {args.src} -> cgiaa failed:\n{e}", file=sys.stderr)
        return 1
    image_size = clip_config.vision.image_size
    transform = (parse_transform(args.transform, image_size) if args.transform
                 else parse_transform(f"torchvision_squash:image_size={image_size}", image_size))
    model_config = {"name": "clip", "heads": {}, "preprocess": "clip", "pooled": "projected",
                    **clip_convert.backbone_kwargs(clip_config)}
    source = {"from": "cgiaa", "format": "torch-state-dict", "files": cgiaa.source_info({**files, "vocab": vocab,
                                                                                          "merges": merges})}
    conversion = {"attributes": list(experts), "clipcap": clipcap_config.to_dict(), "mapper_heads": cgiaa.MAPPER_HEADS}
    args.arch = "cgiaa_critic"
    if os.path.isdir(args.out):
        os.rmdir(args.out)
    bundle.write(args.out, model_config={**model_config, "dtype": "float32"}, variables={}, image_size=image_size,
                 transform=transform, config={"model": model_config},
                 metrics={"note": "converted from CG-IAA's released checkpoints; no metrics were measured here"},
                 provenance={"source": source, "conversion": conversion,
                             "command": "aesthetics-jax convert " + " ".join(args.argv)},
                 critics=dict(clip_params=clip_params, clip_config=clip_config, experts=experts,
                              clipcap_config=clipcap_config, vocab=str(vocab), merges=str(merges)))
    bundle.load(args.out)
    print(f"converted {args.src} (CG-IAA: base model + experts {', '.join(experts)}) -> critic bundle {args.out} "
          f"(verified; input transform {transform['name']})\nuse it: aesthetics-jax critique PHOTOS --model {args.out}")
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    args.argv = list(argv)
    if args.source == "msi-net":
        return _convert_msinet(args)
    if args.source == "cgiaa":
        return _convert_cgiaa(args)
    if args.tokenizer is not None:
        print("aesthetics-jax convert: --tokenizer applies to --from cgiaa only", file=sys.stderr)
        return 2
    if args.source == "laion-aesthetic":
        return _convert_laion(args)
    if args.clip is not None:
        print("aesthetics-jax convert: --clip applies to --from laion-aesthetic only", file=sys.stderr)
        return 2
    if args.arch is None:
        print(f"aesthetics-jax convert: --arch is required for --from {args.source}", file=sys.stderr)
        return 2
    arch = ARCHS[args.arch]
    if args.source not in arch["sources"]:
        print(f"aesthetics-jax convert: --arch {args.arch} cannot come from --from {args.source} "
              f"(possible: {', '.join(arch['sources'])})", file=sys.stderr)
        return 2
    if _bad_paths(args):
        return 2
    model_cfg = dict(arch["model"])
    if args.arch == "inception" and args.source == "torchvision":
        model_cfg.update(layout="torchvision", transform_input=True, preprocess="torch")
    if args.arch == "mobilenet_v2" and args.source == "torchvision":
        model_cfg.update(layout="torchvision", preprocess="torch")
    for option in args.option:
        key, sep, value = option.partition("=")
        if not sep:
            print(f"aesthetics-jax convert: --option {option!r} is not KEY=VALUE", file=sys.stderr)
            return 2
        model_cfg[key] = _parse_value(value)
    from aesthetics_jax import models

    model_cfg.setdefault("preprocess", models.default_preprocess(model_cfg["name"]))
    with_heads = "heads" in arch["model"] or "heads" in model_cfg
    if with_heads and args.source not in ("keras", "torchvision"):
        print(f"aesthetics-jax convert: a {args.source} file holds no aesthetic heads; convert the CLIP "
              "backbone alone (no heads option) and train heads on it", file=sys.stderr)
        return 2
    try:
        if args.source in ("keras", "torchvision"):
            params, batch_stats, fmt, report, extra = _convert_cnn(args, model_cfg, with_heads)
        else:
            params, batch_stats, fmt, report, extra = _convert_clip(args, model_cfg)
    except (ValueError, KeyError, OSError) as e:  # a file that does not fit the arch: say why, no traceback
        print(f"aesthetics-jax convert: {args.src} -> --arch {args.arch} failed:\n{e}", file=sys.stderr)
        return 1
    image_size = model_cfg.pop("_image_size", arch["image_size"])
    try:
        transform = (parse_transform(args.transform, image_size) if args.transform
                     else default_transform(args.source, args.arch, image_size))
    except ValueError as e:
        print(f"aesthetics-jax convert: {e}", file=sys.stderr)
        return 2
    model_json = dict(model_cfg)
    if not with_heads:
        model_json.pop("heads", None)
    source = {
        "from": args.source,
        "format": fmt,
        "path": os.path.abspath(args.src),
        "sha256": bundle.sha256_file(args.src),
        "size_bytes": os.path.getsize(args.src),
    }
    conversion = {
        "ignored": [list(x) for x in report["ignored"]],
        "kept_init": report["kept_init"],
        "dont_load": args.dont_load,
        "ignore": args.ignore,
    }
    if with_heads:
        _write_bundle(args, model_json, image_size, transform, params, batch_stats, source, conversion)
        print(f"converted {args.src} ({fmt}, arch {args.arch}) -> model bundle {args.out} (verified; input "
              f"transform {transform['name']})\nuse it: aesthetics-jax predict PHOTOS --model {args.out}   |   "
              f"aesthetics-jax models add {args.out} --name NAME")
        return 0
    ckpt_dir = write_checkpoint(args.out, params, batch_stats)
    if "clip_params" in extra:
        import orbax.checkpoint as ocp

        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(os.path.join(os.path.abspath(args.out), "clip"), extra.pop("clip_params"))
    out = os.path.abspath(args.out)
    next_steps = (f"train heads on it: python launch.py --config CONFIG --config.init_from.workdir {out} "
                  "--config.init_from.dont_load='[\"^emd/\"]' (one pattern per head of the new model), "
                  f"with the model fields of {os.path.join(out, 'convert.json')}['model']")
    meta = {
        "format_version": 1,
        "arch": args.arch,
        "model": model_json,
        "backbone_only": True,
        "image_size": image_size,
        "preprocess": model_cfg.get("preprocess"),
        "transform": transform,
        "source": source,
        "conversion": conversion,
        "checkpoint": os.path.relpath(ckpt_dir, out),
        "init_from": {"workdir": out, "dont_load": ["^<head>/ for each head of the new model, e.g. ^emd/"]},
        "next_steps": next_steps,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    with open(os.path.join(args.out, "convert.json"), "w") as f:
        json.dump(meta, f, indent=2)
    print(f"converted {args.src} ({fmt}) -> {ckpt_dir} (arch {args.arch}, backbone only: no heads to score "
          f"with); metadata in {os.path.join(args.out, 'convert.json')}\nnext: {next_steps}")
    return 0
