"""From ``config.data`` to a prepared TFDS build and its random-access split sources.

``config.data.name`` selects the dataset:

    ava    the AVA builder over ``manual_dir`` (an AVA directory in its public layout), built into
           ``data_dir``.
    demo   the embedded demo dataset: rendered into ``<data_dir>/demo/raw`` in AVA's on-disk
           format (``config.data.demo`` holds its parameters), then built by the *same* AVA
           builder into ``<data_dir>/demo`` — separate from a real AVA build in the same data_dir.
           A render from ``demo.first_version`` N > 0 (fresh versions of the same photos) lives
           in ``<data_dir>/demo_fromN`` beside it (`demo_root`).
    eva    the EVA builder over ``manual_dir`` (the unpacked EVA repository), built into
           ``data_dir`` with the by-image split ``val_fraction`` / ``test_fraction`` /
           ``split_seed`` (and ``resize_shorter``, 0 = stored as is).
           With ``config.data.demo`` (the ``demo_eva.build_demo_eva`` parameters) and no
           manual_dir: the embedded demo photographs in EVA's on-disk format, rendered into
           ``<data_dir>/demo_eva/raw`` and built by the *same* EVA builder into
           ``<data_dir>/demo_eva`` with the demo's split file (whole base photos held out).
           ``split_file`` (CSV id,split, relative to manual_dir) fixes a real EVA split.
    eva_patches
           the saliency-patch build over that EVA build (both prepared here, in ``data_dir``):
           ``config.data.patches`` holds the ``eva_patches.build_eva_patches`` options
           (patches_per_image, patch_size, top_focus, threshold, sampling, fallback_top_k, seed,
           producer, producer_params, maps_dir, jpeg_quality, batch_size, num_threads). Splits are
           the parent's: an image's patches are in that image's split.

Modality versions (Lisaius & Wehrwein; ``config.data.modality``): any of the above (except
eva_patches) can be read through a map of its images, built by the ``modality`` builder
(``data/builders/modality.py``: 8-bit PNG maps with the parent's ids, labels and splits)::

    modality = dict(input="map",          # "rgb": the plain build (no maps), "map": the map replicated
                                          # to 3 channels, "rgb+map": RGB + the map as a 4th channel
                    producer="blur",      # a modalities.PRODUCERS name: spectral | msinet | blur | depth
                    params={},            # the producer's keyword arguments (e.g. model_dir= for depth)
                    batch_size=8)         # map computation batch

``prepare`` builds the parent and then its modality build (maps computed once, reused by every
config that names the same producer and parameters). ``source`` joins the two: "map" records carry
the map PNG as ``image`` (decoded as 3 equal channels), "rgb+map" records the parent's JPEG as
``image`` and the map as ``map`` (the pipeline stacks it as channel 4, before any resize / crop /
flip, so both get the same geometry). ``input_channels(data_config)`` is the model's input depth.

Caption builds (vision-language training; ``data/builders/captions.py``): ``name="captions"``
builds image–caption records over an AVA directory (``manual_dir``) from caption files::

    captions = dict(format="cgiaa",       # cgiaa | dpc | ava_captions | ava_comments
                    path="/data/CG-IAA/data",   # the caption file / directory of that format
                    groups=(),            # () = every caption; e.g. ("color",): one attribute group
                                          # (color | composition | dof | general): an expert's data
                    context_length=77)    # tokens per caption (<= the text tower's)

With ``config.data.demo`` and no path, the embedded demo dataset is rendered (as for
``name="demo"``) and its critiques, written from what the renderer did to each image
(``builders/demo_captions.py``), are built in CG-IAA's format. Splits are AVA's: the official test
list is ``test``, so no test image is ever seen in pretraining. ``source`` wraps the split in a
``CaptionSource`` (records without a caption of the selected groups are left out, the others keep
only those captions); training batches then carry ``tokens`` [B, context_length]: one caption
drawn per image per step with the grain rng (``CaptionTokens``), tokenised with CLIP's BPE.

Preparation is idempotent: an existing build is reused. Skipped records are logged here and
listed in the build's ``skipped.csv``.

Targets of the EVA family (``ScoresSource``): ``scores`` = the six per-image means (score = total,
difficulty, visual, composition, quality, semantic; ``eva.SCORE_NAMES`` order), read from the
stored raw means ``scores_raw`` and, with ``config.data.unit`` (default True), mapped to [0, 1] by
``(m - lo) / (hi - lo)`` over ``eva.SCORE_RANGES`` (0..10 for the total, 1..4 for the rest) --
the mapping the EVA builder's ``unit`` configs store. Scaling when reading means raw and unit runs
share one EVA build and one patch build (the EVA build is always made with ``unit=False``). A
batch then carries ``scores`` float32[6] and ``id`` (int64, the image id); patch batches also
``parent_id`` (int64, = ``id``: a patch row's id *is* its parent's id), ``patch_index`` (int32)
and ``coverage`` (float32, the share of the parent's salient pixels inside the patch).
``label_keys(source)`` names the keys a source's batches carry (AVA/demo: ``pipeline.DEFAULT_KEYS``).
"""

