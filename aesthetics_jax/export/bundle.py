"""Shareable model bundles: one directory (or ``.tar.gz``) with everything needed to use a model.

    aesthetics-jax bundle pack WORKDIR --out model.bundle [--step N|latest|best] [--onnx] [--critics CRITIC_BUNDLE]
    aesthetics-jax bundle pack WORKDIR --out model.bundle.tar.gz
    aesthetics-jax bundle pack BUNDLE --out model.bundle.tar.gz      # archive (or copy) a bundle
    aesthetics-jax bundle verify model.bundle[.tar.gz]
    aesthetics-jax bundle unpack model.bundle.tar.gz DEST

Layout (every file but the manifest is listed in it with its sha256 and size)::

    manifest.json        {"format": "aesthetics_jax.bundle", "format_version": 1,
                          "files": {name: {"sha256": ..., "size": ...}}}
    params.safetensors   inference variables only (no optimiser state): keys "params/<path>" and
                         "batch_stats/<path>", paths '/'-joined as in the checkpoints
    model.json           how to rebuild and feed the model: "model" (config.model: name, heads,
                         width, ...), "input" (layout NHWC, [0, 255] RGB, image_size, resize_size,
                         "transform": the inference transform spec that `predict` applies -- see
                         `data.preprocessing.apply_transform`: `resize_center_crop` for models
                         trained here, `keras_load_img` / `torchvision` for converted weights --
                         and its one-line "transform_description", preprocess preset), "outputs"
                         (ONNX output names), "labels" (label semantics: scale and meaning of every
                         output)
    config.json          the run's full training config
    metrics.json         the run's final metrics (``WORKDIR/eval/final_metrics.json``: test split,
                         validation, step); ``{}`` with a note when the packed step has none
    provenance.json      step, source workdir, data (name, dirs, split), git commit of the code
                         (and whether it had local changes), package versions, creation time,
                         "training": the workdir's provenance.json (``aesthetics_jax.provenance``:
                         data fingerprint, devices, sessions, wall time) when packed from a run; for
                         converted weights (`aesthetics-jax convert`, which writes a bundle for
                         every model with heads) "source": format, path, sha256, size of the
                         original file, and "conversion": what was ignored or kept at init
    model.onnx           (with ``--onnx``) the jax2onnx export, so ONNX users need no JAX
    critics.json, critics.safetensors, gpt2_vocab.json, gpt2_merges.txt
                         (optional) attribute-critique experts (`critique/critic.py`: a CLIP and
                         ClipCap experts, e.g. CG-IAA's, `aesthetics-jax convert --from cgiaa`). A
                         bundle may hold a scorer (heads), critics, or both: a critics-only bundle
                         has ``heads: {}`` and no scorer parameters; ``predict`` returns the scores
                         and the critiques of whatever the bundle holds.

Parameters are stored as safetensors (one file, no pickle, loads without Orbax/TensorStore in
milliseconds) rather than an Orbax directory: a bundle is for sharing and serving, and a single
file makes the manifest, hashing and archive simple. ``load`` re-hashes every file and refuses a
bundle whose files differ from its manifest, miss files or carry extra ones. (The manifest itself
is not signed: compare ``verify``'s printed manifest digest with the one the sender gives you.)

Archives are unpacked member by member: absolute names, ``..`` components, links and special
files are refused before anything is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from typing import Any

from aesthetics_jax import provenance as provenance_lib

FORMAT = "aesthetics_jax.bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PARAMS = "params.safetensors"
MODEL = "model.json"
CONFIG = "config.json"
METRICS = "metrics.json"
PROVENANCE = "provenance.json"
ONNX = "model.onnx"
REQUIRED = (PARAMS, MODEL, CONFIG, METRICS, PROVENANCE)
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")

# Output keys each head type exposes (logits are left out: the distribution carries them).
HEAD_OUTPUTS = {"emd": ("distribution", "mean", "sd"), "scores": ("scores",), "attributes": ("attributes", "overall")}


class BundleError(ValueError):
    """A bundle is malformed, tampered with, or unsafe to unpack."""


# ----------------------------------------------------------------------------- output semantics


def output_spec(heads: dict[str, dict]) -> list[tuple[str, str, str]]:
    """``[(output_name, head, key)]`` for ``heads`` (``{name: {'type': ...}}``) in head order.

    The name is the key (``distribution``, ``mean``, ``sd``, ``scores``, ``attributes``,
    ``overall``) unless two heads produce the same key; then it is ``<head>_<key>``.
    """
    pairs = []
    for head, config in heads.items():
        head_type = config.get("type")
        if head_type not in HEAD_OUTPUTS:
            raise BundleError(f"head {head!r}: unknown type {head_type!r}; known: {', '.join(HEAD_OUTPUTS)}")
        pairs.extend((head, key) for key in HEAD_OUTPUTS[head_type])
    counts: dict[str, int] = {}
    for _, key in pairs:
        counts[key] = counts.get(key, 0) + 1
    return [(key if counts[key] == 1 else f"{head}_{key}", head, key) for head, key in pairs]


def label_semantics(heads: dict[str, dict]) -> dict[str, dict]:
    """What every output of every head means, and on which scale (stored in bundles and ONNX)."""
    out = {}
    for head, config in heads.items():
        head_type = config.get("type")
        if head_type == "emd":
            k = int(config.get("num_bins", 10))
            out[head] = {
                "type": "emd",
                "scale": [1, k],
                "distribution": f"probabilities of the scores 1..{k} (AVA/NIMA votes: 1 worst, {k} best)",
                "mean": f"expected score sum_i i * p_i, in [1, {k}]",
                "sd": "standard deviation of the score distribution",
            }
        elif head_type == "scores":
            names = list(config.get("names") or [])
            out[head] = {
                "type": "scores",
                "names": names,
                "scores": "linear regression outputs in the units of the training targets"
                + (f", columns {names}" if names else ""),
                "scale": config.get("scale"),
            }
        elif head_type == "attributes":
            names = list(config.get("names") or [])
            out[head] = {
                "type": "attributes",
                "names": names,
                "attributes": f"one regressed score per attribute, columns {names}",
                "overall": "fused overall score (learned combination of the attributes and features)",
                "scale": config.get("scale"),
            }
        else:
            raise BundleError(f"head {head!r}: unknown type {head_type!r}")
    return out


# ----------------------------------------------------------------------------- hashing, manifest


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(path: str, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
        f.write("\n")


def _json_default(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _read_json(directory: str, name: str):
    path = os.path.join(directory, name)
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise BundleError(f"bundle {directory}: {name} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"bundle {directory}: {name} is not valid JSON ({e})") from None


def manifest_digest(directory: str) -> str:
    """sha256 of ``manifest.json``: one fingerprint of the whole bundle to compare out of band."""
    return sha256_file(os.path.join(directory, MANIFEST))


def verify(path: str) -> dict:
    """Checks every file of the bundle at ``path`` (directory or archive) against its manifest.

    Returns the manifest; raises ``BundleError`` naming the first offending file otherwise.
    """
    if is_archive(path):
        with tempfile.TemporaryDirectory(prefix="aesthetics_jax_bundle_") as tmp:
            return verify(unpack(path, tmp))
    return _verify_dir(path)


def _verify_dir(directory: str) -> dict:
    if not os.path.isdir(directory):
        raise BundleError(f"{directory}: not a bundle directory (or .tar.gz archive)")
    manifest = _read_json(directory, MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"bundle {directory}: {MANIFEST} is not an {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"bundle {directory}: format_version {manifest.get('format_version')!r}, this code reads {FORMAT_VERSION}"
        )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"bundle {directory}: {MANIFEST} has no 'files' table")
    for name in REQUIRED:
        if name not in files:
            raise BundleError(f"bundle {directory}: {MANIFEST} does not list required file {name}")
    present = set()
    for root, dirs, names in os.walk(directory):
        for name in dirs + names:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, directory).replace(os.sep, "/")
            if os.path.islink(full):
                raise BundleError(f"bundle {directory}: {rel} is a symbolic link; bundles hold plain files only")
            if name in names:
                present.add(rel)
    for name, entry in files.items():
        _check_member_name(name, directory)
        full = os.path.join(directory, name)
        if name not in present:
            raise BundleError(f"bundle {directory}: {name} is listed in the manifest but missing")
        size = os.path.getsize(full)
        if size != entry.get("size"):
            raise BundleError(
                f"bundle {directory}: {name} has {size} bytes, the manifest says {entry.get('size')}: "
                "the file was modified or corrupted after packing; refusing to use it"
            )
        digest = sha256_file(full)
        if digest != entry.get("sha256"):
            raise BundleError(
                f"bundle {directory}: {name} has sha256 {digest}, the manifest says {entry.get('sha256')}: "
                "the file was modified or corrupted after packing; refusing to use it"
            )
    extra = sorted(present - set(files) - {MANIFEST})
    if extra:
        raise BundleError(f"bundle {directory}: files not in the manifest: {extra} (added after packing?)")
    return manifest


# ----------------------------------------------------------------------------- archives


def is_archive(path) -> bool:
    return os.fspath(path).endswith(ARCHIVE_SUFFIXES) and not os.path.isdir(path)


def _check_member_name(name: str, where: str) -> None:
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise BundleError(f"{where}: member {name!r} has an absolute path; refusing to unpack")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise BundleError(f"{where}: member {name!r} escapes the bundle ('..'); refusing to unpack")


def unpack(archive: str, dest: str) -> str:
    """Unpacks a bundle archive into ``dest``; returns the bundle directory inside it.

    Every member is checked before anything is written: it must be a regular file or directory
    (no symlinks, hard links, devices), with a relative name without ``..``, all under one top
    directory. Files are written by this code (never ``extractall``), mode 0644.
    """
    archive = os.fspath(archive)
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise BundleError(f"{archive}: not a readable tar archive ({e})") from None
    with tar:
        members = tar.getmembers()
        tops = set()
        for m in members:
            _check_member_name(m.name, archive)
            if m.issym() or m.islnk():
                raise BundleError(f"{archive}: member {m.name!r} is a link (to {m.linkname!r}); refusing to unpack")
            if not (m.isfile() or m.isdir()):
                raise BundleError(f"{archive}: member {m.name!r} is not a regular file or directory; refusing to unpack")
            parts = [p for p in m.name.split("/") if p not in ("", ".")]
            if not parts:
                continue
            if len(parts) == 1 and m.isfile():
                raise BundleError(f"{archive}: member {m.name!r} is not inside the bundle's top directory")
            tops.add(parts[0])
        if len(tops) != 1:
            raise BundleError(f"{archive}: expected one top-level bundle directory, found {sorted(tops)}")
        top = tops.pop()
        dest = os.path.abspath(dest)
        root = os.path.join(dest, top)
        if os.path.exists(root):
            raise BundleError(f"{archive}: {root} already exists; unpack into an empty place")
        os.makedirs(root)
        for m in members:
            rel = "/".join(p for p in m.name.split("/") if p not in ("", "."))
            target = os.path.abspath(os.path.join(dest, rel))
            if os.path.commonpath([target, root]) != root:  # belt and braces after the name checks
                raise BundleError(f"{archive}: member {m.name!r} resolves outside {root}")
            if m.isdir():
                os.makedirs(target, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            src = tar.extractfile(m)
            with open(target, "xb") as out:
                shutil.copyfileobj(src, out)
            os.chmod(target, 0o644)
    return root


def _archive(directory: str, out: str) -> None:
    """Deterministic tar.gz of ``directory`` under a top directory named after ``out``."""
    top = os.path.basename(out)
    for suffix in ARCHIVE_SUFFIXES:
        if top.endswith(suffix):
            top = top[: -len(suffix)]
    tmp = out + ".partial"
    with open(tmp, "wb") as raw:
        import gzip

        with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for name in sorted(os.listdir(directory)):
                    full = os.path.join(directory, name)
                    info = tarfile.TarInfo(f"{top}/{name}")
                    info.size = os.path.getsize(full)
                    info.mode = 0o644
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
    os.replace(tmp, out)


# ----------------------------------------------------------------------------- writing


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict) or hasattr(value, "items"):
            flat.update(_flatten(dict(value.items()), path))
        else:
            flat[path] = value
    return flat


def _unflatten(flat: dict[str, Any]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def _to_plain(obj):
    """ConfigDict / FrozenDict / tuples -> plain JSON-able dicts and lists."""
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    if hasattr(obj, "items"):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def default_transform(image_size: int, resize_size: int | None, resize_shorter: int = 0) -> dict:
    """The transform of a model trained here: the training pipeline's evaluation transform."""
    from aesthetics_jax.data import preprocessing

    return preprocessing.transform_spec("resize_center_crop", resize_size=int(resize_size or image_size),
                                        image_size=int(image_size), resize_shorter=int(resize_shorter or 0))


