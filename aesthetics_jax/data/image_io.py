"""Robust image loading for the dataset builders: hostile files become correct RGB JPEGs or a reason.

Builders store JPEG bytes that `preprocessing.decode_jpeg` (OpenCV, EXIF orientation ignored, like
TensorFlow's decode_jpeg) turns into the right upright RGB pixels. Two calls per image:

    inspection = inspect_file(path, max_pixels=..., resize_shorter=None)
        reads the file and its header only (plus a 1/8-scale decodability check of kept JPEGs);
        `inspection.reason` is None for a usable image, else one of the skip reasons below;
        `inspection.action` says how the stored bytes will be made ('keep' or 'reencode:<why>').
    data = storage_bytes(path, inspection, resize_shorter=None)
        the bytes to store: the file's own bytes when it is already a plain JPEG that needs no
        change (so published pixels are reproduced bit-exactly), else a re-encoded JPEG.

`load_rgb(data)` decodes any supported bytes to upright uint8 [H, W, 3] RGB (what storage encodes).

Every consumer of image files outside the builders (`predict`, `evaluate`, map producers,
explanations, critiques) reads them with `read_image(path_or_bytes, ...)`: the same checks, then
upright RGB pixels -- `as_stored=True` returns exactly the pixels a build stores for that file
(`storage_bytes` decoded by the training pipeline's `decode_jpeg`), so a model trained here sees
the same pixels at prediction time as in training, hostile files included. Failures raise
`ImageError` (a ValueError) whose `reason` is one of the skip reasons below.

Skip reasons (the detail string says more):

    missing_image       the file does not exist or cannot be read
    empty_image         zero bytes
    not_jpeg            neither a JPEG start-of-image marker nor another known image format
                        (an HTML error page saved as .jpg, random bytes)
    truncated_image     JPEG without an end-of-image marker after its last scan (cut-off download),
                        or whose entropy-coded data ends early (libjpeg's "premature end of data
                        segment", which libjpeg itself only warns about and fills with grey)
    decompression_bomb  the header declares more than `max_pixels` pixels (default 89,478,485,
                        PIL's own limit); refused from the header alone, before any pixel buffer
                        is allocated
    undecodable_image   the header or the pixel data cannot be decoded, or libjpeg reports any other
                        corruption of a JPEG's data (a warning it would otherwise recover from)

Strictness: every JPEG is entropy-decoded once at 1/8 scale by libjpeg-turbo (simplejpeg) with
warnings raised as errors, so a file whose pixels libjpeg would silently patch is refused, not
trained on or scored. `lenient=True` (every function below) accepts such files as OpenCV decodes
them (the warning goes to stderr) and only refuses what cannot be decoded at all.

Conversions (action 'reencode:<why>'; stored as JPEG, quality `REENCODE_QUALITY` = 95, 4:2:0):

    not_jpeg_format     PNG / GIF / BMP / WebP / TIFF content (whatever the file name says)
    cmyk                CMYK / YCCK JPEG -> RGB (PIL applies the Adobe inversion)
    exif_orientation    EXIF orientation 2..8 applied, so the stored pixels are upright
    alpha               alpha (RGBA, LA, palette transparency) composited over white
    high_bit_depth      16-bit samples -> 8-bit by round(v / 257)
    mode_<M>            any other PIL mode (P, 1, I, F, ...) -> RGB
    resize              `resize_shorter=N`: shorter side > N is shrunk to N (aspect kept,
                        cv2.INTER_AREA, sides rounded to the nearest integer)

Greyscale and RGB baseline/progressive JPEGs are kept byte for byte (decode_jpeg expands
greyscale to RGB). PIL never decodes pixels before the pixel-count check (`Image.open` reads only
the header), and `Image.MAX_IMAGE_PIXELS` is not relied on.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import struct
import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps

__all__ = ["Inspection", "ImageError", "inspect_bytes", "inspect_file", "inspect_files", "storage_bytes", "stored_bytes",
           "read_image", "load_rgb", "encode_jpeg", "DEFAULT_MAX_PIXELS", "REENCODE_QUALITY", "SKIP_REASONS"]

DEFAULT_MAX_PIXELS = 89_478_485  # PIL.Image.MAX_IMAGE_PIXELS (~ 0.25 GiB of RGBA)
REENCODE_QUALITY = 95
SKIP_REASONS = ("missing_image", "empty_image", "not_jpeg", "truncated_image", "decompression_bomb",
                "undecodable_image")

_OTHER_FORMATS = (  # magic bytes of formats PIL decodes and we convert
    (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"BM", "BMP"),
    (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
)
_EXIF_ORIENTATION = 0x0112


class ImageError(ValueError):
    """An image file that cannot be used: `reason` (one of SKIP_REASONS) and `detail`."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclasses.dataclass(frozen=True)
