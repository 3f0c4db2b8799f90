"""Embedded demo dataset in EVA's exact on-disk format: the demo photographs with six rated attributes.

`build_demo_eva(out_dir)` renders versions of the same real photographs as the AVA-format demo
(`demo.py`: crops, the six degradations and their severities, drawn the same way) and writes what
the EVA builder reads from the real EVA repository (see /work/shared/DATA_FORMATS.md)::

    out_dir/
      data/votes_filtered.csv            `=`-delimited, header image_id=user_id=score=difficulty=visual=
                                         composition=quality=semantic=vote_time=1=2=3=4, one row per
                                         (image, rater)
      data/image_content_category.csv    "image_id","sort" (category 1..6, quoted, as EVA's file)
      data/demo_split.csv                id,split: the EVA builder's `split_file` (see Split)
      images/EVA_together/<id>.jpg       JPEG (greyscale photos stay 1-channel JPEGs)
      demo_manifest.csv                  how every image was made: the AVA demo's columns plus the
                                         latent attributes (latent_<name>) and penalty_tone /
                                         penalty_technical
      .demo_complete.json                completion marker (parameters + summary)

Images
    A version is a random off-centre crop of a base photo resized with INTER_AREA so its longer
    side is `image_size` (default 288 px: larger than the models' 128 px input, so a full image is
    downscaled for the full-image model while a 128 px saliency patch keeps native pixels -- the
    situation of EVA's ~800 px photos and 299 px patches), followed by 0-3 of the AVA demo's
    degradations (haze, blur, exposure, cast, noise, jpeg; blur sigma scales with image_size).

Attribute model (the "ground truth" each rater responds to)
    Per-degradation costs p_i = w_i s_i (the AVA demo's weights: haze 1.5, blur 4.5, exposure 2.0,
    cast 1.0, noise 4.0, jpeg 4.0), combined sub-additively (P = 5.5 (1 - prod (1 - p_i / 5.5)))
    over all kinds (P), over the tone kinds haze / exposure / cast (P_tone) and over the technical
    kinds blur / noise / jpeg (P_tech). With b = the base photo's offset ~ N(0, 0.25) clipped to
    +/-0.5 (content appeal), e ~ N(0, 0.15) per version ("composition luck") and a = the crop's share
    of the largest crop of its aspect (35-100 %), the latent attributes are

        score        q = 7.3 + b + e - P                                   (EVA scale 0..10)
        visual       3.5 + 0.5 b - 0.55 P_tone                             (light & colour, 1..4)
        composition  2.7 + 2 e + 0.8 (a - 0.675) - 0.1 p_blur              (1..4; depth of field counts)
        quality      3.5 - 0.45 P_tech                                     (technical quality, 1..4)
        semantic     2.8 + 1.5 b + N(0, 0.1)                                (content, 1..4)
        difficulty   1.9 + 0.4 |q - 5.3|                                   (1 very difficult .. 4 very
                                                                            easy: extremes are easy)

    Each version gets N ~ U{20..40} raters (distinct users of a pool of 400, as EVA's ~30 per image);
    a rater's vote is round(latent + noise) clipped to the attribute's range, with noise sd
    r ~ U[1.2, 1.5] (per version) for the score and 0.6 for the 1..4 attributes. Factor flags
    (which aspect mattered most): flag 1 (light & colour) with probability 0.15 + 0.7 P_tone / (P_tone +
    P_tech + 0.5), flag 3 (quality) 0.15 + 0.7 P_tech / (P_tone + P_tech + 0.5), flag 2 (composition &
    depth) 0.25, flag 4 (semantic) 0.3, independently; vote_time ~ U{5..120} s.

Categories
    EVA's six content categories per base photo (`CATEGORY`): animals (chelsea), architectures and
    city scenes (brick, china), human (astronaut, camera, grace_hopper), natural and rural scenes
    (flower, grass, gravel, moon), still life (coffee, coins, motorcycle_left/right), other (page,
    rocket, text).

Split
    The test set holds out whole base photos, exactly as the AVA demo's (`demo.split_groups`:
    stratified by colour, 25 % of the groups, seeded), so the held-out metrics measure
    generalisation to photographs never seen in training; of the remaining images a seeded 10 %
    (`val_fraction`) is the validation split (seen photos: checkpoint selection only). Written to
    `data/demo_split.csv` for the EVA builder's `split_file`.

Everything is a function of `seed` (per-version generators are seeded with (seed, photo, version,
0xE7A)), so two builds with the same arguments write byte-identical files.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time

import numpy as np

from aesthetics_jax.data.builders import demo

__all__ = ["build_demo_eva", "CATEGORY", "SPLIT_FILE"]

_FORMAT_VERSION = 1
_MANIFEST = "demo_manifest.csv"
SPLIT_FILE = "data/demo_split.csv"
_VOTES = "data/votes_filtered.csv"
_CATEGORIES = "data/image_content_category.csv"
_IMAGES = "images/EVA_together"
_HEADER = ("image_id", "user_id", "score", "difficulty", "visual", "composition", "quality", "semantic",
           "vote_time", "1", "2", "3", "4")

_TONE = ("haze", "exposure", "cast")
_TECHNICAL = ("blur", "noise", "jpeg")
_RATERS_RANGE = (20, 40)
_USER_POOL = 400
_SCORE_SD_RANGE = (1.2, 1.5)
_ATTRIBUTE_SD = 0.6

# EVA content category (eva.CATEGORY_NAMES) of each base photo.
CATEGORY = {
    "chelsea": 1, "brick": 2, "china": 2, "astronaut": 3, "camera": 3, "grace_hopper": 3, "flower": 4,
    "grass": 4, "gravel": 4, "moon": 4, "coffee": 5, "coins": 5, "motorcycle_left": 5, "motorcycle_right": 5,
    "page": 6, "rocket": 6, "text": 6,
}


def _latents(severities: dict, base_offset: float, luck: float, area_share: float, rng: np.random.Generator):
    """The six latent attributes (module docstring) and the three combined penalties."""
    costs = {kind: demo.WEIGHTS[kind] * s for kind, s in severities.items()}
    total = demo.combined_penalty(costs.values())
    tone = demo.combined_penalty([c for k, c in costs.items() if k in _TONE])
    technical = demo.combined_penalty([c for k, c in costs.items() if k in _TECHNICAL])
    q = 7.3 + base_offset + luck - total
    latents = dict(
        score=q,
        difficulty=1.9 + 0.4 * abs(q - 5.3),
        visual=3.5 + 0.5 * base_offset - 0.55 * tone,
        composition=2.7 + 2.0 * luck + 0.8 * (area_share - 0.675) - 0.1 * costs.get("blur", 0.0),
        quality=3.5 - 0.45 * technical,
        semantic=2.8 + 1.5 * base_offset + float(rng.normal(0.0, 0.1)),
    )
    return latents, dict(penalty=total, penalty_tone=tone, penalty_technical=technical)


def _rate(latents: dict, penalties: dict, rng: np.random.Generator):
    """Vote rows (user, six values, vote_time, four flags) of one image."""
    n = int(rng.integers(_RATERS_RANGE[0], _RATERS_RANGE[1] + 1))
    users = np.sort(rng.choice(_USER_POOL, size=n, replace=False))
    score_sd = float(rng.uniform(*_SCORE_SD_RANGE))
    columns = [np.clip(np.rint(latents["score"] + score_sd * rng.standard_normal(n)), 0, 10)]
    for name in ("difficulty", "visual", "composition", "quality", "semantic"):
        columns.append(np.clip(np.rint(latents[name] + _ATTRIBUTE_SD * rng.standard_normal(n)), 1, 4))
    share = penalties["penalty_tone"] + penalties["penalty_technical"] + 0.5
    flag_p = np.array([0.15 + 0.7 * penalties["penalty_tone"] / share, 0.25,
                       0.15 + 0.7 * penalties["penalty_technical"] / share, 0.3])
    flags = (rng.random((n, 4)) < flag_p).astype(np.int64)
    times = rng.integers(5, 121, size=n)
    values = np.stack(columns, axis=1).astype(np.int64)
    return [(f"u{u:03d}", values[k], int(times[k]), flags[k]) for k, u in enumerate(users.tolist())], score_sd


def build_demo_eva(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    versions_per_photo: int = 100,
    image_size: int = 288,
    test_fraction: float = 0.25,
    val_fraction: float = 0.1,
    first_id: int = 200000,
    overwrite: bool = False,
) -> dict:
    """Writes the EVA-format demo dataset to `out_dir` (the EVA builder's manual_dir); returns a summary.

    Idempotent like `demo.build_demo_ava`: a completed build with the same parameters is returned
    untouched, one with other parameters raises FileExistsError, an incomplete one is replaced,
    `overwrite=True` always rebuilds. Build it with
    `eva.build_eva(out_dir, data_dir, split_file=SPLIT_FILE)`.

    Args:
      out_dir: dataset root.
      seed: everything (crops, degradations, votes, split) is a function of it.
      versions_per_photo: rendered versions per base photo (17 photos x 100 = 1700 images).
      image_size: longer side of the stored JPEGs in pixels.
      test_fraction: fraction of base-photo groups held out as the test split.
      val_fraction: fraction of the other images in the validation split.
      first_id: image ids are first_id, first_id + 1, ... (photo-major order).
      overwrite: rebuild whatever `out_dir` holds.
    """
    out_dir = os.fspath(out_dir)
    photos = demo.available_base_photos()
    params = dict(format_version=_FORMAT_VERSION, seed=int(seed), versions_per_photo=int(versions_per_photo),
                  image_size=int(image_size), test_fraction=float(test_fraction), val_fraction=float(val_fraction),
                  first_id=int(first_id), base_photos=[p.name for p in photos])
    marker = demo.read_marker(out_dir)
    if marker is not None and not overwrite:
        if marker.get("params") == params:
            return marker
        raise FileExistsError(f"{out_dir} holds a demo EVA build with parameters {marker.get('params')}; "
                              "pass overwrite=True to replace it")
    if versions_per_photo < 1 or image_size < 16 or not 0.0 < test_fraction < 1.0 or not 0.0 <= val_fraction < 1.0:
        raise ValueError("need versions_per_photo >= 1, image_size >= 16, 0 < test_fraction < 1, "
                         "0 <= val_fraction < 1")
    missing = sorted(p.name for p in photos if p.name not in CATEGORY)
    if missing:
        raise ValueError(f"no EVA category for demo photo(s) {missing}")

    start = time.perf_counter()
    for name in ("images", "data"):
        shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)
    for name in (demo.MARKER, _MANIFEST):
        if os.path.exists(os.path.join(out_dir, name)):
            os.remove(os.path.join(out_dir, name))
    os.makedirs(os.path.join(out_dir, _IMAGES))
    os.makedirs(os.path.join(out_dir, "data"), exist_ok=True)

    pixels_of = {photo.name: demo.load_photo(photo) for photo in photos}
    test_groups = demo.split_groups(photos, {n: a.ndim == 2 for n, a in pixels_of.items()}, seed, test_fraction)
    offset_rng = np.random.default_rng([seed, 0x0FF5E7])  # the AVA demo's per-photo offsets
    offsets = np.clip(offset_rng.normal(0.0, 0.25, len(photos)), -0.5, 0.5)

    vote_lines, manifest, split_of = [], [], {}
    image_id = first_id
    for photo_index, photo in enumerate(photos):
        pixels = pixels_of[photo.name]
        for version in range(versions_per_photo):
            rng = np.random.default_rng([seed, photo_index, version, 0xE7A])
            image, crop = demo.crop_and_resize(pixels, rng, image_size)
            kinds, severities = demo.draw_degradations(rng)
            jpeg, degradation, channels = demo.degrade(image, kinds, severities, rng)
            largest = min(pixels.shape[0], pixels.shape[1] * crop["crop_h"] / crop["crop_w"]) * \
                min(pixels.shape[1], pixels.shape[0] * crop["crop_w"] / crop["crop_h"])
            area_share = min(1.0, crop["crop_w"] * crop["crop_h"] / largest)
            luck = float(rng.normal(0.0, 0.15))
            latents, penalties = _latents(severities, float(offsets[photo_index]), luck, area_share, rng)
            votes, score_sd = _rate(latents, penalties, rng)
            with open(os.path.join(out_dir, _IMAGES, f"{image_id}.jpg"), "wb") as f:
                f.write(jpeg)
            for user, values, vote_time, flags in votes:
                vote_lines.append("=".join([str(image_id), user, *map(str, values.tolist()), str(vote_time),
                                            *map(str, flags.tolist())]) + "\n")
            split_of[image_id] = "test" if photo.group in test_groups else "train"
            row = dict(id=image_id, split="", base_photo=photo.name, base_group=photo.group,
                       category=CATEGORY[photo.name], base_offset=round(float(offsets[photo_index]), 4), **crop,
                       area_share=round(area_share, 4), channels=channels, degradations="+".join(kinds))
            row.update({f"sev_{k}": round(severities.get(k, 0.0), 4) for k in demo.DEGRADATIONS})
            row.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in degradation.items()})
            row.update({k: round(v, 4) for k, v in penalties.items()}, composition_luck=round(luck, 4))
            row.update({f"latent_{k}": round(v, 4) for k, v in latents.items()})
            row.update(num_raters=len(votes), score_sd=round(score_sd, 4),
                       mean_score=round(float(np.mean([v[1][0] for v in votes])), 4))
            manifest.append(row)
            image_id += 1

    train_ids = [i for i, s in split_of.items() if s == "train"]
    n_val = int(round(val_fraction * len(train_ids)))
    for i in np.random.default_rng([seed, 0x7A1]).permutation(train_ids)[:n_val].tolist():
        split_of[i] = "validation"
    for row in manifest:
        row["split"] = split_of[row["id"]]

    with open(os.path.join(out_dir, _VOTES), "w") as f:
        f.write("=".join(_HEADER) + "\n")
        f.writelines(vote_lines)
    with open(os.path.join(out_dir, _CATEGORIES), "w") as f:
        f.write('"image_id","sort"\n')
        f.writelines(f'"{row["id"]}","{row["category"]}"\n' for row in manifest)
    with open(os.path.join(out_dir, SPLIT_FILE), "w") as f:
        f.write("id,split\n")
        f.writelines(f"{i},{s}\n" for i, s in sorted(split_of.items()))
    with open(os.path.join(out_dir, _MANIFEST), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(manifest[0]))
        writer.writeheader()
        writer.writerows(manifest)

    counts = {s: sum(v == s for v in split_of.values()) for s in ("train", "validation", "test")}
    means = np.array([row["mean_score"] for row in manifest])
    summary = dict(
        out_dir=out_dir, params=params, num_images=len(manifest), num_votes=len(vote_lines),
        split_counts=counts, base_photos=[p.name for p in photos],
        test_photos=[p.name for p in photos if p.group in test_groups],
        mean_score_range=[float(means.min()), float(means.max())],
        build_seconds=round(time.perf_counter() - start, 2), split_file=SPLIT_FILE,
        votes=os.path.join(out_dir, _VOTES), manifest=os.path.join(out_dir, _MANIFEST),
    )
    with open(os.path.join(out_dir, demo.MARKER), "w") as f:  # written last: marks the build complete
        json.dump(summary, f, indent=1)
    return summary