from __future__ import annotations

import json
import os

from absl import logging

import numpy as np

from aesthetics_jax.data import pipeline
from aesthetics_jax.data.builders import ava, base

__all__ = ["prepare", "splits", "source", "label_keys", "parent_source", "input_channels", "ScoresSource",
           "ModalitySource", "CaptionSource", "CaptionTokens", "text_transform", "CAPTION_KEYS", "EVA_KEYS", "EVA_PATCH_KEYS", "PATCH_OPTIONS", "MODALITY_INPUTS",
           "CritiqueSource", "read_critiques", "CRITIQUE_OPTIONS", "GPT2CaptionTokens", "add_period", "gpt2_tokenizer_dir",
           "demo_root"]

#: Keys carried into batches from EVA records / eva_patches records (``ScoresSource``).
EVA_KEYS = ("scores", "id")
EVA_PATCH_KEYS = ("scores", "id", "parent_id", "patch_index", "coverage")
#: Keys carried into batches from caption records (``CaptionSource``).
CAPTION_KEYS = ("distribution", "mean_score", "votes", "id", "has_labels")
#: ``config.data.captions`` fields.
#: ``config.data.critiques`` fields (generated critiques as a model input; ``CritiqueSource``).
CRITIQUE_OPTIONS = ("path", "attributes", "context_length")
CAPTION_OPTIONS = ("format", "path", "groups", "context_length", "tokenizer", "gpt2_tokenizer", "max_tokens")
#: ``config.data.modality.input`` values.
MODALITY_INPUTS = ("rgb", "map", "rgb+map")
#: ``config.data.patches`` fields passed to ``eva_patches.build_eva_patches``.
PATCH_OPTIONS = ("patches_per_image", "patch_size", "top_focus", "threshold", "sampling", "fallback_top_k", "seed",
                 "producer", "producer_params", "maps_dir", "jpeg_quality", "batch_size", "num_threads")


def _log_skipped(builder) -> None:
    skipped = builder.info.metadata.get("num_skipped", 0) if builder.info.metadata else 0
    if skipped:
        logging.warning("%d records skipped while building %s; see %s", skipped, builder.info.full_name,
                        os.path.join(builder.data_dir, base.SKIPPED_REPORT))


def _eva_location(data_config, data_dir: str) -> tuple[str, str, str]:
    """(manual_dir, TFDS data_dir, split_file) of an EVA-family config; renders the demo if asked."""
    demo_params = data_config.get("demo")
    if demo_params and not data_config.get("manual_dir"):
        from aesthetics_jax.data.builders import demo_eva  # pylint: disable=g-import-not-at-top

        manual_dir = os.path.join(data_dir, "demo_eva", "raw")
        summary = demo_eva.build_demo_eva(manual_dir, **dict(demo_params))
        logging.info("demo EVA dataset: %d images %s in %s", summary["num_images"], summary["split_counts"],
                     manual_dir)
        return manual_dir, os.path.join(data_dir, "demo_eva"), demo_eva.SPLIT_FILE
    if not data_config.get("manual_dir"):
        raise ValueError("config.data.manual_dir must name the EVA directory (data/votes_filtered.csv, "
                         "images/EVA_together/, ...)")
    return data_config.manual_dir, data_dir, data_config.get("split_file", "")


def _prepare_eva(data_config, data_dir: str):
    from aesthetics_jax.data.builders import eva  # pylint: disable=g-import-not-at-top

    manual_dir, tfds_dir, split_file = _eva_location(data_config, data_dir)
    builder = eva.build_eva(
        manual_dir, tfds_dir,
        val_fraction=data_config.get("val_fraction", 0.1),
        test_fraction=data_config.get("test_fraction", 0.1),
        seed=data_config.get("split_seed", 0),
        unit=False,  # raw means stored; ScoresSource scales them per config (one build serves both)
        resize_shorter=data_config.get("resize_shorter", 0),
        split_file=split_file,
    )
    _log_skipped(builder)
    return builder