class Inspection:
    """What `inspect_*` found: a skip `reason` (None if usable), `detail`, the storage `action`."""

    reason: str | None
    detail: str = ""
    action: str = "keep"
    width: int = 0
    height: int = 0

    @property
    def ok(self) -> bool:
        return self.reason is None


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _OTHER_FORMATS:
        if data.startswith(magic):
            return name
    return None


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # pylint: disable=broad-except  (a corrupt EXIF block: treat as upright)
        return 1


def _target_size(width: int, height: int, resize_shorter: int | None) -> tuple[int, int] | None:
    """(width, height) after the optional shorter-side resize, or None when no resize applies."""
    if not resize_shorter or min(width, height) <= resize_shorter:
        return None
    scale = resize_shorter / min(width, height)
    if width <= height:
        return resize_shorter, max(1, int(round(height * scale)))
    return max(1, int(round(width * scale))), resize_shorter


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) declared by a JPEG frame header or PNG IHDR, read without decoding; else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24 and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if not data.startswith(b"\xff\xd8"):
        return None
    k = 2
    while k + 4 <= len(data):
        if data[k] != 0xFF:
            return None
        marker = data[k + 1]
        if marker == 0xFF:  # fill byte
            k += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            k += 2
            continue
        length = struct.unpack(">H", data[k + 2 : k + 4])[0]
        if marker in _SOF_MARKERS and k + 9 <= len(data):
            height, width = struct.unpack(">HH", data[k + 5 : k + 9])
            return width, height
        if marker == 0xDA:
            return None
        k += 2 + length
    return None


def _stable(error: Exception) -> str:
    """An exception's text without object addresses (PIL names its in-memory file `<_io.BytesIO
    object at 0x...>`), so the same file gets the same skip detail in every run."""
    return re.sub(r"<([\w.]+) object at 0x[0-9a-fA-F]+>", r"<\1>", str(error))


def _strict_jpeg_error(data: bytes, mode: str) -> Inspection | None:
    """Entropy-decodes a JPEG at 1/8 scale with libjpeg warnings as errors; the skip, or None."""
    import simplejpeg  # pylint: disable=g-import-not-at-top

    try:  # libjpeg converts YCbCr / grey to grey and CMYK / YCCK to CMYK; every block is decoded
        simplejpeg.decode_jpeg(data, colorspace="CMYK" if mode in ("CMYK", "YCCK") else "GRAY", min_factor=8,
                               strict=True)
    except ValueError as e:
        message = str(e)
        reason = "truncated_image" if "premature end" in message.lower() else "undecodable_image"
        return Inspection(reason, f"{len(data)} bytes, libjpeg: {message} (lenient=True accepts it)")
    return None


