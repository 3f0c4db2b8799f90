"""The embedded demo dataset: AVA's exact on-disk format, split by base photo, deterministic."""

import csv
import os

import cv2
import numpy as np
import pytest

from aesthetics_jax.data.builders import demo

SMALL = dict(seed=0, versions_per_photo=8, image_size=64)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, demo.build_demo_ava(out, **SMALL)


def _ava_rows(root):
    """Independent parse of AVA.txt: every line must have exactly 15 integer columns."""
    rows = []
    with open(os.path.join(root, "AVA.txt")) as f:
        for line in f:
            fields = line.split()
            assert len(fields) == 15, line
            rows.append([int(v) for v in fields])
    return np.array(rows, np.int64)


def _manifest(root):
    with open(os.path.join(root, "demo_manifest.csv"), newline="") as f:
        return list(csv.DictReader(f))


def _names(path):
    with open(path) as f:
        return {int(line.split(maxsplit=1)[0]): line.split(maxsplit=1)[1].strip() for line in f if line.strip()}


def test_files_in_ava_format(small):
    root, summary = small
    rows = _ava_rows(root)
    ids = rows[:, 1]
    n_photos = len(demo.available_base_photos())
    assert len(rows) == summary["num_images"] == SMALL["versions_per_photo"] * n_photos
    np.testing.assert_array_equal(rows[:, 0], np.arange(1, len(rows) + 1))  # row index column
    assert len(set(ids.tolist())) == len(ids)
    assert (rows[:, 2:15] >= 0).all()
    tags, challenges = _names(os.path.join(root, "tags.txt")), _names(os.path.join(root, "challenges.txt"))
    assert set(rows[:, 12]) <= set(tags) and set(rows[:, 13]) <= set(tags) | {0}
    assert set(rows[:, 14]) <= set(challenges)
    for image_id in ids:
        image = cv2.imread(os.path.join(root, "images", f"{image_id}.jpg"), cv2.IMREAD_UNCHANGED)
        assert image is not None and max(image.shape[:2]) <= SMALL["image_size"]
    with open(os.path.join(root, "aesthetics_image_lists", "generic_test.jpgl")) as f:
        test_ids = [int(line) for line in f]
    assert set(test_ids) <= set(ids.tolist()) and len(test_ids) == summary["num_test"] > 0


def test_split_by_base_photo(small):
    root, summary = small
    manifest = _manifest(root)
    with open(os.path.join(root, "aesthetics_image_lists", "generic_test.jpgl")) as f:
        test_ids = {int(line) for line in f}
    assert {int(m["id"]) for m in manifest if m["split"] == "test"} == test_ids
    train_groups = {m["base_group"] for m in manifest if int(m["id"]) not in test_ids}
    test_groups = {m["base_group"] for m in manifest if int(m["id"]) in test_ids}
    assert train_groups and test_groups and not train_groups & test_groups
    train_photos = {m["base_photo"] for m in manifest if int(m["id"]) not in test_ids}
    assert not train_photos & {m["base_photo"] for m in manifest if int(m["id"]) in test_ids}
    # Stratified by colour: both strata are in train and in test, each with ~25 % of its groups held out.
    from PIL import Image
    grey = {}
    for photo in demo.available_base_photos():
        with Image.open(photo.path()) as image:
            grey[photo.group] = image.mode in ("1", "L", "LA", "I", "I;16")
    for stratum in (False, True):
        groups = {g for g in train_groups | test_groups if grey[g] == stratum}
        held = groups & test_groups
        assert held and groups - held, f"greyscale={stratum}: {sorted(held)} of {sorted(groups)} held out"
        assert len(held) == max(1, round(0.25 * len(groups)))
    # the stereo pair shares a group, so it can never straddle the split
    assert {m["base_group"] for m in manifest if m["base_photo"].startswith("motorcycle")} == {"motorcycle"}


def test_votes_and_scores(small):
    root, _ = small
    rows = _ava_rows(root)
    votes = rows[:, 2:12].sum(1)
    assert votes.min() >= 100 and votes.max() <= 300
    means = (rows[:, 2:12] * np.arange(1, 11)).sum(1) / votes
    manifest = {int(m["id"]): m for m in _manifest(root)}
    for image_id, n, mean in zip(rows[:, 1], votes, means):
        assert int(manifest[image_id]["votes"]) == n
        assert float(manifest[image_id]["mean_score"]) == pytest.approx(mean, abs=1e-4)
    assert means.min() < 3.5 and means.max() > 7.0 and means.std() > 1.0  # widely spread