def _prepare_eva_patches(data_config, data_dir: str):
    from aesthetics_jax.data.builders import eva_patches  # pylint: disable=g-import-not-at-top

    parent = _prepare_eva(data_config, data_dir)
    data_dir = os.path.dirname(os.path.dirname(os.path.dirname(os.fspath(parent.data_dir))))  # <dir>/eva/<cfg>/<v>
    options = dict(data_config.get("patches") or {})
    unknown = sorted(set(options) - set(PATCH_OPTIONS))
    if unknown:
        raise ValueError(f"config.data.patches: unknown option(s) {unknown}; known: {list(PATCH_OPTIONS)}")
    if "producer_params" in options:
        options["producer_params"] = dict(options["producer_params"] or {})
    builder = eva_patches.build_eva_patches(data_dir, parent_config=parent.builder_config.name, **options)
    _log_skipped(builder)
    return builder


def _modality(data_config) -> dict | None:
    """The ``config.data.modality`` settings when a map is read, else None (checked)."""
    settings = data_config.get("modality")
    if not settings:
        return None
    settings = dict(settings)
    unknown = sorted(set(settings) - {"input", "producer", "params", "batch_size"})
    if unknown:
        raise ValueError(f"config.data.modality: unknown field(s) {unknown}; known: input, producer, params, batch_size")
    mode = settings.get("input", "rgb")
    if mode not in MODALITY_INPUTS:
        raise ValueError(f"config.data.modality.input must be one of {MODALITY_INPUTS}, got {mode!r}")
    if mode == "rgb":
        return None
    if not settings.get("producer"):
        raise ValueError(f"config.data.modality.input={mode!r} needs a producer (e.g. 'blur', 'spectral', 'depth')")
    if data_config.name == "eva_patches":
        raise ValueError("modality inputs are built from whole images: use data.name 'eva', not 'eva_patches'")
    return settings


def input_channels(data_config) -> int:
    """Channels of the images batches carry: 4 for ``modality.input == 'rgb+map'``, else 3."""
    settings = _modality(data_config)
    return 4 if settings and settings["input"] == "rgb+map" else 3


def prepare(data_config):
    """Builds (or reuses) the dataset ``data_config`` names; returns the TFDS builder.

    With a map input (``config.data.modality``) that is the modality build of the dataset.
    """
    builder = _prepare_base(data_config)
    settings = _modality(data_config)
    if settings is None:
        return builder
    from aesthetics_jax.data.builders import modality  # pylint: disable=g-import-not-at-top

    data_dir = modality.parent_tfds_root(builder.data_dir)  # beside the parent build
    built = modality.build_modality(data_dir, parent_dir=os.fspath(builder.data_dir), producer=settings["producer"],
                                    producer_params=dict(settings.get("params") or {}),
                                    batch_size=int(settings.get("batch_size", 8)), progress=True)
    _log_skipped(built)
    return built


def demo_root(data_config, data_dir: str) -> str:
    """Where the demo render ``config.data.demo`` describes lives: ``<data_dir>/demo`` (raw files in
    ``raw/``, TFDS builds beside them), ``<data_dir>/demo_fromN`` for a render from version N."""
    first = int(data_config.demo.get("first_version", 0))
    return os.path.join(data_dir, f"demo_from{first}" if first else "demo")


def _prepare_base(data_config):
    name = data_config.name
    data_dir = os.path.abspath(os.path.expanduser(data_config.data_dir))
    if name == "eva":
        return _prepare_eva(data_config, data_dir)
    if name == "eva_patches":
        return _prepare_eva_patches(data_config, data_dir)
    if name == "captions":
        return _prepare_captions(data_config, data_dir)
    if name == "demo":
        from aesthetics_jax.data.builders import demo

        tfds_dir = demo_root(data_config, data_dir)
        manual_dir = os.path.join(tfds_dir, "raw")
        summary = demo.build_demo_ava(manual_dir, **dict(data_config.demo))
        logging.info("demo dataset: %d images (%d train, %d test) in %s",
                     summary["num_images"], summary["num_train"], summary["num_test"], manual_dir)
    elif name == "ava":
        manual_dir = data_config.manual_dir
        if not manual_dir:
            raise ValueError("config.data.manual_dir must name the AVA directory (AVA.txt, images/, ...)")
        tfds_dir = data_dir
    else:
        raise ValueError(f"unknown dataset {name!r}; known: 'ava', 'demo', 'eva', 'eva_patches', 'captions'")

    builder = ava.build_ava(
        manual_dir, tfds_dir,
        val_fraction=data_config.get("val_fraction", 0.0),
        seed=data_config.get("split_seed", 0),
    )
    _log_skipped(builder)
    return builder


