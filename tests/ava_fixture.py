"""A tiny AVA directory in the public on-disk format, with one bad record of every kind.

`write_ava_fixture(root)` writes AVA.txt, tags.txt, challenges.txt, images/<id>.jpg and
aesthetics_image_lists/generic_test.jpgl, and returns what a correct builder must make of it:
the good rows (histogram, tags, challenge, test membership) and the bad records with the
reason each must be reported under.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

TAGS = {1: "Abstract", 2: "Animals", 15: "Landscape", 21: "Black and White"}
CHALLENGES = {101: "Free Study", 1396: "Macro Photography"}


def _jpeg(rng: np.random.Generator, greyscale: bool, size=(24, 32)) -> bytes:
    shape = size if greyscale else (*size, 3)
    pixels = cv2.GaussianBlur(rng.integers(0, 256, shape, dtype=np.uint8), (5, 5), 0)
    ok, data = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


def write_ava_fixture(root) -> dict:
    """Writes the fixture under `root`; returns {'good': {id: row}, 'bad': {(id, file): reason}}."""
    root = os.fspath(root)
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "aesthetics_image_lists"), exist_ok=True)
    rng = np.random.default_rng(1234)

    good, good_lines = {}, []
    for k in range(12):
        image_id = 1001 + k
        histogram = rng.integers(0, 30, 10)
        histogram[rng.integers(10)] += 1  # never all zero
        tags = (int(rng.choice([1, 2, 15, 21])), int(rng.choice([0, 1, 2])))
        challenge = 101 if k % 2 else 1396
        data = _jpeg(rng, greyscale=(k % 4 == 3))
        with open(os.path.join(root, "images", f"{image_id}.jpg"), "wb") as f:
            f.write(data)
        good[image_id] = dict(histogram=histogram, tags=tags, challenge=challenge, jpeg=data, test=image_id >= 1010)
        good_lines.append((image_id, f"{image_id} {' '.join(map(str, histogram))} {tags[0]} {tags[1]} {challenge}"))

    # Rows that must be rejected while parsing AVA.txt.
    votes = "0 1 2 3 4 5 4 3 2 1"
    bad_lines = [
        ("2001", "2001 0 1 2 3 4 5", "wrong_column_count"),  # 7 columns
        ("2002", f"2002 {votes} 0 0 101 7", "wrong_column_count"),  # 16 columns
        ("2006", "2006 0 0 0 0 0 0 0 0 0 0 1 0 101", "zero_votes"),
        ("2007", "2007 0 1 x 3 4 5 4 3 2 1 1 0 101", "bad_votes"),
        ("2008", "2008 0 1 -2 3 4 5 4 3 2 1 1 0 101", "bad_votes"),
        ("1001", f"1001 {votes} 1 0 101", "duplicate_id"),  # after the good 1001 row
        ("2x9", f"2x9 {votes} 1 0 101", "bad_id"),
    ]
    bad = {(image_id, "AVA.txt"): reason for image_id, _, reason in bad_lines}

    # Rows that parse but whose image is bad: reported against the image file.
    image_cases = {
        3001: ("missing_image", None),
        3002: ("empty_image", b""),
        3003: ("truncated_image", _jpeg(rng, False, (64, 64))[:700]),
        3004: ("undecodable_image", b"\xff\xd8" + rng.integers(0, 255, 400, dtype=np.uint8).tobytes() + b"\xff\xd9"),
        3005: ("not_jpeg", b"<html>404 Not Found</html>"),
    }
    for image_id, (reason, data) in image_cases.items():
        if data is not None:
            with open(os.path.join(root, "images", f"{image_id}.jpg"), "wb") as f:
                f.write(data)
        bad_lines.append((str(image_id), f"{image_id} {votes} 15 0 101", reason))
        bad[(str(image_id), f"images/{image_id}.jpg")] = reason

    # Interleave good and bad rows (good 1001 comes first, so the second 1001 is the duplicate).
    rows = []
    for k in range(max(len(good_lines), len(bad_lines))):
        rows += good_lines[k : k + 1] + [(i, t) for i, t, _ in bad_lines[k : k + 1]]
    with open(os.path.join(root, "AVA.txt"), "w") as f:
        for line_no, (image_id, text) in enumerate(rows, start=1):
            f.write(f"{line_no} {text}\n")
            if image_id in good:
                good[image_id].setdefault("line", line_no)

    test_ids = [i for i, row in good.items() if row["test"]] + [3003]  # a bad image in the test list
    with open(os.path.join(root, "aesthetics_image_lists", "generic_test.jpgl"), "w") as f:
        f.writelines(f"{i}\n" for i in test_ids)
        f.write("\nnot-an-id\n")  # a blank line (ignored) and a bad entry (reported)
    bad[("not-an-id", "aesthetics_image_lists/generic_test.jpgl")] = "bad_test_list_entry"
    with open(os.path.join(root, "tags.txt"), "w") as f:
        f.writelines(f"{i} {name}\n" for i, name in TAGS.items())
    with open(os.path.join(root, "challenges.txt"), "w") as f:
        f.writelines(f"{i} {name}\n" for i, name in CHALLENGES.items())
    return dict(good=good, bad=bad)