def _model_json(model_config: dict, image_size: int, resize_size: int | None, transform: dict | None = None) -> dict:
    """What `model.json` holds: the model config, its input contract, outputs and label semantics."""
    from aesthetics_jax.data import preprocessing

    heads = model_config["heads"]
    preprocess = model_config.get("preprocess")
    if preprocess is None:
        from aesthetics_jax import models

        preprocess = models.default_preprocess(model_config["name"])
    transform = preprocessing.transform_spec(**(transform or default_transform(image_size, resize_size)))
    if transform["image_size"] != int(image_size):
        raise BundleError(f"transform {transform} does not give the model's image_size {image_size}")
    return {
        "model": model_config,
        "input": {
            "layout": "NHWC",
            "channels": "RGB",
            "dtype": "uint8 or float32",
            "range": [0, 255],
            "image_size": int(image_size),
            "resize_size": int(transform.get("resize_size", resize_size or image_size)),
            "transform": transform,
            "transform_description": preprocessing.describe_transform(transform),
            "preprocess": preprocess,
        },
        "outputs": {name: f"{head}/{key}" for name, head, key in output_spec(heads)},
        "labels": label_semantics(heads),
    }


def write(
    out: str,
    *,
    model_config: dict,
    variables: dict,
    image_size: int,
    resize_size: int | None = None,
    config: dict | None = None,
    metrics: dict | None = None,
    provenance: dict | None = None,
    onnx: bool = False,
    transform: dict | None = None,
    critics: dict | None = None,
) -> str:
    """Writes a bundle for ``variables`` of the model ``models.create`` builds from
    ``model_config`` (``config.model``: name, heads, dtype, dropout, preprocess, backbone kwargs).
    ``transform``: the inference transform spec (default: this project's evaluation transform,
    ``resize_center_crop`` with ``resize_size`` / ``image_size``).

    ``out`` ending in ``.tar.gz``/``.tgz`` writes an archive, anything else a directory (which
    must not exist yet). ``critics``: keyword arguments of ``critique.critic.write_payload``, or the
    path of a bundle whose critics are copied (the critique experts stored beside the scorer; with
    ``heads`` empty, the bundle is critics only).
    Returns ``out``.
    """
    import numpy as np
    from safetensors.numpy import save_file

    out = os.fspath(out)
    if os.path.exists(out):
        raise FileExistsError(f"{out} already exists; bundles are never overwritten")
    model_config = _to_plain(model_config)
    if "name" not in model_config or "heads" not in model_config:
        raise BundleError(f"model_config needs 'name' and 'heads', got keys {sorted(model_config)}")
    model_json = _model_json(model_config, image_size, resize_size, transform)
    arrays = {}
    for collection in ("params", "batch_stats"):
        for path, value in _flatten(dict(variables.get(collection, {}))).items():
            arrays[f"{collection}/{path}"] = np.ascontiguousarray(np.asarray(value))
    if not model_config["heads"] and not critics:
        raise BundleError("model_config has no heads and there are no critics: the bundle would hold nothing to run")
    if model_config["heads"] and not any(k.startswith("params/") for k in arrays):
        raise BundleError("variables have no 'params'")
    metrics = dict(metrics) if metrics is not None else {"note": "no metrics were recorded for these parameters"}
    provenance = dict(provenance or {})
    provenance.setdefault("code", provenance_lib.code())
    provenance.setdefault("versions", provenance_lib.versions())
    provenance.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    archive = out.endswith(ARCHIVE_SUFFIXES)
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".bundle_", dir=parent)
    try:
        save_file(arrays, os.path.join(staging, PARAMS), metadata={"format": FORMAT})
        _write_json(os.path.join(staging, MODEL), model_json)
        _write_json(os.path.join(staging, CONFIG), _to_plain(config) if config is not None else {"model": model_config})
        _write_json(os.path.join(staging, METRICS), metrics)
        _write_json(os.path.join(staging, PROVENANCE), provenance)
        if isinstance(critics, (str, os.PathLike)):
            _copy_critics(os.fspath(critics), staging)
        elif critics:
            from aesthetics_jax.critique import critic  # pylint: disable=g-import-not-at-top

            critic.write_payload(staging, **critics)
        if onnx:
            from aesthetics_jax.export import onnx as onnx_export

            staged = _load_dir(staging, manifest=None)
            onnx_export.export_bundle(staged, os.path.join(staging, ONNX))
        files = {}
        for name in sorted(os.listdir(staging)):
            full = os.path.join(staging, name)
            files[name] = {"sha256": sha256_file(full), "size": os.path.getsize(full)}
        _write_json(os.path.join(staging, MANIFEST), {"format": FORMAT, "format_version": FORMAT_VERSION, "files": files})
        if archive:
            _archive(staging, out)
        else:
            os.replace(staging, out)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)
    return out


