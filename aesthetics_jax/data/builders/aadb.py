"""TFDS builder for AADB (Kong et al., ECCV 2016): overall score + 11 attributes, standard split.

Input (the `manual_dir`: the unpacked AADB release, as aimerykong/deepImageAestheticsAnalysis ships it):

    imgListFiles_label/imgList<Split>Regression_<attr>.txt     one `<image name> <value>` per line
        <Split>  Train (8,458 images) | Validation (500) | TestNew (1,000)
        <attr>   score, BalacingElements (sic), ColorHarmony, Content, DoF, Light, MotionBlur,
                 Object, Repetition, RuleOfThirds, Symmetry, VividColor
    datasetImages_originalSize/<name>      train and validation images (datasetImages_warp256/ also
                                           accepted, the release's 256x256 warped copies)
    AADB_newtest_originalSize/<name>       test images; copies named `<score>_<name>` (e.g.
                                           `0.500_farm1_487_..._b.jpg`, as in the `AADB_newtest/`
                                           folder of some mirrors) are found by that prefix too

What this relies on (the release itself is not on this machine): the file-name pattern, the
`name value` lines and the TestNew/original-size folders are those read by the published AADB
loaders (the release's own test lists are named `imgListTestNewRegression_*`; the older
`imgListTestRegression_*` lists belong to a superseded test set and are not read). Score values are
in [0, 1] and attributes in [-1, 1] (the paper's normalisation); values outside are rejected.

Features: `image` (JPEG bytes via image_io), `name` (string, the example key), `score` float32,
`attributes` float32[11] in ATTRIBUTE_NAMES order. Splits `train` / `validation` / `test` are the
lists above (no seed). Bad rows and images go to `skipped.csv` (id = image name) with counts in
`info.metadata`; reasons:

    bad_label_row        a line that is not `<name> <number>`
    out_of_range_label   score outside [0, 1] or attribute outside [-1, 1]
    duplicate_id         a name listed twice in one list (first kept)
    missing_attribute    the image is absent from one of the 12 lists of its split
    in_two_splits        the name is already in an earlier split (train < validation < test); it
                         stays only in the earlier one, so no image is in two splits
    + the image reasons of aesthetics_jax.data.image_io.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from aesthetics_jax.data import image_io
from aesthetics_jax.data.builders import base

__all__ = ["Aadb", "AadbConfig", "build_aadb", "config_for", "ATTRIBUTE_NAMES", "LABEL_FILES", "SPLIT_FILES",
]

ATTRIBUTE_NAMES = ("BalacingElements", "ColorHarmony", "Content", "DoF", "Light", "MotionBlur", "Object",
                   "Repetition", "RuleOfThirds", "Symmetry", "VividColor")
LABEL_FILES = ("score", *ATTRIBUTE_NAMES)
SPLIT_FILES = {"train": "Train", "validation": "Validation", "test": "TestNew"}
_LABEL_DIR = "imgListFiles_label"
_IMAGE_DIRS = {"train": ("datasetImages_originalSize", "datasetImages_warp256"),
               "validation": ("datasetImages_originalSize", "datasetImages_warp256"),
               "test": ("AADB_newtest_originalSize", "AADB_newtest")}
_SCORE_PREFIX = re.compile(r"^[0-9]*\.?[0-9]+_(.+)$")


def label_file(split: str, attribute: str) -> str:
    return f"{_LABEL_DIR}/imgList{SPLIT_FILES[split]}Regression_{attribute}.txt"


@dataclasses.dataclass(eq=False)
class AadbConfig(tfds.core.BuilderConfig):
    resize_shorter: int = 0  # > 0: store images with their shorter side shrunk to this


class Aadb(base.CheckedBuilder):
    """AADB: JPEG bytes, overall score and 11 attribute scores; standard 8458 / 500 / 1000 split."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "JPEG bytes in array_record; skipped-record report."}
    BUILDER_CONFIGS = [AadbConfig(name="default", description="original size; standard split")]
    DEFAULT_CONFIG_NAME = "default"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Point manual_dir at the unpacked AADB release: imgListFiles_label/, datasetImages_originalSize/ "
        "and AADB_newtest_originalSize/."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="AADB: Aesthetics and Attributes DataBase (Kong et al., ECCV 2016).",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "name": tfds.features.Text(),
                "score": tfds.features.Scalar(dtype=np.float32),
                "attributes": tfds.features.Tensor(shape=(len(ATTRIBUTE_NAMES),), dtype=np.float32),
            }),
            supervised_keys=("image", "score"),
            citation=(
                "@inproceedings{kong2016photo, title={Photo Aesthetics Ranking Network with Attributes and "
                "Content Adaptation}, author={Kong, Shu and Shen, Xiaohui and Lin, Zhe and Mech, Radomir and "
                "Fowlkes, Charless}, booktitle={ECCV}, year={2016}}"
            ),
            metadata=tfds.core.MetadataDict(),
        )

    def _parse_list(self, root: str, rel: str, lo: float, hi: float) -> dict[str, tuple[float, int]]:
        path = os.path.join(root, rel)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{rel} not found in manual_dir {root}")
        values: dict[str, tuple[float, int]] = {}
        with open(path, encoding="utf-8", errors="replace") as f:
            for line_no, text in enumerate(f, start=1):
                fields = text.split()
                if not fields:
                    continue
                name = fields[0]
                try:
                    if len(fields) != 2:
                        raise ValueError
                    value = float(fields[1])
                except ValueError:
                    self._skip(name, line_no, rel, "bad_label_row", text.strip()[:80])
                    continue
                if not (math.isfinite(value) and lo <= value <= hi):
                    self._skip(name, line_no, rel, "out_of_range_label", f"{fields[1]} not in [{lo:g}, {hi:g}]")
                    continue
                if name in values:
                    self._skip(name, line_no, rel, "duplicate_id", f"first on line {values[name][1]}")
                    continue
                values[name] = (value, line_no)
        return values

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = os.fspath(dl_manager.manual_dir)
        self._reset()
        seen: dict[str, str] = {}
        splits: dict[str, list] = {}
        for split in SPLIT_FILES:
            lists = {attr: self._parse_list(root, label_file(split, attr), *((0.0, 1.0) if attr == "score" else (-1.0, 1.0)))
                     for attr in LABEL_FILES}
            score_rel = label_file(split, "score")
            names = sorted(set().union(*lists.values()), key=lambda n: min(v[n][1] for v in lists.values() if n in v))
            rows = []
            for name in names:
                line = lists["score"][name][1] if name in lists["score"] else 0
                absent = [attr for attr in LABEL_FILES if name not in lists[attr]]
                if absent:
                    present = next(attr for attr in LABEL_FILES if name in lists[attr])
                    self._skip(name, lists[present][name][1], label_file(split, present), "missing_attribute",
                               f"not in the {split} list(s) of {', '.join(absent)}")
                    continue
                if name in seen:
                    self._skip(name, line, score_rel, "in_two_splits", f"already in {seen[name]} (kept there)")
                    continue
                seen[name] = split
                rows.append((name, line, lists["score"][name][0],
                             np.array([lists[a][name][0] for a in ATTRIBUTE_NAMES], np.float32)))
            paths = [self._image_path(root, split, name, score) for name, _, score, _ in rows]
            entries = [(row[0], row[1], os.path.relpath(path, root), path) for row, path in zip(rows, paths)]
            progress = self.inspect_progress and f"{self.inspect_progress} {split}"
            inspections = self._check_images(entries, progress=progress)
            splits[split] = [(*row, path, inspection)
                             for row, path, inspection in zip(rows, paths, inspections) if inspection]
            self._stats[f"num_listed_{split}"] = len(names)
        return {split: self._generate_examples(rows) for split, rows in splits.items()}

    def _image_path(self, root: str, split: str, name: str, score: float) -> str:
        for folder in _IMAGE_DIRS[split]:
            path = os.path.join(root, folder, name)
            if os.path.exists(path):
                return path
        for folder in _IMAGE_DIRS[split]:  # `<score>_<name>` copies
            prefixed = self._prefixed_names(os.path.join(root, folder)).get(name)
            if prefixed:
                return os.path.join(root, folder, prefixed)
        return os.path.join(root, _IMAGE_DIRS[split][0], name)  # missing: reported as missing_image

    def _prefixed_names(self, folder: str) -> dict[str, str]:
        cache = self.__dict__.setdefault("_prefixed_cache", {})
        if folder not in cache:
            names = {}
            if os.path.isdir(folder):
                for entry in sorted(os.listdir(folder)):
                    match = _SCORE_PREFIX.match(entry)
                    if match:
                        names.setdefault(match.group(1), entry)
            cache[folder] = names
        return cache[folder]

    def _generate_examples(self, rows) -> Iterator[tuple[str, dict]]:
        for name, _, score, attributes, path, inspection in rows:
            yield name, {
                "image": image_io.storage_bytes(path, inspection,
                                                resize_shorter=self.builder_config.resize_shorter or None),
                "name": name,
                "score": np.float32(score),
                "attributes": attributes,
            }

    def _metadata(self) -> dict:
        return dict(attribute_names=list(ATTRIBUTE_NAMES))


def config_for(resize_shorter: int = 0) -> AadbConfig:
    if resize_shorter < 0:
        raise ValueError(f"resize_shorter must be >= 0 (0 = original size), got {resize_shorter}")
    if not resize_shorter:
        return Aadb.builder_configs["default"]
    return AadbConfig(name=f"default_s{int(resize_shorter)}", resize_shorter=int(resize_shorter),
                      description=f"shorter side {resize_shorter}; standard split")


def build_aadb(manual_dir, data_dir, *, resize_shorter: int = 0, progress: bool = False) -> Aadb:
    """Prepares AADB from `manual_dir` into `data_dir` (nothing is downloaded); idempotent."""
    builder = Aadb(data_dir=os.fspath(data_dir), config=config_for(resize_shorter))
    builder.inspect_progress = "aadb" if progress else None
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
    return builder