def _captions_settings(data_config) -> dict:
    settings = dict(data_config.get("captions") or {})
    unknown = sorted(set(settings) - set(CAPTION_OPTIONS))
    if unknown:
        raise ValueError(f"config.data.captions: unknown field(s) {unknown}; known: {', '.join(CAPTION_OPTIONS)}")
    return settings


def _prepare_captions(data_config, data_dir: str):
    from aesthetics_jax.data.builders import captions  # pylint: disable=g-import-not-at-top

    settings = _captions_settings(data_config)
    if data_config.get("demo") and not settings.get("path"):
        from aesthetics_jax.data.builders import demo, demo_captions  # pylint: disable=g-import-not-at-top

        manual_dir = os.path.join(demo_root(data_config, data_dir), "raw")
        summary = demo.build_demo_ava(manual_dir, **dict(data_config.demo))
        critiques = demo_captions.write_demo_critiques(manual_dir)
        if settings.get("tokenizer") == "gpt2" and not settings.get("gpt2_tokenizer"):
            demo_captions.write_demo_tokenizer(manual_dir)
        logging.info("demo captions: %d images (%d train, %d test); critiques %s",
                     summary["num_images"], summary["num_train"], summary["num_test"], critiques)
        fmt, path, tfds_dir = "cgiaa", os.path.join(manual_dir, "critiques"), os.path.dirname(manual_dir)
    else:
        manual_dir, fmt, path = data_config.manual_dir, settings.get("format"), settings.get("path")
        if not manual_dir or not fmt or not path:
            raise ValueError("captions data needs config.data.manual_dir (the AVA directory), "
                             "config.data.captions.format (cgiaa | dpc | ava_captions | ava_comments) and "
                             "config.data.captions.path (the caption file or directory)")
        tfds_dir = data_dir
    builder = captions.build_captions(manual_dir, tfds_dir, format=fmt, captions_path=path,
                                      val_fraction=data_config.get("val_fraction", 0.0),
                                      seed=data_config.get("split_seed", 0), progress=True)
    _log_skipped(builder)
    return builder


def splits(builder) -> list[str]:
    return list(builder.info.splits.keys())


def source(builder, split: str, data_config=None):
    """Random-access source of ``split`` with images left as JPEG bytes (decoded by the pipeline).

    EVA and eva_patches builds are wrapped in a ``ScoresSource`` (targets unit-scaled when
    ``data_config.unit``, the default, is true; raw otherwise).
    """
    raw = pipeline.make_source(builder, split)
    if builder.name == "modality":
        parent = (builder.info.metadata or {}).get("parent") or {}
        settings = _modality(data_config) if data_config is not None else None
        mode = settings["input"] if settings else "map"
        rgb = pipeline.make_source(parent["dir"], split) if mode == "rgb+map" else None
        raw = ModalitySource(raw, rgb, mode)
        if parent.get("name") == "eva":
            unit = True if data_config is None else bool(data_config.get("unit", True))
            return ScoresSource(raw, unit=unit, patches=False)
        return raw
    if builder.name in ("eva", "eva_patches"):
        unit = True if data_config is None else bool(data_config.get("unit", True))
        return ScoresSource(raw, unit=unit, patches=builder.name == "eva_patches")
    if builder.name == "captions":
        groups = _captions_settings(data_config).get("groups") if data_config is not None else None
        return CaptionSource(raw, groups=groups)
    critiques = dict((data_config.get("critiques") or {}) if data_config is not None else {})
    unknown = sorted(set(critiques) - set(CRITIQUE_OPTIONS))
    if unknown:
        raise ValueError(f"config.data.critiques: unknown field(s) {unknown}; known: {', '.join(CRITIQUE_OPTIONS)}")
    if critiques.get("path"):
        return CritiqueSource(raw, **critiques)
    return raw