def restore_workdir(workdir: str, step):
    """(numpy variables, step) of a workdir checkpoint: ``step`` None/'latest', 'best' (by the
    run's ``best_metric``) or a number (``checkpointing.restore_variables`` does the restoring)."""
    import jax
    import numpy as np

    from aesthetics_jax.train import checkpointing

    ckpt_dir = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise BundleError(f"{workdir}: no checkpoints/ directory (is it a training workdir?)")
    if step == "best":
        config = _read_json(workdir, CONFIG)
        ckpt = checkpointing.Checkpointer(ckpt_dir, best_metric=config.get("best_metric"),
                                          best_mode=config.get("best_mode", "max"), async_save=False)
        step = ckpt.best_step()
        ckpt.close()
        if step is None:
            raise BundleError(f"{workdir}: no checkpoint carries the best metric; use --step latest or a number")
    try:
        variables, step = checkpointing.restore_variables(ckpt_dir, None if step in (None, "latest") else int(step))
    except FileNotFoundError as e:
        raise BundleError(str(e)) from None
    return {k: jax.tree.map(np.asarray, v) for k, v in variables.items()}, step


def _copy_bundle(path: str, out: str, onnx: bool) -> str:
    """A verified bundle (directory or archive) written again at ``out`` (directory or archive)."""
    if os.path.exists(out):
        raise FileExistsError(f"{out} already exists; bundles are never overwritten")
    with tempfile.TemporaryDirectory(prefix="aesthetics_jax_bundle_") as tmp:
        directory = unpack(path, tmp) if is_archive(path) else path
        manifest = _verify_dir(directory)
        if onnx and ONNX not in manifest["files"]:
            raise BundleError(f"{path} is a bundle without model.onnx; --onnx applies when packing a workdir "
                              "(or export it: aesthetics-jax export BUNDLE --format onnx)")
        if out.endswith(ARCHIVE_SUFFIXES):
            _archive(directory, out)
        else:
            shutil.copytree(directory, out)
    return out


