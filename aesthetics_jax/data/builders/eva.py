"""TFDS builder for EVA (Explainable Visual Aesthetics, Kang et al. 2020), built and read without TF.

Input (the `manual_dir`: the unpacked eva-dataset repository, or the same files flat):

    data/votes_filtered.csv            `=`-delimited, header row, one row per (image, rater):
                                       image_id=user_id=score=difficulty=visual=composition=quality=
                                       semantic=vote_time=1=2=3=4   (columns are found by header name)
    data/image_content_category.csv    comma-separated, header ("image_id","sort"), quoted values,
                                       optional UTF-8 BOM; category 1..6 (names in CATEGORY_NAMES)
    images/EVA_together/<id>.jpg       (or EVA_together/<id>.jpg)

`votes_filtered.csv` and `image_content_category.csv` are also accepted directly in manual_dir.

Scales (EVA README): score integer 0..10; difficulty 1 (very difficult) .. 4 (very easy); visual,
composition, quality, semantic 1 (very bad) .. 4 (very good); flags `1`..`4` are 0/1 (light & colour,
composition & depth, quality, semantic mattered most). `vote_time` is not used.

Features of one example (SCORE_NAMES order = score, difficulty, visual, composition, quality,
semantic — the six targets of Aesthetics-XAI):

    image                 JPEG bytes (image_io: kept byte for byte when already a plain JPEG)
    id                    int64   AVA image id (example key)
    scores                float32[6]  per-image means; raw mixed scales (0..10, 1..4) by default,
                                      or each mapped to [0, 1] ((m - lo) / (hi - lo)) in `unit` configs
    scores_raw            float32[6]  per-image means on the raw scales, whatever the config
    score_sds             float32[6]  population standard deviations (ddof = 0), in `scores` units
    score_histogram       int32[11]   votes for score 0..10
    score_distribution    float32[11] score_histogram / num_raters
    attribute_histograms  int32[5, 4] votes for levels 1..4 of difficulty, visual, composition,
                                      quality, semantic (rows in that order)
    num_raters            int32   valid votes kept for the image (one per rater)
    factor_rates          float32[4]  fraction of raters who ticked flag 1..4
    category              int32   content category 1..6, 0 = not in image_content_category.csv
    category_name         string  CATEGORY_NAMES[category] ('' for 0)
    mean_score            float32 = scores_raw[0] (the 0..10 overall mean, like AVA's mean_score)

Splits are by **image** (so no image's votes, patches or modalities can be in two splits): the ids
of every image with at least one valid vote, sorted, are permuted with
`numpy.random.default_rng(seed)`; the first round(test_fraction * n) are `test`, the next
round(val_fraction * n) `validation`, the rest `train`. The split is drawn before images are
checked, so a broken or later-repaired image file never moves other images between splits.
It is stored with the dataset: as the TFDS splits, and as `splits.csv` (id, split) beside the
array_record files (`split_ids(builder)` reads it) for later stages that work outside TFDS.

A fixed split instead of the draw: `split_file`, a CSV with header `id,split` (split one of
train / validation / test; a path relative to manual_dir, or absolute), e.g. a published split or
one that keeps all photos of a scene or a photographer together (the demo's `demo_split.csv` holds
out whole base photos). Every image with a valid vote must be listed; an image that is not
is skipped with reason `not_in_split_file`, and a malformed row is an error naming the file and
line. The config is named after the file's stem (`..._split-<stem>`): a changed file under the same
name needs the build deleted, as a changed manual_dir does.

Bad rows and images are skipped and listed in `skipped.csv` (id, line, file, reason, detail) with
counts in `info.metadata` (`skipped`, `num_skipped`, `reencoded`, `num_votes_read`, ...):

    wrong_column_count   a votes row whose field count differs from the header's
    bad_id               image id not a non-negative integer
    bad_user             empty user id
    non_numeric_score    a score / level that is not a number (detail names the column)
    out_of_range_score   not an integer in its range (0..10 for score, 1..4 for the others)
    bad_factor_flag      a factor flag that is not 0 or 1
    duplicate_vote       the same rater voting twice on an image: the first vote (lowest line)
                         is kept, later ones are reported with the first one's line
    not_in_split_file    an image with votes that `split_file` does not list
    bad_category_row     a category row without an integer id and a category 1..6
    duplicate_category   an image listed twice in the category file (first row kept)
    + the image reasons of aesthetics_jax.data.image_io (missing_image, empty_image, not_jpeg,
      truncated_image, decompression_bomb, undecodable_image), reported against the image file
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Iterator, NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from aesthetics_jax.data import image_io
from aesthetics_jax.data.builders import base

__all__ = ["Eva", "EvaConfig", "build_eva", "config_for", "read_split_file", "split_ids", "SCORE_NAMES", "SCORE_RANGES",
           "CATEGORY_NAMES", "FACTOR_NAMES", "SPLITS_FILE"]

SPLITS_FILE = "splits.csv"
SCORE_NAMES = ("score", "difficulty", "visual", "composition", "quality", "semantic")
SCORE_RANGES = {"score": (0, 10), "difficulty": (1, 4), "visual": (1, 4), "composition": (1, 4),
                "quality": (1, 4), "semantic": (1, 4)}
FACTOR_NAMES = ("light_and_colour", "composition_and_depth", "quality", "semantic")
CATEGORY_NAMES = {1: "animals", 2: "architectures and city scenes", 3: "human", 4: "natural and rural scenes",
                  5: "still life", 6: "other"}
_VOTE_COLUMNS = ("image_id", "user_id", *SCORE_NAMES, "1", "2", "3", "4")
_LO = np.array([SCORE_RANGES[n][0] for n in SCORE_NAMES], np.float64)
_HI = np.array([SCORE_RANGES[n][1] for n in SCORE_NAMES], np.float64)


@dataclasses.dataclass(eq=False)
class EvaConfig(tfds.core.BuilderConfig):
    """By-image split fractions and seed; `unit` rescales `scores` to [0, 1]; optional stored size."""

    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    unit: bool = False
    resize_shorter: int = 0
    split_file: str = ""  # CSV id,split fixing the split (module docstring); "" = the seeded draw


def _split_file_stem(split_file: str) -> str:
    stem = os.path.splitext(os.path.basename(split_file))[0]
    return "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in stem) or "split"


def _config_name(val_fraction, test_fraction, seed, unit, resize_shorter, split_file="") -> str:
    if split_file:
        name = f"split-{_split_file_stem(split_file)}"
    elif (val_fraction, test_fraction, seed) == (0.1, 0.1, 0):
        name = "default"
    else:
        name = f"val{val_fraction:g}_test{test_fraction:g}_seed{seed}".replace(".", "p").replace("-", "m")
    if unit:
        name += "_unit"
    if resize_shorter:
        name += f"_s{int(resize_shorter)}"
    return name


class _Vote(NamedTuple):
    line: int
    values: tuple[int, ...]  # score, difficulty, visual, composition, quality, semantic
    flags: tuple[int, ...]   # 4 x 0/1


class Eva(base.CheckedBuilder):
    """EVA: JPEG bytes + per-image means, histograms and sds of six scores, factor rates, category."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "JPEG bytes in array_record; by-image seeded split; skipped-record report."}
    BUILDER_CONFIGS = [
        EvaConfig(name="default", description="raw scales; 80 / 10 / 10 % by image, seed 0"),
        EvaConfig(name="default_unit", unit=True, description="scores in [0, 1]; 80 / 10 / 10 % by image, seed 0"),
    ]
    DEFAULT_CONFIG_NAME = "default"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Point manual_dir at the unpacked EVA repository: data/votes_filtered.csv, "
        "data/image_content_category.csv and images/EVA_together/<id>.jpg."
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._split_of: dict[int, str] = {}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="EVA: Explainable Visual Aesthetics (Kang, Valenzise, Dufaux, ATQAM/MAST 2020).",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "id": tfds.features.Scalar(dtype=np.int64),
                "scores": tfds.features.Tensor(shape=(6,), dtype=np.float32),
                "scores_raw": tfds.features.Tensor(shape=(6,), dtype=np.float32),
                "score_sds": tfds.features.Tensor(shape=(6,), dtype=np.float32),
                "score_histogram": tfds.features.Tensor(shape=(11,), dtype=np.int32),
                "score_distribution": tfds.features.Tensor(shape=(11,), dtype=np.float32),
                "attribute_histograms": tfds.features.Tensor(shape=(5, 4), dtype=np.int32),
                "num_raters": tfds.features.Scalar(dtype=np.int32),
                "factor_rates": tfds.features.Tensor(shape=(4,), dtype=np.float32),
                "category": tfds.features.Scalar(dtype=np.int32),
                "category_name": tfds.features.Text(),
                "mean_score": tfds.features.Scalar(dtype=np.float32),
            }),
            supervised_keys=("image", "scores"),
            citation=(
                "@inproceedings{kang2020eva, title={EVA: An Explainable Visual Aesthetics Dataset}, "
                "author={Kang, Chen and Valenzise, Giuseppe and Dufaux, Fr{\\'e}d{\\'e}ric}, "
                "booktitle={Joint Workshop on Aesthetic and Technical Quality Assessment of Multimedia and "
                "Media Analytics for Societal Trends (ATQAM/MAST)}, year={2020}}"
            ),
            metadata=tfds.core.MetadataDict(),
        )

    # -- reading the CSV files ---------------------------------------------------------------------

    def _parse_votes(self, path: str, rel: str) -> dict[int, list[_Vote]]:
        votes: dict[int, list[_Vote]] = {}
        first_vote: dict[tuple[int, str], int] = {}
        num_rows = 0
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            header = f.readline().rstrip("\r\n").split("=")
            missing = [c for c in _VOTE_COLUMNS if c not in header]
            if missing:
                raise ValueError(f"{rel} line 1: header {header} lacks column(s) {missing}")
            index = {c: header.index(c) for c in _VOTE_COLUMNS}
            for line_no, text in enumerate(f, start=2):
                text = text.rstrip("\r\n")
                if not text.strip():
                    continue
                num_rows += 1
                fields = text.split("=")
                image_id = fields[0].strip()
                if len(fields) != len(header):
                    self._skip(image_id, line_no, rel, "wrong_column_count",
                               f"{len(fields)} fields, header has {len(header)}")
                    continue
                image_id = fields[index["image_id"]].strip()
                if not image_id.isdigit():
                    self._skip(image_id, line_no, rel, "bad_id", f"id {image_id!r}")
                    continue
                user = fields[index["user_id"]].strip()
                if not user:
                    self._skip(image_id, line_no, rel, "bad_user", "empty user_id")
                    continue
                values, problem = [], None
                for name in SCORE_NAMES:
                    raw = fields[index[name]].strip()
                    try:
                        value = float(raw)
                    except ValueError:
                        problem = ("non_numeric_score", f"{name}={raw!r}")
                        break
                    lo, hi = SCORE_RANGES[name]
                    if not (math.isfinite(value) and value == int(value) and lo <= value <= hi):
                        problem = ("out_of_range_score", f"{name}={raw!r} not an integer in [{lo}, {hi}]")
                        break
                    values.append(int(value))
                if problem is None:
                    flags = [fields[index[c]].strip() for c in ("1", "2", "3", "4")]
                    bad = [f"{c}={v!r}" for c, v in zip("1234", flags) if v not in ("0", "1")]
                    if bad:
                        problem = ("bad_factor_flag", ", ".join(bad))
                if problem is not None:
                    self._skip(image_id, line_no, rel, *problem)
                    continue
                key = (int(image_id), user)
                if key in first_vote:
                    self._skip(image_id, line_no, rel, "duplicate_vote",
                               f"user {user} already voted on line {first_vote[key]} (first vote kept)")
                    continue
                first_vote[key] = line_no
                votes.setdefault(int(image_id), []).append(_Vote(line_no, tuple(values), tuple(int(v) for v in flags)))
        self._stats["num_vote_rows"] = num_rows
        self._stats["num_votes_kept"] = sum(len(v) for v in votes.values())
        return votes

    def _parse_categories(self, path: str | None, rel: str) -> dict[int, int]:
        categories: dict[int, int] = {}
        if path is None:
            return categories
        first: dict[int, int] = {}
        with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
            for line_no, fields in enumerate(csv.reader(f), start=1):
                fields = [v.strip() for v in fields]
                if not fields or not any(fields):
                    continue
                if line_no == 1 and not fields[0].isdigit():
                    continue  # header ("image_id","sort")
                image_id = fields[0]
                if len(fields) != 2 or not image_id.isdigit() or fields[1] not in {str(c) for c in CATEGORY_NAMES}:
                    self._skip(image_id, line_no, rel, "bad_category_row", ",".join(fields)[:80])
                    continue
                if int(image_id) in first:
                    self._skip(image_id, line_no, rel, "duplicate_category", f"first on line {first[int(image_id)]}")
                    continue
                first[int(image_id)] = line_no
                categories[int(image_id)] = int(fields[1])
        return categories

    # -- TFDS hooks --------------------------------------------------------------------------------

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = os.fspath(dl_manager.manual_dir)
        votes_rel = _find(root, ("data/votes_filtered.csv", "votes_filtered.csv"))
        if votes_rel is None:
            raise FileNotFoundError(f"votes_filtered.csv not found in manual_dir {root} (nor in {root}/data)")
        category_rel = _find(root, ("data/image_content_category.csv", "image_content_category.csv"))
        image_dir = _find(root, ("images/EVA_together", "EVA_together")) or "images/EVA_together"
        self._reset()
        self._split_of = {}

        votes = self._parse_votes(os.path.join(root, votes_rel), votes_rel)
        categories = self._parse_categories(category_rel and os.path.join(root, category_rel), category_rel or "")
        self._stats["num_images_with_votes"] = len(votes)
        self._stats["num_without_category"] = sum(i not in categories for i in votes)
        self._stats["category_ids_without_votes"] = sum(i not in votes for i in categories)

        config = self.builder_config
        ids = np.array(sorted(votes), np.int64)
        if config.split_file:
            fixed = read_split_file(os.path.join(root, config.split_file))
            for image_id in ids.tolist():
                if image_id in fixed:
                    self._split_of[image_id] = fixed[image_id]
                else:
                    self._skip(image_id, votes[image_id][0].line, votes_rel, "not_in_split_file",
                               f"{config.split_file} does not list this image")
            ids = np.array([i for i in ids.tolist() if i in self._split_of], np.int64)
        else:
            n_test = int(round(config.test_fraction * len(ids)))
            n_val = int(round(config.val_fraction * len(ids)))
            order = np.random.default_rng(config.seed).permutation(ids).tolist()
            for k, image_id in enumerate(order):
                self._split_of[image_id] = "test" if k < n_test else "validation" if k < n_test + n_val else "train"

        entries = [(i, votes[i][0].line, f"{image_dir}/{i}.jpg", os.path.join(root, image_dir, f"{i}.jpg"))
                   for i in ids.tolist()]
        good: dict[str, list] = {"train": [], "validation": [], "test": []}
        for (image_id, _, _, path), inspection in zip(entries, self._check_images(entries)):
            if inspection:
                good[self._split_of[image_id]].append((image_id, path, inspection))
        self._stats["split_images"] = {name: len(rows) for name, rows in good.items()}
        if config.split_file:
            fractions = {name: float(name in set(self._split_of.values())) for name in good}
        else:
            fractions = {"validation": config.val_fraction, "test": config.test_fraction, "train": 1.0}
        return {name: self._generate_examples(rows, votes, categories) for name, rows in good.items()
                if rows or fractions[name] > 0}

    def _generate_examples(self, rows, votes, categories) -> Iterator[tuple[int, dict]]:
        unit = self.builder_config.unit
        for image_id, path, inspection in rows:
            image_votes = votes[image_id]
            values = np.array([v.values for v in image_votes], np.float64)  # [raters, 6]
            flags = np.array([v.flags for v in image_votes], np.float64)    # [raters, 4]
            means, sds = values.mean(axis=0), values.std(axis=0)
            scores, score_sds = means, sds
            if unit:
                scores, score_sds = (means - _LO) / (_HI - _LO), sds / (_HI - _LO)
            score_histogram = np.bincount(values[:, 0].astype(np.int64), minlength=11)
            attribute_histograms = np.stack([np.bincount(values[:, j].astype(np.int64) - 1, minlength=4)
                                             for j in range(1, 6)])
            category = categories.get(image_id, 0)
            yield image_id, {
                "image": image_io.storage_bytes(path, inspection,
                                                resize_shorter=self.builder_config.resize_shorter or None),
                "id": image_id,
                "scores": scores.astype(np.float32),
                "scores_raw": means.astype(np.float32),
                "score_sds": score_sds.astype(np.float32),
                "score_histogram": score_histogram.astype(np.int32),
                "score_distribution": (score_histogram / len(image_votes)).astype(np.float32),
                "attribute_histograms": attribute_histograms.astype(np.int32),
                "num_raters": len(image_votes),
                "factor_rates": flags.mean(axis=0).astype(np.float32),
                "category": category,
                "category_name": CATEGORY_NAMES.get(category, ""),
                "mean_score": np.float32(means[0]),
            }

    def _download_and_prepare(self, dl_manager, download_config=None):
        super()._download_and_prepare(dl_manager, download_config)
        # The temporary build directory, renamed by TFDS afterwards (the report and metadata are
        # written by CheckedBuilder).
        with open(os.path.join(os.fspath(self.data_dir), SPLITS_FILE), "w", newline="") as f:
            f.write("id,split\n")
            f.writelines(f"{i},{s}\n" for i, s in sorted(self._split_of.items()))

    def _metadata(self) -> dict:
        config = self.builder_config
        return dict(splits_file=SPLITS_FILE, val_fraction=float(config.val_fraction),
                    test_fraction=float(config.test_fraction), seed=int(config.seed), unit=bool(config.unit),
                    split_file=config.split_file, score_names=list(SCORE_NAMES))


