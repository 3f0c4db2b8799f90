"""What the AVA, EVA and AADB builders share: array_record output, image checks, skip report.

`CheckedBuilder` is a `tfds.core.GeneratorBasedBuilder` that

  * writes array_record files (random access, readable without TensorFlow);
  * checks images with `image_io.inspect_files` (`_check_images`): results are cached in
    `<data_dir>/<name>/_inspect_cache/` so an interrupted build resumes, oddities the checks can
    repair are re-encoded (counted by reason in the `reencoded` statistic), the config's
    `resize_shorter` (> 0) shrinks stored images, and every failure becomes a skipped record;
  * collects skipped records (`_skip(id, line, file, reason, detail)`), and once the records are
    written, lists them in `skipped.csv` beside the array_record files and records in the dataset
    info metadata the counts by reason (`skipped`), `num_skipped`, `skipped_report`,
    `resize_shorter`, the builder's `_stats` and its `_metadata()`.

Subclasses call `_reset()` at the start of `_split_generators` and may override `_report_order`
(the sort key of the report's rows) and `_metadata()`.
"""

from __future__ import annotations

import collections
import csv
import os
import sys
from typing import Sequence

import tensorflow_datasets as tfds

from aesthetics_jax import logging_setup
from aesthetics_jax.data import image_io

__all__ = ["CheckedBuilder", "SKIPPED_REPORT", "inspect_cache_dir", "skipped_report"]

SKIPPED_REPORT = "skipped.csv"
_REPORT_FIELDS = ("id", "line", "file", "reason", "detail")


def inspect_cache_dir(data_dir_root, name: str) -> str:
    """Where a builder named `name` caches its image checks (shared by its configs)."""
    return os.path.join(os.fspath(data_dir_root), name, "_inspect_cache")


def skipped_report(builder: tfds.core.DatasetBuilder) -> list[dict]:
    """The skipped records of a prepared build: dicts with id, line (int), file, reason, detail."""
    path = os.path.join(os.fspath(builder.data_dir), SKIPPED_REPORT)
    with open(path, newline="") as f:
        return [dict(record, line=int(record["line"])) for record in csv.DictReader(f)]


class CheckedBuilder(tfds.core.GeneratorBasedBuilder):
    """A TFDS builder whose images are checked and whose skipped records are reported."""

    def __init__(self, **kwargs):
        # TFRecord output needs TensorFlow; array_record gives random access without it.
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)
        self.inspect_progress: str | None = None  # a label: print image-check progress to stderr
        self._reset()

    def _reset(self) -> None:
        self._skipped: list[dict] = []
        self._stats: dict = {"reencoded": {}}

    def _skip(self, image_id, line: int, file: str, reason: str, detail: str = "") -> None:
        self._skipped.append(dict(id=str(image_id), line=line, file=file, reason=reason, detail=detail))

    def _check_images(self, entries: Sequence[tuple], progress: str | None = None) -> list[image_io.Inspection | None]:
        """Checks `entries` = (id, line, file, path) images; the inspection of each, None if skipped."""
        inspections = image_io.inspect_files(
            [path for *_, path in entries], resize_shorter=getattr(self.builder_config, "resize_shorter", 0) or None,
            cache_dir=inspect_cache_dir(self._data_dir_root, self.name),
            progress=self.inspect_progress if progress is None else progress)
        reencoded = self._stats["reencoded"]
        out: list[image_io.Inspection | None] = []
        for (image_id, line, file, _), inspection in zip(entries, inspections):
            if not inspection.ok:
                self._skip(image_id, line, file, inspection.reason, inspection.detail)
                out.append(None)
                continue
            if inspection.action != "keep":
                why = inspection.action.split(":", 1)[1]
                reencoded[why] = reencoded.get(why, 0) + 1
            out.append(inspection)
        return out

    def _carry_parent_skips(self, parent_dir: str) -> None:
        """Lists the image skips of the build in `parent_dir` (its skipped.csv) as this build's own,
        detail prefixed 'parent build: ' (builders derived from another build: eva_patches, modality)."""
        path = os.path.join(parent_dir, SKIPPED_REPORT)
        if os.path.isfile(path):
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    if row["reason"] in image_io.SKIP_REASONS:
                        self._skip(row["id"], int(row["line"]), row["file"], row["reason"],
                                   f"parent build: {row['detail']}")
        self._stats["num_parent_skipped"] = len(self._skipped)

    def _report_order(self, record: dict):
        return record["file"], record["line"]

    def _metadata(self) -> dict:
        return {}

    def _log_download_bytes(self) -> None:  # TFDS prints a bold "Downloading and preparing" line
        print(f"[data] building {self.name}/{self.builder_config.name} into {self.data_dir} ...", file=sys.stderr,
              flush=True)

    def _log_download_done(self) -> None:
        print(f"[data] built {self.name}/{self.builder_config.name}: {self.data_dir}", file=sys.stderr, flush=True)

    def _download_and_prepare(self, dl_manager, download_config=None):
        tfds.display_progress_bar(logging_setup.tfds_progress_bars())  # tqdm bars only when verbose
        super()._download_and_prepare(dl_manager, download_config)
        # self.data_dir is still the temporary build directory here, so the report moves with the
        # dataset when TFDS renames it.
        with open(os.path.join(os.fspath(self.data_dir), SKIPPED_REPORT), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=_REPORT_FIELDS)
            writer.writeheader()
            writer.writerows(sorted(self._skipped, key=self._report_order))
        self.info.metadata.update(
            skipped=dict(collections.Counter(r["reason"] for r in self._skipped)), num_skipped=len(self._skipped),
            skipped_report=SKIPPED_REPORT, resize_shorter=int(getattr(self.builder_config, "resize_shorter", 0)),
            **self._metadata(), **self._stats)