def not_a_model_hint(path: str) -> str | None:
    """Why ``path`` is no usable model and what to do, for directories that look like one."""
    meta_path = os.path.join(path, "convert.json")
    if os.path.isfile(meta_path):
        try:
            with open(meta_path) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            meta = {}
        hint = (meta.get("next_steps") or "train heads on it: python launch.py --config CONFIG "
                f"--config.init_from.workdir {path} --config.init_from.dont_load='[\"^emd/\"]'")
        return (f"{path} is a backbone-only conversion (convert.json: arch {meta.get('arch')!r}, no heads): "
                f"there is nothing to score with yet; {hint}")
    return None


def _expert_payload(config: dict, params: dict) -> dict:
    """A caption run (`configs/clipcap_attr.py`) as critic payload kwargs: its image tower and its
    expert under the run's attribute group."""
    import ml_collections  # pylint: disable=g-import-not-at-top

    from aesthetics_jax.data import datasets  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.models import clipcap  # pylint: disable=g-import-not-at-top

    model = dict(config["model"])
    model.pop("name", None)
    model.pop("dtype", None)
    captioner = clipcap.ClipCapCaptioner(**model)
    vision = dict(model.get("vision") or {})
    vision.setdefault("variant", "vit_b16")
    from aesthetics_jax.models import clip as clip_lib  # pylint: disable=g-import-not-at-top

    vision_config = clip_lib.CLIPVisionTransformer(**vision).config
    data = ml_collections.ConfigDict(config["data"])
    groups = list((config["data"].get("captions") or {}).get("groups") or [])
    attribute = groups[0] if len(groups) == 1 else "critique"
    tokenizer = datasets.gpt2_tokenizer_dir(data)
    return dict(clip_params={"visual": params["visual"]}, clip_config=vision_config,
                experts={attribute: params["captioner"]}, clipcap_config=captioner.clipcap_config,
                vocab=os.path.join(tokenizer, "vocab.json"), merges=os.path.join(tokenizer, "merges.txt"))