def inspect_bytes(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                  resize_shorter: int | None = None, lenient: bool = False) -> Inspection:
    """Checks encoded bytes without decoding full-size pixels (see the module docstring)."""
    if not data:
        return Inspection("empty_image", "0 bytes")
    fmt = _sniff(data)
    if fmt is None:
        return Inspection("not_jpeg", f"{len(data)} bytes starting with {data[:8].hex()}; not a known image format")
    # Entropy-coded data byte-stuffs 0xFF, so FF D9 after the last scan header can only be EOI.
    if fmt == "JPEG" and data.rfind(b"\xff\xd9") < max(data.rfind(b"\xff\xda"), 2):
        return Inspection("truncated_image", f"{len(data)} bytes, no end-of-image marker")
    declared = header_size(data)  # our own header parse first: PIL's limit is a global setting
    if declared is not None and declared[0] * declared[1] > max_pixels:
        return Inspection("decompression_bomb", f"{declared[0]}x{declared[1]} = {declared[0] * declared[1]} "
                                                f"pixels declared > max_pixels {max_pixels}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))  # header only
            width, height = image.size
            mode = image.mode
            orientation = _orientation(image) if fmt in ("JPEG", "WEBP", "PNG", "TIFF") else 1
    except Image.DecompressionBombError as e:  # PIL refuses > 2x its limit at open time
        return Inspection("decompression_bomb", str(e))
    except Exception as e:  # pylint: disable=broad-except
        return Inspection("undecodable_image", f"{fmt} header: {type(e).__name__}: {_stable(e)}")
    if width * height > max_pixels:
        return Inspection("decompression_bomb",
                          f"{width}x{height} = {width * height} pixels declared > max_pixels {max_pixels}")
    if width <= 0 or height <= 0:
        return Inspection("undecodable_image", f"{width}x{height} pixels declared")

    if fmt == "JPEG" and not lenient:
        failed = _strict_jpeg_error(data, mode)
        if failed is not None:
            return dataclasses.replace(failed, width=width, height=height)
    if fmt != "JPEG":
        why = "not_jpeg_format"
    elif mode in ("CMYK", "YCCK"):
        why = "cmyk"
    elif mode not in ("RGB", "L"):
        why = f"mode_{mode}"
    elif orientation not in (1,):
        why = "exif_orientation"
    elif _target_size(width, height, resize_shorter):
        why = "resize"
    else:
        why = None
    if why is None:
        # Lenient: a cheap decodability check (libjpeg still entropy-decodes every block at 1/8
        # scale); strict mode has done so above already.
        if lenient and cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8) is None:
            return Inspection("undecodable_image", f"{len(data)} bytes, OpenCV cannot decode", width=width, height=height)
        return Inspection(None, f"{fmt} {mode}", "keep", width, height)
    try:  # converted images are fully decoded now, so a failure is a skip, not a crash later
        rgb = load_rgb(data, max_pixels=max_pixels)
    except ValueError as e:
        return Inspection("undecodable_image", str(e), width=width, height=height)
    return Inspection(None, f"{fmt} {mode}", f"reencode:{why}", rgb.shape[1], rgb.shape[0])


def _read_file(path) -> bytes | Inspection:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return Inspection("missing_image", "file not found")
    except IsADirectoryError:
        return Inspection("missing_image", "is a directory")
    except OSError as e:
        return Inspection("missing_image", f"unreadable: {e}")


def inspect_file(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 resize_shorter: int | None = None, lenient: bool = False) -> Inspection:
    """`inspect_bytes` of the file's contents; a missing or unreadable file is `missing_image`."""
    data = _read_file(path)
    if isinstance(data, Inspection):
        return data
    return inspect_bytes(data, max_pixels=max_pixels, resize_shorter=resize_shorter, lenient=lenient)


def _to_rgb(image: Image.Image) -> np.ndarray:
    """uint8 [H, W, 3] RGB of a loaded PIL image of any mode (alpha over white, 16 bit -> 8 bit)."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image).astype(np.float64)
        if mode == "I" and values.max(initial=0) <= 255:  # 8-bit data promoted to I by a transform
            grey = np.clip(values, 0, 255)
        else:
            grey = np.clip(values / 257.0, 0, 255)
        return np.repeat(np.rint(grey).astype(np.uint8)[..., None], 3, axis=2)
    if mode == "F":
        grey = np.clip(np.asarray(image), 0, 255)
        return np.repeat(np.rint(grey).astype(np.uint8)[..., None], 3, axis=2)
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if mode in ("LA", "La", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "RGBa"):
        rgba = np.asarray(image.convert("RGBA")).astype(np.float64)
        alpha = rgba[..., 3:4] / 255.0
        out = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return np.rint(out).astype(np.uint8)
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _png_16bit_rgb(data: bytes) -> np.ndarray | None:
    """16-bit colour PNGs: PIL drops to 8 bits by truncation; OpenCV keeps all 16 (BGR[A])."""
    if not data.startswith(b"\x89PNG") or len(data) < 26 or data[24] != 16 or data[25] not in (2, 6):
        return None
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.dtype != np.uint16:
        return None
    values = pixels.astype(np.float64) / 257.0
    if values.shape[2] == 4:
        alpha = values[..., 3:4] / 255.0
        values = values[..., :3] * alpha + 255.0 * (1.0 - alpha)
    return np.rint(values[..., 2::-1]).astype(np.uint8)


def load_rgb(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Upright uint8 [H, W, 3] RGB of encoded bytes; ValueError (with the reason) if impossible."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            declared = header_size(data)
            if declared is not None and declared[0] * declared[1] > max_pixels:
                raise ValueError(f"decompression_bomb: {declared[0]}x{declared[1]} pixels declared")
            image = Image.open(io.BytesIO(data))
            if image.size[0] * image.size[1] > max_pixels:
                raise ValueError(f"decompression_bomb: {image.size[0]}x{image.size[1]} pixels declared")
            orientation = _orientation(image)
            rgb16 = _png_16bit_rgb(data)
            if rgb16 is not None:
                rgb = rgb16
            else:
                image.load()  # raises on truncated / corrupt data
                rgb = _to_rgb(image)
    except ValueError:
        raise
    except Exception as e:  # pylint: disable=broad-except
        raise ValueError(f"cannot decode image ({len(data)} bytes): {type(e).__name__}: {_stable(e)}") from e
    if orientation != 1:
        rgb = _apply_orientation(rgb, orientation)
    return np.ascontiguousarray(rgb)


def _apply_orientation(rgb: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation 1..8 -> upright, with the same transposes as PIL's ImageOps.exif_transpose."""
    method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}.get(orientation)
    if method is None:
        return rgb
    return np.asarray(Image.fromarray(rgb).transpose(method))


