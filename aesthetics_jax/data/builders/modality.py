"""TFDS builder `modality`: a perceptual-modality version of an existing build (Lisaius & Wehrwein).

A modality build replaces every image of a *parent* build (AVA, the demo, EVA or AADB, as the
other builders write them) by a single-channel map of it -- saliency, depth, blur -- and keeps
everything else: the same records with the same ids, labels and splits (`tests/test_modality.py`
checks the ids per split against the parent's). Training reads it through `data.datasets`
(`config.data.modality`), either as the map alone (replicated to 3 channels) or as a 4th channel
beside the parent's RGB pixels, which are read from the parent build through `parent_index`.

    build_modality(data_dir, parent_dir="<data_dir>/demo/ava/val0p1_seed0/1.0.0", producer="blur")

Input: the prepared parent directory and a map producer (`modalities.create(producer,
**producer_params)`). The work is done in two steps:

  1. the maps: `modalities.files.compute_map_files(producer, [parent], maps_dir, bits=8)` --
     one 8-bit PNG per record, of the parent's *stored* pixels (its JPEG decoded as training
     decodes it), resumable, shardable (`shard=(i, n)`: several processes share the work; the
     records are written by a run without a shard once every shard is done), with a progress
     line and its own skip report (`maps_dir/skipped.csv`). `maps_dir` defaults to
     `<data_dir>/modality/_maps/<config name>`;
  2. the records: every parent record in parent order, with `image` (and any other Image
     feature) dropped and

        map            the map PNG's bytes, 8 bit, 1 channel, the parent image's height x width.
                       Stored as written in step 1 (value = round(m * 255), m in [0, 1]); 8 bits
                       are plenty for a network input that is itself 8-bit pixels, and PNG keeps
                       them exact (JPEG would add block artefacts to smooth maps).
        parent_index   int64, the record's index in the parent's split: the RGB pixels of the
                       same image are `make_source(parent_dir, split)[parent_index]["image"]`.

     Every other feature of the parent (id / name, labels, tags, categories ...) is copied with
     the parent's own feature spec. Records are written unshuffled, in the parent's order, so
     without skips record i of a split is parent record i.

Skips (`skipped.csv`, counts in the metadata), as the other builders report them: the parent's
own image skips are carried over (detail prefixed 'parent build: '); a record whose map could not
be made is skipped with the maps job's reason (`undecodable_image`, `map_failed` -- e.g. a depth
model refusing a 1x1 image --, `bad_map`) or `missing_map` (no PNG, e.g. an unfinished shard).
A modality build never fails on one image.

Metadata (`info.metadata`): `producer` (its `metadata()`: name, params[, weights_sha256]),
`maps_dir`, `map_bits` 8, `parent` (dir, full name, name, config, version, splits with their
record counts), `splits` (records written per split), plus the skip counts.

Config name: `<parent name>_<parent config>_<producer>`, plus `_<8 hex digits>` of sha256 over
the producer parameters and the parent directory when the parameters are not empty, so maps of
the same parent by different producers or parameters are different builds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from aesthetics_jax.data import pipeline
from aesthetics_jax.data.builders import base

__all__ = ["Modality", "ModalityConfig", "build_modality", "compute_maps", "config_for", "maps_dir_for",
           "parent_tfds_root",
           "record_id", "MAP_BITS"]

MAP_BITS = 8


def record_id(record) -> str:
    """A build record's image id as text: `id` (AVA, EVA, demo) or `name` (AADB)."""
    if "id" in record:
        return str(int(record["id"]))
    name = record["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


@dataclasses.dataclass(eq=False)
class ModalityConfig(tfds.core.BuilderConfig):
    """Parent build directory, map producer and its parameters, where the map PNGs go."""

    parent_dir: str = ""
    producer: str = "spectral"
    producer_params: dict = dataclasses.field(default_factory=dict)
    maps_dir: str = ""


def _parent_dir(path) -> str:
    """The prepared directory (holding dataset_info.json) of `path` or of its newest version folder."""
    from aesthetics_jax.modalities import files  # pylint: disable=g-import-not-at-top

    found = files.resolve_source(os.path.abspath(os.fspath(path)))
    if found.kind != "build":
        raise FileNotFoundError(f"{path} is not a prepared dataset directory (no dataset_info.json in it or in a "
                                "version folder below it): build the parent first")
    return found.path


def config_for(parent_dir, producer: str, producer_params: dict | None = None, maps_dir: str = "") -> ModalityConfig:
    """The config for the maps of `producer(**producer_params)` of the build in `parent_dir`."""
    parent_dir = _parent_dir(parent_dir)
    parent = tfds.builder_from_directory(parent_dir)
    if parent.name == "modality":
        raise ValueError(f"{parent_dir} is already a modality build; point at the RGB build it was made from")
    producer_params = dict(producer_params or {})
    parent_config = parent.builder_config.name if parent.builder_config else "default"
    name = f"{parent.name}_{parent_config}_{producer}"
    if producer_params:
        digest = json.dumps(dict(params=producer_params, parent=parent_dir), sort_keys=True, default=str)
        name += "_" + hashlib.sha256(digest.encode()).hexdigest()[:8]
    return ModalityConfig(
        name=name, description=f"{producer} maps of {parent.info.full_name} ({parent_dir})",
        parent_dir=parent_dir, producer=producer, producer_params=producer_params,
        maps_dir=os.path.abspath(os.fspath(maps_dir)) if maps_dir else "")


def parent_tfds_root(parent_dir) -> str:
    """The TFDS data_dir a prepared build lives in (`<root>/<name>/<config>/<version>` -> `<root>`)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(_parent_dir(parent_dir))))


def maps_dir_for(data_dir, config: ModalityConfig) -> str:
    """Where the config's map PNGs are written: its `maps_dir`, else `<data_dir>/modality/_maps/<name>`."""
    return config.maps_dir or os.path.join(os.path.abspath(os.fspath(data_dir)), "modality", "_maps", config.name)


def compute_maps(data_dir, config: ModalityConfig, *, shard: tuple[int, int] = (0, 1), batch_size: int = 8,
                 progress: str | None = "maps") -> dict:
    """Step 1: the maps of every parent record into `maps_dir_for(data_dir, config)` (resumable, shardable)."""
    from aesthetics_jax import modalities  # pylint: disable=g-import-not-at-top
    from aesthetics_jax.modalities import files  # pylint: disable=g-import-not-at-top

    producer = modalities.create(config.producer, **config.producer_params)
    return files.compute_map_files(producer, [config.parent_dir], maps_dir_for(data_dir, config), bits=MAP_BITS,
                                   shard=shard, batch_size=batch_size, progress=progress)


class Modality(base.CheckedBuilder):
    """Maps of a parent build's images with the parent's ids, labels and splits (module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "8-bit PNG maps of a parent build, parent labels and splits, parent_index."}
    BUILDER_CONFIGS = [ModalityConfig(name="default", description="set parent_dir and producer (config_for)")]
    DEFAULT_CONFIG_NAME = "default"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.progress: str | None = None
        self._producer_metadata: dict = {}

    def _parent(self):
        if not self.builder_config.parent_dir:
            raise ValueError("a modality build needs a parent build: use modality.config_for(parent_dir, producer)")
        return tfds.builder_from_directory(self.builder_config.parent_dir)

    def _info(self) -> tfds.core.DatasetInfo:
        parent = self._parent()
        features = {name: feature for name, feature in parent.info.features.items()
                    if not isinstance(feature, tfds.features.Image)}
        features["map"] = tfds.features.Image(shape=(None, None, 1), encoding_format="png")
        features["parent_index"] = tfds.features.Scalar(dtype=np.int64)
        return tfds.core.DatasetInfo(
            builder=self,
            description=(f"{self.builder_config.producer} maps (8-bit PNG) of {parent.info.full_name}: the parent's "
                         "records, labels and splits, `parent_index` into the parent split."),
            features=tfds.features.FeaturesDict(features),
            disable_shuffling=True,  # parent order: record i is parent record i when nothing was skipped
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # everything is local
        from aesthetics_jax.modalities import files  # pylint: disable=g-import-not-at-top

        self._reset()
        parent = self._parent()
        maps_dir = maps_dir_for(self._data_dir_root, self.builder_config)
        stored = files.read_producer(maps_dir) if os.path.isdir(maps_dir) else None
        if not stored:
            raise FileNotFoundError(f"no maps in {maps_dir}: compute them first (modality.compute_maps, or "
                                    "aesthetics-jax data build modality ... which does both steps)")
        if int(stored.get("bits", 0)) != MAP_BITS:
            raise ValueError(f"{maps_dir} holds {stored.get('bits')}-bit maps; a modality build stores {MAP_BITS}-bit")
        self._producer_metadata = dict(stored.get("producer") or {})
        if self._producer_metadata.get("name") != self.builder_config.producer:
            raise ValueError(f"{maps_dir} holds maps of {self._producer_metadata.get('name')!r}, not "
                             f"{self.builder_config.producer!r}")
        self._carry_parent_skips(self.builder_config.parent_dir)
        failed = {row["id"]: row for row in files.read_skipped(maps_dir)} if os.path.isfile(
            os.path.join(maps_dir, "skipped.csv")) else {}
        self._stats["splits"] = {}
        return {name: self._generate_examples(parent, name, maps_dir, failed) for name in sorted(parent.info.splits)}

    def _generate_examples(self, parent, split: str, maps_dir: str, failed: dict) -> Iterator[tuple[str, dict]]:
        source = pipeline.make_source(parent, split)
        copied = [name for name, feature in parent.info.features.items()
                  if not isinstance(feature, tfds.features.Image)]
        total, written, start = len(source), 0, time.time()
        last = start
        for k in range(total):
            record = source[k]
            image_id = record_id(record)
            ref = f"{self.builder_config.parent_dir}#{split}/{k}"
            path = os.path.join(maps_dir, f"{image_id}.png")
            if image_id in failed:
                row = failed[image_id]
                self._skip(image_id, 0, row["file"] or ref, row["reason"], row["detail"])
                continue
            if not os.path.isfile(path):
                self._skip(image_id, 0, ref, "missing_map", f"no {path} (an unfinished or missing maps shard?)")
                continue
            with open(path, "rb") as f:
                png = f.read()
            written += 1
            yield image_id, {"map": png, "parent_index": np.int64(k), **{name: record[name] for name in copied}}
            if self.progress and (time.time() - last > 5 or k == total - 1):
                last = time.time()
                print(f"[{self.progress}] {split}: {k + 1}/{total} records, {(k + 1) / max(time.time() - start, 1e-9):.0f}/s",
                      file=sys.stderr, flush=True)
        self._stats["splits"][split] = written

    def _metadata(self) -> dict:
        config = self.builder_config
        parent = self._parent()
        return dict(
            producer=self._producer_metadata, maps_dir=maps_dir_for(self._data_dir_root, config), map_bits=MAP_BITS,
            parent=dict(dir=config.parent_dir, full_name=parent.info.full_name, name=parent.name,
                        config=parent.builder_config.name if parent.builder_config else "",
                        version=str(parent.version),
                        splits={name: int(info.num_examples) for name, info in parent.info.splits.items()}))


def build_modality(data_dir, *, parent_dir, producer: str, producer_params: dict | None = None, maps_dir: str = "",
                   batch_size: int = 8, progress: bool = False) -> Modality:
    """Prepares (or reuses) the modality build of `parent_dir` by `producer` in `<data_dir>/modality/<config>`.

    Computes the missing maps first (step 1, resumable), then writes the records (step 2).
    Idempotent: a finished build of the same config is reused as is. `parent_tfds_root(parent_dir)`
    is the natural `data_dir`: the modality build then sits beside its parent (the demo's next to
    the demo, not next to a real AVA build of the same config name).
    """
    config = config_for(parent_dir, producer, producer_params, maps_dir)
    builder = Modality(data_dir=os.fspath(data_dir), config=config)
    if not builder.is_prepared():
        summary = compute_maps(data_dir, config, batch_size=batch_size,
                               progress=f"{producer} maps" if progress else None)
        print(f"[data] {producer} maps: {summary['computed']} computed, {summary['resumed']} resumed, "
              f"{summary['skipped']} skipped of {summary['total']} in {summary['out_dir']}", file=sys.stderr,
              flush=True)
        builder.progress = "modality" if progress else None
        builder.download_and_prepare()
    return builder