def pack(workdir: str, out: str, *, step=None, onnx: bool = False, critics: str | None = None) -> str:
    """Packs a training workdir's checkpoint (``step``: None/'latest', 'best' or a number) into a
    bundle at ``out`` (directory, or archive when ``out`` ends in .tar.gz/.tgz). A bundle (e.g. what
    ``aesthetics-jax convert`` wrote) is verified and copied / archived as it is. A caption run
    (``configs/clipcap_attr.py``, task 'caption') becomes a critics-only bundle: its image tower and
    its expert under the run's attribute (``aesthetics-jax critique``). ``critics``: a
    bundle whose critique experts go into the new bundle beside the scorer (``predict`` then
    returns scores and critiques in one call)."""
    if is_bundle(workdir):
        if critics:
            raise BundleError("--critics adds experts to a workdir's scorer when packing it; "
                              f"{workdir} is a bundle already")
        return _copy_bundle(os.fspath(workdir), os.fspath(out), onnx)
    hint = not_a_model_hint(workdir)
    if hint:
        raise BundleError(hint)
    workdir = os.path.abspath(workdir)
    config = _read_json(workdir, CONFIG)
    for key in ("model", "data"):
        if key not in config:
            raise BundleError(f"{workdir}/{CONFIG}: no {key!r} section")
    variables, step = restore_workdir(workdir, step)
    if config.get("task") == "caption":
        if critics:
            raise BundleError(f"{workdir} is a caption (expert) run: it packs into a critics bundle of its own")
        critics = _expert_payload(config, variables["params"])
        variables = {}
    metrics_path = os.path.join(workdir, "eval", "final_metrics.json")
    metrics = None
    if os.path.exists(metrics_path):
        final = _read_json(os.path.join(workdir, "eval"), "final_metrics.json")
        if final.get("step") == step:
            metrics = {"source": "eval/final_metrics.json", **final}
        else:
            metrics = {"note": f"eval/final_metrics.json is of step {final.get('step')}, these parameters are step {step}"}
    data = config["data"]
    provenance = {
        "step": step,
        "workdir": workdir,
        "data": {k: data.get(k) for k in ("name", "data_dir", "manual_dir", "train_split", "val_fraction",
                                           "split_seed", "demo") if k in data},
        "evals": config.get("evals"),
    }
    training = provenance_lib.read(workdir)
    if training is not None:  # the run's code, packages, data fingerprint, devices, wall time
        provenance["training"] = training
    return write(
        out,
        model_config={"name": "clip", "heads": {}} if config.get("task") == "caption" else config["model"],
        variables=variables,
        image_size=data["image_size"],
        resize_size=data.get("resize_size"),
        config=config,
        metrics=metrics,
        provenance=provenance,
        onnx=onnx,
        transform=default_transform(data["image_size"], data.get("resize_size"), data.get("resize_shorter", 0)),
        critics=critics,
    )