def label_keys(source) -> tuple[str, ...]:
    """The label keys batches of ``source`` carry (next to ``image`` and ``mask``)."""
    if isinstance(source, CritiqueSource):
        return (*pipeline.DEFAULT_KEYS, "critique_tokens")
    if isinstance(source, ScoresSource):
        return source.label_keys
    if isinstance(source, CaptionSource):
        return CAPTION_KEYS
    return pipeline.DEFAULT_KEYS


def text_transform(source, data_config):
    """The pipeline's train-time text transform for ``source`` (``CaptionTokens``), or None."""
    if not isinstance(source, CaptionSource):
        return None
    settings = _captions_settings(data_config)
    if settings.get("tokenizer", "clip") == "gpt2":
        return GPT2CaptionTokens(gpt2_tokenizer_dir(data_config), int(settings.get("max_tokens", 40)))
    return CaptionTokens(int(settings.get("context_length", 77)))


def parent_source(patch_source: "ScoresSource") -> "ScoresSource":
    """The same split of the EVA build a patch source's build was made from (same target scaling)."""
    if not (isinstance(patch_source, ScoresSource) and patch_source.patches):
        raise ValueError("parent_source needs an eva_patches ScoresSource (datasets.source of an eva_patches build)")
    info = patch_source.source.dataset_info
    parent_dir = (info.metadata or {}).get("parent", {}).get("dir")
    if not parent_dir or not os.path.isfile(os.path.join(parent_dir, "dataset_info.json")):
        raise FileNotFoundError(f"the parent EVA build of {info.full_name} ({parent_dir}) is not there")
    return ScoresSource(pipeline.make_source(parent_dir, str(patch_source.source.split)), unit=patch_source.unit,
                        patches=False)


class ScoresSource:
    """EVA / eva_patches records -> ``image`` + the six targets (unit or raw) + ids (module docstring).

    Random access (``len``, ``[i]``) like the TFDS source it wraps; picklable, so grain worker
    processes can use it.
    """

    def __init__(self, source, *, unit: bool, patches: bool):
        from aesthetics_jax.data.builders import eva  # pylint: disable=g-import-not-at-top

        self.source, self.unit, self.patches = source, bool(unit), bool(patches)
        self.label_keys = EVA_PATCH_KEYS if patches else EVA_KEYS
        self._lo = np.array([eva.SCORE_RANGES[n][0] for n in eva.SCORE_NAMES], np.float32)
        self._span = np.array([eva.SCORE_RANGES[n][1] - eva.SCORE_RANGES[n][0] for n in eva.SCORE_NAMES], np.float32)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        record = self.source[index]
        scores = np.asarray(record["scores_raw"], np.float32)
        if self.unit:
            scores = (scores - self._lo) / self._span
        if not self.patches:
            out = {"image": record["image"], "scores": scores, "id": np.int64(record["id"])}
            if "map" in record:  # a modality build read as RGB + map
                out["map"] = record["map"]
            return out
        parent = np.int64(record["parent_id"])
        return {"image": record["image"], "scores": scores, "id": parent, "parent_id": parent,
                "patch_index": np.int32(record["patch_index"]), "coverage": np.float32(record["coverage"])}


class ModalitySource:
    """Records of a modality build as the pipeline reads them (module docstring, "Modality versions").

    ``mode`` "map": the map PNG is the ``image``; "rgb+map": ``image`` is the parent record's JPEG
    (``rgb_source[parent_index]``, its id checked) and ``map`` the map PNG. Every label of the
    record is kept. Random access and picklable, like the TFDS sources it wraps.
    """

    def __init__(self, maps, rgb_source, mode: str):
        if mode not in ("map", "rgb+map"):
            raise ValueError(f"ModalitySource mode must be 'map' or 'rgb+map', got {mode!r}")
        if mode == "rgb+map" and rgb_source is None:
            raise ValueError("mode 'rgb+map' needs the parent build's source")
        self.maps, self.rgb_source, self.mode = maps, rgb_source, mode

    def __len__(self) -> int:
        return len(self.maps)

    def __getitem__(self, index: int) -> dict:
        record = dict(self.maps[index])
        png = record.pop("map")
        if self.mode == "map":
            record["image"] = png
            return record
        parent_index = int(record["parent_index"])
        rgb = self.rgb_source[parent_index]
        for key in ("id", "name"):
            if key in record and key in rgb and np.asarray(record[key]) != np.asarray(rgb[key]):
                raise ValueError(f"modality record {index} has {key} {record[key]!r} but parent record {parent_index} "
                                 f"has {rgb[key]!r}: the parent build changed after the maps were built; rebuild")
        record["image"], record["map"] = rgb["image"], png
        return record