def _find(root: str, candidates) -> str | None:
    for rel in candidates:
        if os.path.exists(os.path.join(root, rel)):
            return rel
    return None


def config_for(val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0, unit: bool = False,
               resize_shorter: int = 0, split_file: str = "") -> EvaConfig:
    """The predefined config with these values, or a custom one named after them."""
    if not (0 <= val_fraction and 0 <= test_fraction and val_fraction + test_fraction < 1):
        raise ValueError(f"need val_fraction, test_fraction >= 0 with sum < 1, got {val_fraction}, {test_fraction}")
    if resize_shorter < 0:
        raise ValueError(f"resize_shorter must be >= 0 (0 = original size), got {resize_shorter}")
    name = _config_name(val_fraction, test_fraction, seed, unit, resize_shorter, split_file)
    predefined = Eva.builder_configs.get(name)
    if predefined is not None:
        return predefined
    description = (f"split fixed by {split_file}" if split_file else
                   f"by-image split val {val_fraction:g} / test {test_fraction:g}, seed {seed}")
    return EvaConfig(name=name, val_fraction=float(val_fraction), test_fraction=float(test_fraction), seed=int(seed),
                     unit=bool(unit), resize_shorter=int(resize_shorter), split_file=os.fspath(split_file),
                     description=description)