# ----------------------------------------------------------------------------- loading


@dataclasses.dataclass
class Bundle:
    """A loaded, verified bundle. ``variables`` is read on first access."""

    path: str
    manifest: dict | None
    model_json: dict
    config: dict
    metrics: dict
    provenance: dict
    onnx_bytes: bytes | None
    _params_file: str | None = None
    _variables: dict | None = None
    _critics: dict | None = None

    @property
    def model_config(self) -> dict:
        return self.model_json["model"]

    @property
    def heads(self) -> dict:
        return self.model_config["heads"]

    @property
    def image_size(self) -> int:
        return int(self.model_json["input"]["image_size"])

    @property
    def resize_size(self) -> int:
        return int(self.model_json["input"]["resize_size"])

    @property
    def transform(self) -> dict:
        """The inference transform spec (``data.preprocessing.apply_transform``). Bundles written
        before specs existed describe ``eval_transform`` in words: that is ``resize_center_crop``."""
        spec = self.model_json["input"].get("transform")
        if isinstance(spec, dict):
            return spec
        return default_transform(self.image_size, self.resize_size)

    @property
    def outputs(self) -> list[tuple[str, str, str]]:
        return output_spec(self.heads)

    @property
    def variables(self) -> dict:
        if self._variables is None:
            from safetensors.numpy import load

            with open(self._params_file, "rb") as f:
                data = f.read()
            if self.manifest is not None and hashlib.sha256(data).hexdigest() != self.manifest["files"][PARAMS]["sha256"]:
                raise BundleError(f"bundle {self.path}: {PARAMS} changed since the bundle was verified; refusing to use it")
            flat = load(data)
            tree = _unflatten(flat)
            self._variables = {"params": tree.get("params", {}), "batch_stats": tree.get("batch_stats", {})}
        return self._variables

    @property
    def has_scorer(self) -> bool:
        return bool(self.heads)

    @property
    def critics(self) -> dict | None:
        """The critique payload ``{'meta': critics.json, 'arrays': {path: array}, 'files': {name:
        bytes}}`` (``critique.critic``), or None when the bundle holds no critics."""
        if self._critics is None and os.path.isfile(os.path.join(self.path, CRITICS_JSON)):
            self._critics = _read_critics(self.path, self.manifest)
        return self._critics

    def create_model(self, dtype="float32"):
        """The Flax module (``models.create`` with the bundle's model config; compute ``dtype``,
        float32 by default whatever the training dtype was)."""
        from aesthetics_jax import models

        cfg = dict(self.model_config)
        name = cfg.pop("name")
        cfg.pop("dtype", None)
        return models.create(name, dtype=dtype, **cfg)


