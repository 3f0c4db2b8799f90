"""Embedded demo dataset: real photographs, rendered in AVA's exact on-disk format.

`build_demo_ava(out_dir)` writes a small dataset that every loader in this project reads exactly as
it reads the real AVA (see /work/shared/DATA_FORMATS.md):

    out_dir/
      AVA.txt                                 15 columns: row  id  n1..n10  tag1  tag2  challenge
      tags.txt                                `id name`
      challenges.txt                          `id name`
      images/<id>.jpg                         JPEG (greyscale photos stay 1-channel JPEGs)
      aesthetics_image_lists/generic_test.jpgl  one test image id per line
      demo_manifest.csv                       how every image was made (see below)
      .demo_complete.json                     completion marker (parameters + summary)

Base photographs
    Real photographs shipped inside installed wheels, read from the files directly (no network, no
    pooch download): scikit-image's `skimage/data/` photos (astronaut, brick, camera, chelsea,
    coffee, coins, grass, gravel, moon, motorcycle_left/right, page, rocket, text), scikit-learn's
    `datasets/images/{china,flower}.jpg` and matplotlib's `sample_data/grace_hopper.jpg` (all three
    packages are core dependencies, so every install renders the same 17 photos). Not used: synthetic patterns (chessboard, color, logo, phantom,
    horse silhouette), photos that are already degraded (clock_motion is motion-blurred, cell is a
    defocused micrograph), and scientific imagery that is not photography (retina: a fundus
    image on black; ihc: a microscopy slide; hubble_deep_field: astronomy) — a first demo run held
    retina out and the model read its black surround as under-exposure (held-out SRCC −0.09 on it).
    motorcycle_left/right are a stereo pair, so they form one *group*; the train/test split is made
    by group, never by image.

Versions
    Each base photo is rendered `versions_per_photo` times. A version is a random off-centre crop
    (aspect ratio from {4:3, 3:2, 1:1, 3:4, 2:3}, 35-100 % of the largest crop of that aspect, random
    offset; never so tight that it must be up-sampled) resized with INTER_AREA so its longer side is
    `image_size` (default 128 px), followed by 0-3 degradations (P = .20/.35/.30/.15), each drawn
    without replacement from six types with a severity s ~ U[0.1, 1]. They are applied in this
    fixed order (parameters scale with s):

        haze      x <- (1-a) x + a L,  a = 0.15 + 0.60 s, veil level L ~ U[150, 215]  (contrast loss)
        blur      Gaussian, sigma = (0.4 + 2.6 s) image_size / 192 px (0.27 + 1.73 s at 128 px)
        exposure  linear-light gain 2^ev, |ev| = 0.4 + 1.8 s stops, sign +/- with p = 1/2 (clips)
        cast      per-channel gains 1 + c d, c = 0.08 + 0.32 s, d a unit chroma direction at a
                  random hue angle (white-balance error; turns a greyscale photo into a tinted one)
        noise     additive Gaussian, sd = 4 + 32 s (0..255 scale), independent per channel
        jpeg      stored at quality Q = round(5 + 40 (1-s)^1.5) instead of the clean quality 95

Quality model (the "ground truth" raters respond to)
    Each degradation costs p_i = w_i s_i score points, with w = haze 1.5, blur 4.5, exposure 2.0,
    cast 1.0, noise 4.0, jpeg 4.0. Local artefacts (blur, noise, JPEG blocking) cost more than
    global tone changes (haze, exposure, colour cast): a tone change is confounded with content
    (a night sky or a fundus photo *is* dark), so weighting it heavily would make the demo's
    label unlearnable across unseen photographs rather than merely noisy. Costs combine sub-additively (a photo cannot get worse than
    terrible): P = P_max (1 - prod_i (1 - p_i / P_max)), P_max = 5.5. The latent quality is

        q = 7.3 + base_offset(photo) + e - P,    base_offset ~ N(0, 0.25) clipped to +/-0.5 per photo,
                                                  e ~ N(0, 0.15) per version ("composition luck")

    so the base photo explains little and the visible degradations explain most of the score.
    Every version gets N ~ U{100..300} votes; each vote is round(q + r z), z ~ N(0, 1), clipped to
    1..10, with a rater spread r ~ U[1.2, 1.5] per version. The histogram of those votes is the AVA
    row; mean scores (sum_i i p_i) span about 2-8 (quartiles ~3.9 / 5.0 / 6.6).

Learnability (measured on the 2-core CPU box, seed 0, default arguments: 2000 images)
    The score must be learnable from pixels across unseen photos. A from-scratch 5-layer CNN probe
    (3x3 convs 24-48-64-96-128, full-resolution first layer, batch-norm, mean+std pooling, Adam
    2e-3 cosine, batch 32, resize 128 -> random crop 112 + flip, MSE on the mean score) reaches
    held-out (unseen base photos) SRCC 0.66-0.71 between 800 and 1,400 steps; with a stride-2 first
    layer it reaches 0.63 at 800 and 0.66 at 1,600 steps. Variants that measured worse: storing at
    192 px and resizing to 128 (noise and JPEG blocking are averaged away; stride-2 probe 0.61 at
    800, 0.64 at 2,400 steps), an SSIM-weighted "visible damage" penalty and a content-detail
    ("interest") term (0.58 / 0.54 at 800), zoomier crops (12 % area) with stronger exposure, cast
    and JPEG settings (full-resolution probe 0.64 at 1,600). Single runs, so differences of a few
    hundredths are noise. Store at the training scale (image_size == the pipeline's resize_size).

Split
    Stratified by colour: a seeded permutation of the colour groups and one of the greyscale groups
    each put round(test_fraction * n) of them (default 25 %, at least one per stratum) in
    `generic_test.jpgl`; all versions of the other groups are the training set. (Half of the photos
    are greyscale; an unstratified draw once held out only colour photos, so the model was tested on
    colour content after training mostly on greyscale.)

demo_manifest.csv columns
    id, split, base_photo, base_group, base_file, base_offset, crop_x, crop_y, crop_w, crop_h,
    width, height, channels, degradations ('+'-joined, '' = clean), sev_<type> (0 = not applied)
    for every type, haze_amount, haze_level, blur_sigma, exposure_ev, cast_strength,
    cast_angle_deg, noise_sd, jpeg_quality, penalty_<type> (0 = not applied), penalty (combined),
    composition, latent_quality, rater_sd, votes, mean_score, tag1, tag2, challenge.

Everything is a function of `seed` (per-version generators are seeded with (seed, photo, version)),
so two builds with the same arguments write byte-identical files.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import math
import os
import shutil
import time
from typing import Sequence

import cv2
import numpy as np

__all__ = ["BasePhoto", "BASE_PHOTOS", "DEGRADATIONS", "WEIGHTS", "available_base_photos", "build_demo_ava", "combined_penalty",
           "crop_and_resize", "degrade", "draw_degradations", "load_photo", "read_marker", "split_groups", "MARKER"]

_FORMAT_VERSION = 5
MARKER = ".demo_complete.json"
_MANIFEST = "demo_manifest.csv"
_CLEAN_JPEG_QUALITY = 95
_REFERENCE_SIZE = 192  # the blur sigma is defined at this longer side and scales with image_size

# Quality model constants (documented in the module docstring).
_BASE_QUALITY = 7.3
_BASE_OFFSET_SD, _BASE_OFFSET_MAX = 0.25, 0.5
_COMPOSITION_SD = 0.15
_MAX_PENALTY = 5.5
_NUM_DEGRADATIONS_P = (0.20, 0.35, 0.30, 0.15)  # P(0), P(1), P(2), P(3) degradations
_SEVERITY_RANGE = (0.1, 1.0)
_VOTES_RANGE = (100, 300)
_RATER_SD_RANGE = (1.2, 1.5)
_CROP_ASPECTS = (4 / 3, 3 / 2, 1.0, 3 / 4, 2 / 3)
_CROP_AREA_RANGE = (0.35, 1.0)

# Application order and full cost (points on the 1..10 scale).
DEGRADATIONS = ("haze", "blur", "exposure", "cast", "noise", "jpeg")
WEIGHTS = {"haze": 1.5, "blur": 4.5, "exposure": 2.0, "cast": 1.0, "noise": 4.0, "jpeg": 4.0}

# Small tag / challenge tables in AVA's `id name` format (names follow AVA's vocabulary).
_TAGS = (
    "Abstract", "Animals", "Architecture", "Black and White", "Candid", "Floral", "Food and Drink",
    "Macro", "Nature", "Portraiture", "Science and Technology", "Sky", "Still Life",
    "Transportation", "Travel", "Texture", "Astrophotography", "Vintage",
)
_CHALLENGES = (
    "Free Study", "Portraits", "Textures", "Still Life", "Night Sky", "Science", "Pets",
    "Flowers", "Travel", "Black and White", "Machines",
)
_TAG_ID = {name: i + 1 for i, name in enumerate(_TAGS)}
_CHALLENGE_ID = {name: i + 1 for i, name in enumerate(_CHALLENGES)}


@dataclasses.dataclass(frozen=True)
class BasePhoto:
    """A photograph shipped in an installed package (read from the file, never downloaded)."""

    name: str
    package: str  # top-level package whose install directory holds the file
    relpath: str  # path inside that package
    group: str  # photos of one scene share a group; the split never separates a group
    tags: tuple[str, ...]  # plausible AVA semantic tags (first = primary)
    challenges: tuple[str, ...]  # plausible challenges it could have been entered in

    def path(self) -> str | None:
        """Absolute path of the installed file, or None if the package or file is absent."""
        spec = importlib.util.find_spec(self.package)  # locates without importing the package
        if spec is None or not spec.submodule_search_locations:
            return None
        path = os.path.join(list(spec.submodule_search_locations)[0], self.relpath)
        return path if os.path.isfile(path) else None


def _sk(name, file, tags, challenges, group=None):
    return BasePhoto(name, "skimage", f"data/{file}", group or name, tags, challenges)


BASE_PHOTOS: tuple[BasePhoto, ...] = (
    _sk("astronaut", "astronaut.png", ("Portraiture", "Science and Technology"), ("Portraits", "Science")),
    _sk("brick", "brick.png", ("Texture", "Architecture"), ("Textures", "Black and White")),
    _sk("camera", "camera.png", ("Black and White", "Candid"), ("Black and White", "Free Study")),
    _sk("chelsea", "chelsea.png", ("Animals", "Candid"), ("Pets", "Free Study")),
    _sk("coffee", "coffee.png", ("Food and Drink", "Still Life"), ("Still Life", "Free Study")),
    _sk("coins", "coins.png", ("Still Life", "Macro"), ("Still Life", "Black and White")),
    _sk("grass", "grass.png", ("Nature", "Texture"), ("Textures", "Black and White")),
    _sk("gravel", "gravel.png", ("Texture", "Abstract"), ("Textures", "Free Study")),
    _sk("moon", "moon.png", ("Astrophotography", "Black and White"), ("Night Sky", "Black and White")),
    _sk("motorcycle_left", "motorcycle_left.png", ("Transportation", "Still Life"), ("Machines", "Still Life"), "motorcycle"),
    _sk("motorcycle_right", "motorcycle_right.png", ("Transportation", "Still Life"), ("Machines", "Still Life"), "motorcycle"),
    _sk("page", "page.png", ("Black and White", "Vintage"), ("Black and White", "Free Study")),
    _sk("rocket", "rocket.jpg", ("Science and Technology", "Transportation"), ("Machines", "Science")),
    _sk("text", "text.png", ("Black and White", "Abstract"), ("Black and White", "Free Study")),
    BasePhoto("china", "sklearn", "datasets/images/china.jpg", "china", ("Architecture", "Travel"), ("Travel", "Free Study")),
    BasePhoto("flower", "sklearn", "datasets/images/flower.jpg", "flower", ("Floral", "Nature", "Macro"), ("Flowers", "Free Study")),
    BasePhoto("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "grace_hopper", ("Portraiture", "Vintage"), ("Portraits", "Free Study")),
)


def available_base_photos() -> list[BasePhoto]:
    """The base photos; FileNotFoundError naming the package if any file is missing."""
    missing = [f"{p.name} ({p.package}: {p.relpath})" for p in BASE_PHOTOS if p.path() is None]
    if missing:
        raise FileNotFoundError(f"demo photos not found in the installed packages: {', '.join(missing)}; "
                                "install the core dependencies (pip install -e .)")
    return list(BASE_PHOTOS)


def load_photo(photo: BasePhoto) -> np.ndarray:
    """uint8 HxW (greyscale) or HxWx3 (BGR, the channel order cv2 encodes) array of a base photo.

    Read with Pillow (a scikit-image dependency), which decodes the wheels' PNGs without libpng's
    iCCP warnings.
    """
    from PIL import Image  # pylint: disable=g-import-not-at-top

    with Image.open(photo.path()) as image:
        greyscale = image.mode in ("1", "L", "LA", "I", "I;16")
        array = np.asarray(image.convert("L" if greyscale else "RGB"))
    return np.ascontiguousarray(array if greyscale else array[..., ::-1])


# ---------------------------------------------------------------------------------------------------
# Rendering one version.


def crop_and_resize(photo: np.ndarray, rng: np.random.Generator, image_size: int):
    height, width = photo.shape[:2]
    aspect = _CROP_ASPECTS[rng.integers(len(_CROP_ASPECTS))]  # width / height
    max_h = min(height, width / aspect)
    max_w = max_h * aspect
    # Do not crop so tightly that the crop must be up-sampled to reach image_size.
    min_area = max(_CROP_AREA_RANGE[0], min(1.0, (image_size / max(max_w, max_h)) ** 2))
    area = rng.uniform(min_area, _CROP_AREA_RANGE[1])
    crop_w = max(8, int(round(max_w * math.sqrt(area))))
    crop_h = max(8, int(round(max_h * math.sqrt(area))))
    crop_x = int(rng.integers(0, width - crop_w + 1))
    crop_y = int(rng.integers(0, height - crop_h + 1))
    crop = photo[crop_y : crop_y + crop_h, crop_x : crop_x + crop_w]
    scale = min(1.0, image_size / max(crop_w, crop_h))
    out_w, out_h = max(8, int(round(crop_w * scale))), max(8, int(round(crop_h * scale)))
    image = cv2.resize(crop, (out_w, out_h), interpolation=cv2.INTER_AREA)
    return image, dict(crop_x=crop_x, crop_y=crop_y, crop_w=crop_w, crop_h=crop_h, width=out_w, height=out_h)


def _chroma_gains(angle: float) -> np.ndarray:
    """Unit chroma direction (zero mean over B, G, R) at hue `angle` radians, in BGR order."""
    red_axis = np.array([-0.5, -0.5, 1.0]) / math.sqrt(1.5)  # red vs cyan
    green_axis = np.array([-1.0, 1.0, 0.0]) / math.sqrt(2.0)  # green vs magenta
    return math.cos(angle) * red_axis + math.sin(angle) * green_axis


def degrade(image: np.ndarray, kinds: Sequence[str], severities: dict, rng: np.random.Generator):
    """Applies `kinds` in DEGRADATIONS order and JPEG-encodes the result: (bytes, params, channels)."""
    x = image.astype(np.float32)
    params = dict(haze_amount=0.0, haze_level=0.0, blur_sigma=0.0, exposure_ev=0.0, cast_strength=0.0,
                  cast_angle_deg=0.0, noise_sd=0.0, jpeg_quality=_CLEAN_JPEG_QUALITY)
    px_scale = max(image.shape[:2]) / _REFERENCE_SIZE
    for kind in DEGRADATIONS:
        if kind not in kinds:
            continue
        s = severities[kind]
        if kind == "haze":
            a, level = 0.15 + 0.60 * s, float(rng.uniform(150.0, 215.0))
            x = (1.0 - a) * x + a * level
            params.update(haze_amount=a, haze_level=level)
        elif kind == "blur":
            sigma = (0.4 + 2.6 * s) * px_scale
            x = cv2.GaussianBlur(x, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
            params.update(blur_sigma=sigma)
        elif kind == "exposure":
            ev = (0.4 + 1.8 * s) * (1.0 if rng.random() < 0.5 else -1.0)
            linear = np.power(np.clip(x, 0.0, 255.0) / 255.0, 2.2) * (2.0**ev)
            x = 255.0 * np.power(np.clip(linear, 0.0, 1.0), 1.0 / 2.2)
            params.update(exposure_ev=ev)
        elif kind == "cast":
            c, angle = 0.08 + 0.32 * s, float(rng.uniform(0.0, 2.0 * math.pi))
            if x.ndim == 2:
                x = np.repeat(x[..., None], 3, axis=2)
            x = x * (1.0 + c * _chroma_gains(angle)).astype(np.float32)
            params.update(cast_strength=c, cast_angle_deg=math.degrees(angle))
        elif kind == "noise":
            sd = 4.0 + 32.0 * s
            x = x + rng.normal(0.0, sd, size=x.shape).astype(np.float32)
            params.update(noise_sd=sd)
        elif kind == "jpeg":
            params.update(jpeg_quality=int(round(5 + 40 * (1.0 - s) ** 1.5)))
    pixels = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, params["jpeg_quality"]])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return jpeg.tobytes(), params, 1 if pixels.ndim == 2 else 3


def draw_degradations(rng: np.random.Generator) -> tuple[list[str], dict[str, float]]:
    """0-3 degradation kinds (in DEGRADATIONS order) and their severities, as the docstring draws them."""
    k = int(rng.choice(len(_NUM_DEGRADATIONS_P), p=_NUM_DEGRADATIONS_P))
    kinds = [DEGRADATIONS[i] for i in sorted(rng.choice(len(DEGRADATIONS), size=k, replace=False))]
    return kinds, {kind: float(rng.uniform(*_SEVERITY_RANGE)) for kind in kinds}


def combined_penalty(penalties) -> float:
    """Sub-additive combination P = P_max (1 - prod (1 - p_i / P_max)) of per-degradation costs."""
    return _MAX_PENALTY * (1.0 - float(np.prod([1.0 - p / _MAX_PENALTY for p in penalties])))


def _votes(q: float, rng: np.random.Generator):
    n = int(rng.integers(_VOTES_RANGE[0], _VOTES_RANGE[1] + 1))
    rater_sd = float(rng.uniform(*_RATER_SD_RANGE))
    scores = np.clip(np.rint(q + rater_sd * rng.standard_normal(n)), 1, 10).astype(np.int64)
    return np.bincount(scores, minlength=11)[1:], rater_sd


def _render_version(photo_pixels, photo: BasePhoto, base_offset: float, seed: int, photo_index: int,
                    version: int, image_size: int):
    """One demo image: (jpeg bytes, histogram, manifest row without id/split)."""
    rng = np.random.default_rng([seed, photo_index, version])
    image, crop = crop_and_resize(photo_pixels, rng, image_size)
    kinds, severities = draw_degradations(rng)
    jpeg, params, channels = degrade(image, kinds, severities, rng)

    penalties = {kind: WEIGHTS[kind] * s for kind, s in severities.items()}
    penalty = combined_penalty(penalties.values())
    composition = float(rng.normal(0.0, _COMPOSITION_SD))
    q = _BASE_QUALITY + base_offset + composition - penalty
    histogram, rater_sd = _votes(q, rng)

    tags = [_TAG_ID[photo.tags[0]], 0]
    if len(photo.tags) > 1 and rng.random() < 0.6:
        tags[1] = _TAG_ID[photo.tags[1 + int(rng.integers(len(photo.tags) - 1))]]
    challenge = _CHALLENGE_ID[photo.challenges[int(rng.integers(len(photo.challenges)))]]

    row = dict(base_photo=photo.name, base_group=photo.group, base_file=f"{photo.package}/{photo.relpath}",
               base_offset=round(base_offset, 4), **crop, channels=channels, degradations="+".join(kinds))
    row.update({f"sev_{kind}": round(severities.get(kind, 0.0), 4) for kind in DEGRADATIONS})
    row.update({key: (round(v, 4) if isinstance(v, float) else v) for key, v in params.items()})
    row.update({f"penalty_{kind}": round(penalties.get(kind, 0.0), 4) for kind in DEGRADATIONS})
    row.update(penalty=round(penalty, 4), composition=round(composition, 4), latent_quality=round(q, 4),
               rater_sd=round(rater_sd, 4), votes=int(histogram.sum()),
               mean_score=round(float(np.dot(np.arange(1, 11), histogram) / histogram.sum()), 4),
               tag1=tags[0], tag2=tags[1], challenge=challenge)
    return jpeg, histogram, row


# ---------------------------------------------------------------------------------------------------
# The dataset.


def split_groups(photos: Sequence[BasePhoto], greyscale: dict[str, bool], seed: int, test_fraction: float) -> set[str]:
    """Test groups, stratified by colour: `test_fraction` of the colour groups and of the greyscale
    groups (at least one of each stratum that has two or more groups), by a seeded permutation."""
    groups = sorted({p.group for p in photos})
    grey_group = {g: all(greyscale[p.name] for p in photos if p.group == g) for g in groups}
    rng = np.random.default_rng([seed, 0x5EED])
    test: set[str] = set()
    for stratum in (False, True):
        members = [g for g in groups if grey_group[g] == stratum]
        if len(members) < 2:
            continue
        n_test = min(len(members) - 1, max(1, round(test_fraction * len(members))))
        test |= {members[i] for i in rng.permutation(len(members))[:n_test]}
    if not test or len(test) == len(groups):
        raise ValueError(f"cannot split {len(groups)} photo groups into train and test with fraction {test_fraction}")
    return test


def read_marker(out_dir: str):
    """The completion marker (parameters + summary) of a demo build in `out_dir`, or None."""
    try:
        with open(os.path.join(out_dir, MARKER)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def build_demo_ava(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    versions_per_photo: int = 100,
    image_size: int = 128,
    test_fraction: float = 0.25,
    first_id: int = 100000,
    first_version: int = 0,
    overwrite: bool = False,
) -> dict:
    """Writes the demo dataset in AVA's on-disk format to `out_dir` and returns a summary dict.

    Idempotent: if `out_dir` holds a completed build with the same parameters it returns that
    build's summary without touching anything. A completed build with *other* parameters raises
    FileExistsError; an incomplete build (no marker) is replaced; `overwrite=True` always rebuilds.

    Args:
      out_dir: dataset root (use it as the AVA `manual_dir`).
      seed: everything (crops, degradations, votes, split) is a function of it.
      versions_per_photo: rendered versions per base photo (20 photos x 100 = 2000 images).
      image_size: longer side of the stored JPEGs in pixels; train with the pipeline's
        resize_size equal to it so the degradations reach the network unresampled.
      test_fraction: fraction of base-photo groups listed in generic_test.jpgl.
      first_id: image ids are first_id, first_id + 1, ... (photo-major order).
      first_version: render versions first_version .. first_version + versions_per_photo - 1 of
        every photo: the same photos, split and per-photo offsets, fresh crops, degradations and
        votes (version v of a photo is the same image in every build with this seed). A second
        build with first_version=versions_per_photo is a disjoint sample of the same population,
        e.g. images that experts tuned on the first build never saw (BENCHMARKS.md, CG-IAA demo).
      overwrite: rebuild whatever `out_dir` holds.

    Returns:
      dict with out_dir, num_images, num_train, num_test, base_photos, test_photos, params,
      build_seconds, and the paths of AVA.txt, the test list and the manifest.
    """
    out_dir = os.fspath(out_dir)
    photos = available_base_photos()
    params = dict(format_version=_FORMAT_VERSION, seed=int(seed), versions_per_photo=int(versions_per_photo),
                  image_size=int(image_size), test_fraction=float(test_fraction), first_id=int(first_id),
                  base_photos=[p.name for p in photos])
    if first_version:  # recorded only when set, so builds from before the option are reused as they are
        params["first_version"] = int(first_version)
    marker = read_marker(out_dir)
    if marker is not None and not overwrite:
        if marker.get("params") == params:
            return marker
        raise FileExistsError(f"{out_dir} holds a demo build with parameters {marker.get('params')}; "
                                  "pass overwrite=True to replace it")
    if versions_per_photo < 1 or image_size < 16 or not 0.0 < test_fraction < 1.0 or first_version < 0:
        raise ValueError("need versions_per_photo >= 1, image_size >= 16, 0 < test_fraction < 1, first_version >= 0")

    start = time.perf_counter()
    for name in ("images", "aesthetics_image_lists"):
        shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)
    for name in (MARKER, "AVA.txt", "tags.txt", "challenges.txt", _MANIFEST):
        if os.path.exists(os.path.join(out_dir, name)):
            os.remove(os.path.join(out_dir, name))
    os.makedirs(os.path.join(out_dir, "images"))
    os.makedirs(os.path.join(out_dir, "aesthetics_image_lists"))

    pixels_of = {photo.name: load_photo(photo) for photo in photos}
    test_groups = split_groups(photos, {n: a.ndim == 2 for n, a in pixels_of.items()}, seed, test_fraction)
    offset_rng = np.random.default_rng([seed, 0x0FF5E7])
    offsets = np.clip(offset_rng.normal(0.0, _BASE_OFFSET_SD, len(photos)), -_BASE_OFFSET_MAX, _BASE_OFFSET_MAX)

    ava_lines, test_ids, manifest = [], [], []
    image_id = first_id
    for photo_index, photo in enumerate(photos):
        pixels = pixels_of[photo.name]
        split = "test" if photo.group in test_groups else "train"
        for version in range(first_version, first_version + versions_per_photo):
            jpeg, histogram, row = _render_version(pixels, photo, float(offsets[photo_index]), seed,
                                                   photo_index, version, image_size)
            with open(os.path.join(out_dir, "images", f"{image_id}.jpg"), "wb") as f:
                f.write(jpeg)
            counts = " ".join(str(int(c)) for c in histogram)
            ava_lines.append(f"{len(ava_lines) + 1} {image_id} {counts} {row['tag1']} {row['tag2']} {row['challenge']}\n")
            if split == "test":
                test_ids.append(image_id)
            manifest.append(dict(id=image_id, split=split, **row))
            image_id += 1

    with open(os.path.join(out_dir, "AVA.txt"), "w") as f:
        f.writelines(ava_lines)
    with open(os.path.join(out_dir, "tags.txt"), "w") as f:
        f.writelines(f"{i} {name}\n" for name, i in _TAG_ID.items())
    with open(os.path.join(out_dir, "challenges.txt"), "w") as f:
        f.writelines(f"{i} {name}\n" for name, i in _CHALLENGE_ID.items())
    test_list = os.path.join(out_dir, "aesthetics_image_lists", "generic_test.jpgl")
    with open(test_list, "w") as f:
        f.writelines(f"{i}\n" for i in test_ids)
    with open(os.path.join(out_dir, _MANIFEST), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(manifest[0]))
        writer.writeheader()
        writer.writerows(manifest)

    means = np.array([row["mean_score"] for row in manifest])
    summary = dict(
        out_dir=out_dir, params=params, num_images=len(manifest), num_train=len(manifest) - len(test_ids),
        num_test=len(test_ids), base_photos=[p.name for p in photos],
        test_photos=[p.name for p in photos if p.group in test_groups],
        mean_score_range=[float(means.min()), float(means.max())],
        build_seconds=round(time.perf_counter() - start, 2),
        ava_txt=os.path.join(out_dir, "AVA.txt"), test_list=test_list, manifest=os.path.join(out_dir, _MANIFEST),
    )
    with open(os.path.join(out_dir, MARKER), "w") as f:  # written last: marks the build complete
        json.dump(summary, f, indent=1)
    return summary