def _texts(values) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(values, dtype=object).reshape(-1)]


class CaptionSource:
    """Caption-build records, optionally restricted to attribute ``groups`` (module docstring).

    Records keep their image and labels; ``captions`` / ``caption_attributes`` / ``caption_groups``
    become lists of ``str`` holding only the selected groups' captions, and records left with none
    are not in the source. Selecting groups reads every record's captions once (the image bytes
    come along: array_record reads whole records), cached in memory. Random access and picklable.
    """

    def __init__(self, source, *, groups=None):
        self.source = source
        self.groups = tuple(groups) if groups else None
        if self.groups:
            unknown = sorted(set(self.groups) - {"color", "composition", "dof", "general"})
            if unknown:
                raise ValueError(f"caption groups {unknown} unknown; known: color, composition, dof, general")
            self._index = [i for i in range(len(source)) if set(_texts(source[i]["caption_groups"])) & set(self.groups)]
        else:
            self._index = list(range(len(source)))

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, index: int) -> dict:
        record = dict(self.source[self._index[index]])
        texts, attributes, groups = (_texts(record[k]) for k in ("captions", "caption_attributes", "caption_groups"))
        keep = [i for i, g in enumerate(groups) if self.groups is None or g in self.groups]
        record["captions"] = [texts[i] for i in keep]
        record["caption_attributes"] = [attributes[i] for i in keep]
        record["caption_groups"] = [groups[i] for i in keep]
        return record

    def captions(self) -> list[dict]:
        """``[{'id', 'captions', 'caption_groups'}]`` of every record in source order (evaluation)."""
        out = []
        for i in range(len(self)):
            record = self[i]
            out.append({"id": int(record["id"]), "captions": record["captions"], "caption_groups": record["caption_groups"]})
        return out


class CaptionTokens:
    """Train-time text transform: one of the record's captions drawn with the grain rng, tokenised
    to ``context_length`` ids (CLIP BPE; captions longer than that are truncated, ending in EOT)."""

    def __init__(self, context_length: int = 77):
        self.context_length = int(context_length)

    def __call__(self, record, rng: np.random.Generator) -> dict:
        from aesthetics_jax.models import clip_tokenizer  # pylint: disable=g-import-not-at-top  (numpy BPE)

        captions = record["captions"]
        if not len(captions):
            raise ValueError(f"caption record {record.get('id', '?')} has no captions")
        text = captions[int(rng.integers(len(captions)))]
        tokens = clip_tokenizer.tokenize([text], context_length=self.context_length, truncate=True)[0]
        return {"tokens": tokens.astype(np.int32)}


def gpt2_tokenizer_dir(data_config) -> str:
    """``config.data.captions.gpt2_tokenizer``, or for the demo (left empty) the vocabulary learnt
    from its critiques (`demo_captions.write_demo_tokenizer`)."""
    settings = _captions_settings(data_config)
    if settings.get("gpt2_tokenizer"):
        return os.path.expanduser(settings["gpt2_tokenizer"])
    if data_config.get("demo"):
        from aesthetics_jax.data.builders import demo_captions  # pylint: disable=g-import-not-at-top

        data_dir = os.path.abspath(os.path.expanduser(data_config.data_dir))
        return os.path.join(demo_root(data_config, data_dir), "raw", demo_captions.TOKENIZER_DIR)
    return ""


def add_period(caption: str) -> str:
    """ClipCap's caption normalisation: stripped, ending in "." (a trailing " ." becomes ".")."""
    caption = caption.strip()
    if not caption.endswith("."):
        return caption + "."
    if len(caption) > 1 and caption[-2] == " ":
        return caption[:-2] + "."
    return caption