def build_eva(manual_dir, data_dir, *, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0,
              unit: bool = False, resize_shorter: int = 0, split_file: str = "", progress: bool = False) -> Eva:
    """Prepares EVA from `manual_dir` into `data_dir` (nothing is downloaded); returns the builder.

    Idempotent: an existing build of the same config is reused as is (delete
    `<data_dir>/eva/<config>` to rebuild after changing manual_dir). `split_file` (relative to
    manual_dir, or absolute) fixes the split instead of the seeded draw (module docstring).
    """
    if split_file and not os.path.isfile(os.path.join(os.fspath(manual_dir), split_file)):
        raise FileNotFoundError(f"split_file {split_file} not found (relative paths are in manual_dir {manual_dir})")
    builder = Eva(data_dir=os.fspath(data_dir),
                  config=config_for(val_fraction, test_fraction, seed, unit, resize_shorter, split_file))
    builder.inspect_progress = "eva" if progress else None
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
    return builder


def read_split_file(path: str) -> dict[int, str]:
    """{image id: split} of a `split_file` (CSV `id,split`); ValueError naming the line if malformed."""
    fixed: dict[int, str] = {}
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = [v.strip() for v in next(reader, [])]
        if header[:2] != ["id", "split"]:
            raise ValueError(f"{path} line 1: header must start with id,split, got {header}")
        for line_no, fields in enumerate(reader, start=2):
            if not fields or not any(v.strip() for v in fields):
                continue
            image_id, split = fields[0].strip(), fields[1].strip() if len(fields) > 1 else ""
            if not image_id.isdigit() or split not in ("train", "validation", "test"):
                raise ValueError(f"{path} line {line_no}: need an integer id and train/validation/test, "
                                 f"got {','.join(fields)!r}")
            if int(image_id) in fixed and fixed[int(image_id)] != split:
                raise ValueError(f"{path} line {line_no}: id {image_id} listed in two splits")
            fixed[int(image_id)] = split
    return fixed


def split_ids(builder: tfds.core.DatasetBuilder) -> dict[int, str]:
    """{image id: split} of a prepared build, from its splits.csv (ids whose image was skipped too)."""
    with open(os.path.join(os.fspath(builder.data_dir), SPLITS_FILE), newline="") as f:
        return {int(r["id"]): r["split"] for r in csv.DictReader(f)}
