"""Input normalisation presets, applied inside the model.

Every model takes raw pixels (NHWC, values in [0, 255], uint8 or float) and normalises them
itself with one of the presets below. Keeping normalisation inside the graph means export
(ONNX / SavedModel) and `predict` feed raw pixels and can never normalise twice or with the wrong
statistics for a checkpoint.

Presets (all computed in float32, whatever the model's compute dtype):

    keras_tf  x / 127.5 - 1               Keras `preprocess_input` "tf" mode (MobileNet v1/v2,
                                          InceptionV3), written exactly as Keras writes it so that
                                          parity tests agree to the last ulp.
    torch     (x / 255 - mean) / std      ImageNet mean/std, torchvision models.
    clip      (x / 255 - mean) / std      OpenAI CLIP mean/std.
    none      x                           only a cast to float32 (inputs already normalised).

A 4-channel input (RGB + a modality map as channel 4, `data.datasets` "rgb+map") is normalised
per channel too: keras_tf and none act on every channel alike; the mean/std presets give the 4th
channel the mean of the three RGB means and of the three stds, the statistics its input-conv
kernel (initialised to the mean of the RGB kernels) was pretrained against on average.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

PRESETS = ("keras_tf", "torch", "clip", "none")


def _mean_std(images, mean, std):
    if images.shape[-1] == len(mean) + 1:  # RGB + a map channel
        mean, std = (*mean, sum(mean) / len(mean)), (*std, sum(std) / len(std))
    if images.shape[-1] != len(mean):
        raise ValueError(f"mean/std preset expects {len(mean)} channels, got images of shape {images.shape}")
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    return (images / 255.0 - mean) / std


def normalize(images, preset: str):
    """Returns `images` (raw [0, 255] pixels, any real or integer dtype) normalised as float32."""
    x = jnp.asarray(images).astype(jnp.float32)
    if preset == "keras_tf":
        return x / 127.5 - 1.0
    if preset == "torch":
        return _mean_std(x, IMAGENET_MEAN, IMAGENET_STD)
    if preset == "clip":
        return _mean_std(x, CLIP_MEAN, CLIP_STD)
    if preset == "none":
        return x
    raise ValueError(f"Unknown preprocess preset {preset!r}; known presets: {', '.join(PRESETS)}")