def encode_jpeg(rgb: np.ndarray, quality: int = REENCODE_QUALITY) -> bytes:
    """JPEG bytes of uint8 RGB pixels (OpenCV / libjpeg-turbo, 4:2:0)."""
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"cannot encode {rgb.shape} as JPEG")
    return encoded.tobytes()


def storage_bytes(path: str | os.PathLike, inspection: Inspection, *, resize_shorter: int | None = None,
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """The JPEG bytes to store for an image `inspect_file` accepted (same `resize_shorter`)."""
    if not inspection.ok:
        raise ValueError(f"{path}: not storable ({inspection.reason}: {inspection.detail})")
    with open(path, "rb") as f:
        data = f.read()
    return stored_bytes(data, inspection, resize_shorter=resize_shorter, max_pixels=max_pixels)


def stored_bytes(data: bytes, inspection: Inspection, *, resize_shorter: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """`storage_bytes` of encoded bytes that `inspect_bytes` accepted (same `resize_shorter`)."""
    if not inspection.ok:
        raise ValueError(f"not storable ({inspection.reason}: {inspection.detail})")
    if inspection.action == "keep":
        return data
    if inspection.action == "reencode:resize" and data.startswith(b"\xff\xd8"):
        rgb = _decode_reduced(data, inspection.width, inspection.height, resize_shorter)
    else:
        rgb = load_rgb(data, max_pixels=max_pixels)
    target = _target_size(rgb.shape[1], rgb.shape[0], resize_shorter)
    if target is not None:
        rgb = cv2.resize(rgb, target, interpolation=cv2.INTER_AREA)
    return encode_jpeg(rgb)


def read_image(source: str | os.PathLike | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, lenient: bool = False,
               as_stored: bool = False, resize_shorter: int | None = None) -> np.ndarray:
    """Upright uint8 [H, W, 3] RGB of an image file (path) or encoded bytes, after the builders' checks.

    Raises `ImageError` (reason, detail) for anything a build would skip. `as_stored=True` gives
    exactly the pixels a build stores (`stored_bytes`, with the build's `resize_shorter`, decoded
    by `preprocessing.decode_jpeg` as the training pipeline decodes them): hostile files repaired
    the same way and re-encoded the same way. Otherwise the repaired pixels themselves (no JPEG
    re-encode): a plain JPEG is decoded by OpenCV, anything else by `load_rgb`.
    """
    from aesthetics_jax.data import preprocessing  # pylint: disable=g-import-not-at-top

    data = source if isinstance(source, (bytes, bytearray, memoryview)) else _read_file(source)
    if isinstance(data, Inspection):
        raise ImageError(data.reason, data.detail)
    data = bytes(data)
    inspection = inspect_bytes(data, max_pixels=max_pixels, lenient=lenient,
                               resize_shorter=resize_shorter if as_stored else None)
    if not inspection.ok:
        raise ImageError(inspection.reason, inspection.detail)
    try:
        if as_stored:
            return preprocessing.decode_jpeg(stored_bytes(data, inspection, resize_shorter=resize_shorter,
                                                          max_pixels=max_pixels))
        if inspection.action == "keep":
            return preprocessing.decode_jpeg(data)
        return load_rgb(data, max_pixels=max_pixels)
    except ValueError as e:
        raise ImageError("undecodable_image", str(e)) from None


def _decode_reduced(data: bytes, width: int, height: int, resize_shorter: int | None) -> np.ndarray:
    """Plain JPEG decoded at the largest DCT scale (1/2, 1/4, 1/8) still >= the resize target."""
    flag = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
    if resize_shorter:
        for factor, reduced in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                                (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if min(width, height) // factor >= resize_shorter:
                flag = (reduced | cv2.IMREAD_IGNORE_ORIENTATION)
                image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
                if image is None:
                    raise ValueError(f"cannot decode JPEG ({len(data)} bytes)")
                return np.ascontiguousarray(image[..., ::-1])
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if image is None:
        raise ValueError(f"cannot decode JPEG ({len(data)} bytes)")
    return image


# -- many files: threads, progress, a resumable cache ------------------------------------------------

CACHE_PREFIX = "inspect_cache"
_CHECKS_VERSION = 2  # bumped when the checks change, so cached verdicts of older checks are redone


def _cache_key(path: str) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}"


def _read_caches(cache_dir: str | None) -> dict[str, dict]:
    import json  # pylint: disable=g-import-not-at-top

    entries: dict[str, dict] = {}
    if not cache_dir or not os.path.isdir(cache_dir):
        return entries
    for name in sorted(os.listdir(cache_dir)):
        if name.startswith(CACHE_PREFIX) and name.endswith(".jsonl"):
            with open(os.path.join(cache_dir, name)) as f:
                for text in f:
                    try:
                        entry = json.loads(text)
                    except ValueError:
                        continue  # a line cut off by an interrupted run
                    entries[entry["path"]] = entry
    return entries


def inspect_files(paths, *, max_pixels: int = DEFAULT_MAX_PIXELS, resize_shorter: int | None = None,
                  cache_dir: str | None = None, cache_name: str = CACHE_PREFIX, progress: str | None = None,
                  num_threads: int | None = None, lenient: bool = False) -> list[Inspection]:
    """`inspect_file` of every path, in a thread pool (libjpeg and file reads drop the GIL).

    With `cache_dir`, results are appended to `<cache_dir>/<cache_name>.jsonl` as they come and
    every `inspect_cache*.jsonl` there is read first: an interrupted run resumes where it stopped,
    and several processes (each with its own `cache_name` and a slice of the paths) can share the
    work. An entry is reused only while the file's size and mtime are unchanged and it was made
    with the same max_pixels / resize_shorter / lenient and the same checks version. `progress` (a label) prints a line every ~2 %.
    """
    import concurrent.futures  # pylint: disable=g-import-not-at-top
    import json  # pylint: disable=g-import-not-at-top
    import sys  # pylint: disable=g-import-not-at-top
    import time  # pylint: disable=g-import-not-at-top

    paths = [os.fspath(p) for p in paths]
    settings = f"{max_pixels}:{resize_shorter or 0}:{'lenient' if lenient else 'strict'}:{_CHECKS_VERSION}"
    cached = _read_caches(cache_dir)
    results: list[Inspection | None] = [None] * len(paths)
    todo = []
    for k, path in enumerate(paths):
        entry = cached.get(path)
        if entry is not None and entry.get("settings") == settings and entry.get("key") == _cache_key(path):
            results[k] = Inspection(**entry["inspection"])
        else:
            todo.append(k)
    out = None
    if cache_dir and todo:
        os.makedirs(cache_dir, exist_ok=True)
        out = open(os.path.join(cache_dir, f"{cache_name}.jsonl"), "a")
    start, done, every = time.time(), 0, max(1, len(todo) // 50)
    if progress and not todo:
        print(f"[{progress}] checked 0/0 images ({len(paths)} cached)", file=sys.stderr, flush=True)

    def work(k):
        return k, inspect_file(paths[k], max_pixels=max_pixels, resize_shorter=resize_shorter, lenient=lenient)

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=num_threads or 2 * (os.cpu_count() or 1)) as pool:
            for k, inspection in pool.map(work, todo, chunksize=16):
                results[k] = inspection
                if out is not None and inspection.reason != "missing_image":
                    out.write(json.dumps(dict(path=paths[k], key=_cache_key(paths[k]), settings=settings,
                                              inspection=dataclasses.asdict(inspection))) + "\n")
                done += 1
                if progress and (done % every == 0 or done == len(todo)):
                    rate = done / max(time.time() - start, 1e-9)
                    print(f"[{progress}] checked {done}/{len(todo)} images ({len(paths) - len(todo)} cached), "
                          f"{rate:.0f}/s", file=sys.stderr, flush=True)
                    if out is not None:
                        out.flush()
    finally:
        if out is not None:
            out.close()
    return results  # type: ignore[return-value]