CRITICS_JSON = "critics.json"
CRITICS_PARAMS = "critics.safetensors"


def _copy_critics(src: str, staging: str) -> None:
    """The critic files of the bundle ``src`` (verified first) copied into ``staging``."""
    with tempfile.TemporaryDirectory(prefix="aesthetics_jax_bundle_") as tmp:
        directory = unpack(src, tmp) if is_archive(src) else src
        manifest = _verify_dir(directory)
        if CRITICS_JSON not in manifest["files"]:
            raise BundleError(f"{src}: holds no critique experts (no {CRITICS_JSON})")
        meta = _read_json(directory, CRITICS_JSON)
        for name in (CRITICS_JSON, CRITICS_PARAMS, *meta.get("tokenizer", {}).values()):
            shutil.copyfile(os.path.join(directory, name), os.path.join(staging, name))


def _read_critics(directory: str, manifest) -> dict:
    from safetensors.numpy import load as load_safetensors

    meta = _read_json(directory, CRITICS_JSON)
    names = [CRITICS_PARAMS, *meta.get("tokenizer", {}).values()]
    contents = {}
    for name in names:
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        if manifest is not None and hashlib.sha256(data).hexdigest() != manifest["files"].get(name, {}).get("sha256"):
            raise BundleError(f"bundle {directory}: {name} changed since the bundle was verified; refusing to use it")
        contents[name] = data
    arrays = load_safetensors(contents.pop(CRITICS_PARAMS))
    return {"meta": meta, "arrays": arrays, "files": contents}


def _load_dir(directory: str, manifest) -> Bundle:
    onnx_path = os.path.join(directory, ONNX)
    onnx_bytes = None
    if os.path.exists(onnx_path) and (manifest is None or ONNX in manifest["files"]):
        with open(onnx_path, "rb") as f:
            onnx_bytes = f.read()
    return Bundle(
        path=directory,
        manifest=manifest,
        model_json=_read_json(directory, MODEL),
        config=_read_json(directory, CONFIG),
        metrics=_read_json(directory, METRICS),
        provenance=_read_json(directory, PROVENANCE),
        onnx_bytes=onnx_bytes,
        _params_file=os.path.join(directory, PARAMS),
    )


def load(path: str, *, load_variables: bool = True) -> Bundle:
    """Verifies (every sha256 in the manifest) and loads the bundle at ``path``.

    An archive is unpacked into a temporary directory that is removed before returning (its
    variables are read eagerly). Raises ``BundleError`` with the offending file on any mismatch.
    """
    path = os.fspath(path)
    if is_archive(path):
        with tempfile.TemporaryDirectory(prefix="aesthetics_jax_bundle_") as tmp:
            bundle = load(unpack(path, tmp), load_variables=True)
            bundle.critics  # noqa: B018 - read now, the directory goes away
            bundle.path = path
            bundle._params_file = None
            return bundle
    if not os.path.isfile(os.path.join(path, MANIFEST)):
        hint = not_a_model_hint(path)
        if hint:
            raise BundleError(hint)
    manifest = _verify_dir(path)
    bundle = _load_dir(path, manifest)
    if load_variables:
        bundle.variables  # noqa: B018 - read and re-check now
    return bundle