class GPT2CaptionTokens:
    """Train-time text transform of a ClipCap expert: one of the record's captions drawn with the
    grain rng, normalised with `add_period` (as the released ClipCap training), GPT-2 BPE ids
    (`models.gpt2_tokenizer`, from the directory holding vocab.json + merges.txt) cut to
    ``max_tokens`` (the released 40) and right-padded with -1 (`losses.caption_xent` and
    `models.clipcap` treat ids < 0 as padding)."""

    def __init__(self, tokenizer_dir: str, max_tokens: int = 40):
        if not tokenizer_dir:
            raise ValueError("data.captions.tokenizer 'gpt2' needs data.captions.gpt2_tokenizer: a directory "
                             "holding GPT-2's vocab.json and merges.txt")
        self.tokenizer_dir, self.max_tokens = str(tokenizer_dir), int(max_tokens)
        self._tokenizer = None

    def __getstate__(self):  # grain workers rebuild the tokenizer
        return {"tokenizer_dir": self.tokenizer_dir, "max_tokens": self.max_tokens, "_tokenizer": None}

    def encode(self, text: str) -> np.ndarray:
        from aesthetics_jax.models import gpt2_tokenizer  # pylint: disable=g-import-not-at-top

        if self._tokenizer is None:
            self._tokenizer = gpt2_tokenizer.GPT2Tokenizer.from_dir(self.tokenizer_dir)
        ids = self._tokenizer.encode(add_period(text))[: self.max_tokens]
        out = np.full((self.max_tokens,), -1, np.int32)
        out[: len(ids)] = ids
        return out

    def __call__(self, record, rng: np.random.Generator) -> dict:
        captions = record["captions"]
        if not len(captions):
            raise ValueError(f"caption record {record.get('id', '?')} has no captions")
        return {"tokens": self.encode(captions[int(rng.integers(len(captions)))])}


def read_critiques(path: str, attributes) -> dict[int, tuple[str, ...]]:
    """``{image id: (critique per attribute, ...)}`` from ``aesthetics-jax critique`` JSON lines
    (``{"image": ".../<id>.jpg", "critiques": {attribute: text}}``; the id is the file name's
    stem, AVA's naming). Lines with an ``error`` are left out; a line without one of the
    ``attributes``, a non-integer id or an id given twice is a ValueError naming the line."""
    table: dict[int, tuple[str, ...]] = {}
    attributes = tuple(attributes)
    if not attributes:
        raise ValueError("data.critiques.attributes names no attribute")
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no}: not JSON ({e})") from None
            if "error" in item:
                continue
            stem = os.path.splitext(os.path.basename(str(item.get("image", ""))))[0]
            if not stem.isdigit():
                raise ValueError(f"{path}:{line_no}: image {item.get('image')!r} is not named <id>.<ext>")
            critiques = item.get("critiques") or {}
            missing = [a for a in attributes if a not in critiques]
            if missing:
                raise ValueError(f"{path}:{line_no}: no critique for {missing} (has {sorted(critiques)})")
            if int(stem) in table:
                raise ValueError(f"{path}:{line_no}: image id {stem} given twice")
            table[int(stem)] = tuple(str(critiques[a]) for a in attributes)
    return table


class CritiqueSource:
    """An AVA / demo source whose records also carry ``critique_tokens`` [A, context_length] int32:
    the CLIP tokens of each image's generated critique per attribute (``config.data.critiques``:
    ``path`` of ``aesthetics-jax critique`` JSON lines over the build's images, ``attributes`` in
    order, ``context_length``; critiques longer than the context are cut, ending in EOT). The
    input of critique-based scoring (``models/critique_text.py``, ``configs/critique_iaa.py``) and
    of the fusion model's ``textual='generated'``. An image of the build with no critique is a
    KeyError naming the id and the file. Random access and picklable."""

    def __init__(self, source, *, path: str, attributes=("color", "composition", "dof", "general"),
                 context_length: int = 77):
        from aesthetics_jax.models import clip_tokenizer  # pylint: disable=g-import-not-at-top

        self.source, self.path = source, os.path.expanduser(path)
        self.attributes, self.context_length = tuple(attributes), int(context_length)
        table = read_critiques(self.path, self.attributes)
        ids = sorted(table)
        flat = [text for i in ids for text in table[i]]
        tokens = clip_tokenizer.tokenize(flat, context_length=self.context_length, truncate=True).astype(np.int32)
        self._row = {image_id: k for k, image_id in enumerate(ids)}
        self._tokens = tokens.reshape(len(ids), len(self.attributes), self.context_length)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        record = dict(self.source[index])
        image_id = int(record["id"])
        if image_id not in self._row:
            raise KeyError(f"image {image_id} has no critique in {self.path}: run `aesthetics-jax critique` over "
                           "every image of the build")
        record["critique_tokens"] = self._tokens[self._row[image_id]]
        return record
