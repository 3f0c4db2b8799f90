"""Inference transforms (`data.preprocessing.apply_transform`) against the libraries they reproduce.

References: Keras 3's `keras.utils.load_img(path, target_size=...)` (idealo's NIMA and the Keras
applications) and torchvision's weights transforms (`Resize(n)` + `CenterCrop(s)` on a PIL image),
both run on real photographs of several sizes, including sizes below the target.
"""

import os

import keras
import numpy as np
import pytest
import skimage.data
import torchvision.transforms as T
from PIL import Image

from aesthetics_jax.data import image_io, preprocessing

PHOTOS = {
    "astronaut": skimage.data.astronaut(),                    # 512 x 512
    "coffee": skimage.data.coffee(),                          # 600 x 400 landscape
    "rocket": np.ascontiguousarray(np.rot90(skimage.data.rocket())),  # portrait
    "chelsea_small": skimage.data.chelsea()[::3, ::3],        # 151 x 100: smaller than every target
    "odd": skimage.data.coffee()[:333, :257],                 # odd sides: rounding of offsets
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    out = {}
    for name, pixels in PHOTOS.items():
        path = str(folder / f"{name}.jpg")
        Image.fromarray(pixels).save(path, quality=92)
        out[name] = path
    return out


@pytest.mark.parametrize("size", [224, 299, 97])
def test_keras_load_img(files, size):
    spec = preprocessing.transform_spec("keras_load_img", image_size=size)
    for name, path in files.items():
        want = keras.utils.img_to_array(keras.utils.load_img(path, target_size=(size, size))).astype(np.uint8)
        got = preprocessing.apply_transform(image_io.read_image(path), spec)
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("resize_size,crop,bicubic", [(342, 299, 0), (256, 224, 0), (232, 224, 0), (37, 32, 0),
                                                       (224, 224, 1), (37, 32, 1)])
def test_torchvision_resize_center_crop(files, resize_size, crop, bicubic):
    spec = preprocessing.transform_spec("torchvision", resize_size=resize_size, image_size=crop, bicubic=bicubic)
    mode = T.InterpolationMode.BICUBIC if bicubic else T.InterpolationMode.BILINEAR  # bicubic: CLIP's preprocess
    reference = T.Compose([T.Resize(resize_size, interpolation=mode), T.CenterCrop(crop)])
    for name, path in files.items():
        want = np.asarray(reference(Image.open(path).convert("RGB")))
        got = preprocessing.apply_transform(image_io.read_image(path), spec)
        assert got.shape == (crop, crop, 3)
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_resize_center_crop_is_the_training_eval_transform(files):
    spec = preprocessing.transform_spec("resize_center_crop", resize_size=256, image_size=224)
    pixels = image_io.read_image(files["coffee"])
    np.testing.assert_array_equal(preprocessing.apply_transform(pixels, spec),
                                  preprocessing.eval_transform(pixels, resize_size=256, image_size=224))


def test_spec_validation():
    assert preprocessing.transform_spec("resize_center_crop", resize_size=36, image_size=32) == {
        "name": "resize_center_crop", "resize_shorter": 0, "resize_size": 36, "image_size": 32}
    with pytest.raises(ValueError, match="unknown transform 'bicubic'"):
        preprocessing.transform_spec("bicubic", image_size=3)
    with pytest.raises(ValueError, match=r"missing \['resize_size'\]"):
        preprocessing.transform_spec("torchvision", image_size=224)
    with pytest.raises(ValueError, match=r"unknown \['crop'\]"):
        preprocessing.transform_spec("keras_load_img", image_size=224, crop=3)
    with pytest.raises(ValueError, match="non-negative integer"):
        preprocessing.transform_spec("keras_load_img", image_size=2.5)
    for name, fields in (("keras_load_img", {"image_size": 8}), ("torchvision", {"resize_size": 9, "image_size": 8})):
        assert str(fields["image_size"]) in preprocessing.describe_transform(preprocessing.transform_spec(name, **fields))