def test_manifest_documents_every_image(small):
    root, _ = small
    manifest = _manifest(root)
    degradations = set(demo.DEGRADATIONS)
    for m in manifest:
        applied = set(filter(None, m["degradations"].split("+")))
        assert applied <= degradations
        for kind in degradations:  # a severity is recorded iff the degradation was applied
            assert (float(m[f"sev_{kind}"]) > 0) == (kind in applied)
        assert (int(m["jpeg_quality"]) < 95) == ("jpeg" in applied)
        # the documented quality model, recomputed from the manifest's own columns
        costs = [float(m[f"penalty_{kind}"]) for kind in applied]
        assert float(m["penalty"]) == pytest.approx(5.5 * (1 - np.prod([1 - c / 5.5 for c in costs])), abs=1e-3)
        latent = 7.3 + float(m["base_offset"]) + float(m["composition"]) - float(m["penalty"])
        assert float(m["latent_quality"]) == pytest.approx(latent, abs=1e-3)
    kinds = [set(filter(None, m["degradations"].split("+"))) for m in manifest]
    assert any(not k for k in kinds) and all(any(d in k for k in kinds) for d in degradations)
    # real photographs, read from the installed wheels' files
    for name in {m["base_photo"] for m in manifest}:
        photo = next(p for p in demo.BASE_PHOTOS if p.name == name)
        assert os.path.isfile(photo.path())
    assert {m["base_photo"] for m in manifest} >= {"astronaut", "chelsea", "coffee", "camera", "rocket"}


def test_deterministic_and_idempotent(small, tmp_path):
    root, summary = small
    again = demo.build_demo_ava(tmp_path / "again", **SMALL)
    assert again["num_images"] == summary["num_images"]
    for name in ("AVA.txt", "demo_manifest.csv", "aesthetics_image_lists/generic_test.jpgl"):
        assert open(os.path.join(root, name)).read() == open(tmp_path / "again" / name).read()
    for image_id in _ava_rows(root)[:, 1][::7]:
        a = open(os.path.join(root, "images", f"{image_id}.jpg"), "rb").read()
        assert a == (tmp_path / "again" / "images" / f"{image_id}.jpg").read_bytes()

    mtime = os.path.getmtime(tmp_path / "again" / "AVA.txt")
    assert demo.build_demo_ava(tmp_path / "again", **SMALL) == again  # reused, nothing rewritten
    assert os.path.getmtime(tmp_path / "again" / "AVA.txt") == mtime
    with pytest.raises(FileExistsError):
        demo.build_demo_ava(tmp_path / "again", **dict(SMALL, seed=1))

    other = demo.build_demo_ava(tmp_path / "again", **dict(SMALL, seed=1), overwrite=True)
    assert other["params"]["seed"] == 1
    assert open(os.path.join(root, "AVA.txt")).read() != (tmp_path / "again" / "AVA.txt").read_text()


def test_a_later_render_continues_the_same_photos(small, tmp_path):
    """first_version=5 renders versions 5..7 of every photo: the same bytes and manifest rows as
    versions 5..7 of the 8-version build (ids aside), the same split; params record it."""
    root, summary = small
    n, first = SMALL["versions_per_photo"], 5
    later = demo.build_demo_ava(tmp_path / "later", **dict(SMALL, versions_per_photo=n - first),
                                first_version=first, first_id=500000)
    assert later["params"]["first_version"] == first and "first_version" not in summary["params"]
    assert later["test_photos"] == summary["test_photos"]
    rows = {int(m["id"]): m for m in _manifest(root)}
    photos = len(summary["base_photos"])
    assert later["num_images"] == photos * (n - first)
    for m in _manifest(tmp_path / "later"):
        photo, version = divmod(int(m["id"]) - 500000, n - first)
        old_id = 100000 + photo * n + first + version
        assert {k: v for k, v in m.items() if k != "id"} == {k: v for k, v in rows[old_id].items() if k != "id"}
        assert (tmp_path / "later" / "images" / f"{m['id']}.jpg").read_bytes() == \
            open(os.path.join(root, "images", f"{old_id}.jpg"), "rb").read()
    with pytest.raises(ValueError, match="first_version"):
        demo.build_demo_ava(tmp_path / "bad", **SMALL, first_version=-1)