def load_model(path: str, step="latest") -> Bundle:
    """A bundle (verified, as ``load``), or a training workdir's checkpoint ``step`` ('latest',
    'best' or a number) as an in-memory, unverified ``Bundle`` -- nothing is written."""
    path = os.fspath(path)
    if is_bundle(path):
        return load(path)
    hint = not_a_model_hint(path)
    if hint:
        raise BundleError(hint)
    if not os.path.isdir(os.path.join(path, "checkpoints")):
        raise FileNotFoundError(f"{path}: neither a bundle ({MANIFEST} / .tar.gz) nor a training workdir (checkpoints/)")
    config = _read_json(path, CONFIG)
    if "model" not in config or "data" not in config:
        raise BundleError(f"{path}/{CONFIG}: needs 'model' and 'data' sections")
    variables, step = restore_workdir(path, step)
    data = config["data"]
    transform = default_transform(data["image_size"], data.get("resize_size"), data.get("resize_shorter", 0))
    return Bundle(path=path, manifest=None, config=config, metrics={}, provenance={"step": step, "workdir": path},
                  model_json=_model_json(_to_plain(config["model"]), data["image_size"], data.get("resize_size"),
                                         transform),
                  onnx_bytes=None, _variables=variables)


def info(path: str) -> dict:
    """The JSON files of a bundle (``model``, ``provenance``, ``metrics``) and its manifest digest
    (``sha256``), read without hashing the parameters (a listing, not a verification)."""
    path = os.fspath(path)
    with tempfile.TemporaryDirectory(prefix="aesthetics_jax_bundle_") as tmp:
        directory = unpack(path, tmp) if is_archive(path) else path
        return {"model": _read_json(directory, MODEL), "provenance": _read_json(directory, PROVENANCE),
                "metrics": _read_json(directory, METRICS), "sha256": manifest_digest(directory)}


def load_variables(path: str) -> dict:
    """``{'params', 'batch_stats'}`` of a verified bundle (e.g. to initialise training)."""
    return load(path).variables


def is_bundle(path) -> bool:
    path = os.fspath(path)
    return is_archive(path) or os.path.isfile(os.path.join(path, MANIFEST))


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aesthetics-jax bundle", description="Pack, verify and unpack model bundles.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="pack a training workdir into a bundle (or archive / copy a bundle)")
    p.add_argument("workdir", help="training workdir, or a bundle (e.g. written by aesthetics-jax convert)")
    p.add_argument("--out", required=True, help="bundle directory, or archive if it ends in .tar.gz/.tgz")
    p.add_argument("--step", default="latest", help="checkpoint step: latest (default), best, or a number")
    p.add_argument("--onnx", action="store_true", help="also store the ONNX export (needs the [export] extra)")
    p.add_argument("--critics", default=None, metavar="BUNDLE",
                   help="a bundle with critique experts (e.g. from `convert --from cgiaa`) to store beside the scorer")
    v = sub.add_parser("verify", help="check every file of a bundle against its sha256 manifest")
    v.add_argument("bundle")
    u = sub.add_parser("unpack", help="safely unpack a bundle archive")
    u.add_argument("archive")
    u.add_argument("dest")
    args = parser.parse_args(argv)
    try:
        if args.command == "pack":
            out = pack(args.workdir, args.out, step=args.step, onnx=args.onnx, critics=args.critics)
            print(f"packed {args.workdir} -> {out}")
            with tempfile.TemporaryDirectory() as tmp:
                directory = unpack(out, tmp) if is_archive(out) else out
                print(f"manifest sha256 {manifest_digest(directory)}")
        elif args.command == "verify":
            manifest = verify(args.bundle)
            with tempfile.TemporaryDirectory() as tmp:
                directory = unpack(args.bundle, tmp) if is_archive(args.bundle) else args.bundle
                digest = manifest_digest(directory)
            print(f"{args.bundle}: OK, {len(manifest['files'])} files match the manifest (manifest sha256 {digest})")
        else:
            root = unpack(args.archive, args.dest)
            _verify_dir(root)
            print(f"unpacked and verified {root}")
    except (BundleError, FileExistsError, FileNotFoundError) as e:
        print(f"aesthetics-jax bundle {args.command}: {e}", file=sys.stderr)
        return 1
    return 0
