"""Photos of digits made into what MNIST images are, as MNIST itself was prepared:
greyscale, a dark background, the digit scaled into a 20x20 box and centred by its centre
of mass in 28x28."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from nnx import images, io
from nnx.errors import DataError, InputError

SIDE, BOX = 28, 20  # MNIST: a 28x28 image, the digit scaled into a 20x20 box
FAINT = 0.05  # of the digit's peak: below it, a pixel is a halo (resampling ringing, blur)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """A PNG or JPEG file as MNIST's ``load_mnist(normalize=True)`` gives an image: (784,)
    float32 in [0, 1]; :class:`DataError` naming the file if it is unreadable or blank."""
    from PIL import Image

    name = io.shown(path)
    try:
        if not (size := io.file_size(path)):
            raise io.BadFile("does not exist" if size is None else "is empty (0 bytes)")
        with Image.open(path, formats=("PNG", "JPEG")) as img:
            img = images.load(img)  # bounded by its header's size before decoding
            if 0 in img.size:
                raise io.BadFile("has no pixels")
            grey = _grey(img)
    except MemoryError:  # a valid image, too large for the memory this process has
        raise _no_memory(name) from None
    except Exception as exc:  # PIL raises many kinds for damaged bytes
        what = exc if isinstance(exc, io.BadFile) else \
            f"is not a PNG or JPEG image that can be read ({io.brief(exc)})"
        raise DataError(f"{name} {what}; give a PNG or JPEG image of a digit") from exc
    try:
        return mnist_like(grey)
    except MemoryError:
        raise _no_memory(name) from None
    except InputError as exc:
        raise DataError(f"{name} {exc}; give an image with a digit on a plain background") \
            from None


def _no_memory(name: str) -> InputError:
    return InputError(f"out of memory reading {name}, a valid image; give nnx more memory or "
                      "scale the image down")


def _grey(img: Any) -> np.ndarray:
    """Luminance in [0, 1]; transparent pixels become the opposite of the ink's colour."""
    if img.mode == "I" or img.mode.startswith("I;16"):  # 16-bit greyscale
        values = np.asarray(img, dtype=np.float64)
        # Values that all fit in 0-255 are 8-bit data saved in 16 bits (as some tools save
        # a uint8 array): scaled by 65535 they would be a digit of 1/256 contrast, blank.
        return np.clip(values / (255 if values.max() <= 255 else 65535), 0, 1)
    la = np.asarray(img.convert("RGBA").convert("LA"), dtype=np.float64) / 255
    grey, alpha = la[..., 0], la[..., 1]
    if alpha.min() < 1:
        ink = float(np.sum(grey * alpha) / max(alpha.sum(), 1e-12))
        grey = grey * alpha + (1.0 if ink < 0.5 else 0.0) * (1 - alpha)
    return grey


def mnist_like(grey: np.ndarray) -> np.ndarray:
    """A greyscale image (H, W) in [0, 1] of one digit, any size or polarity, prepared as
    MNIST was: the border's colour is the background (inverted if light), its noise level
    is cut, the digit's bounding box is scaled into 20x20 preserving its aspect ratio and
    placed in 28x28 with its centre of mass at the centre. (784,) float32 in [0, 1]."""
    from PIL import Image

    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 0.5:
        grey, border = 1 - grey, 1 - border
    med = np.median(border)
    floor = med + 3 * 1.4826 * np.median(np.abs(border - med))  # the background's noise
    peak = float(grey.max())
    if peak - floor < 0.05:
        raise InputError("is blank (one colour, no digit to see)")
    digit = np.clip((grey - floor) / (peak - floor), 0, 1)
    rows, cols = np.nonzero(digit > FAINT)  # the digit's extent: faint halos do not count
    long = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    m = -(-long // BOX)  # a margin of one pixel of the result keeps the halo, not far specks
    digit = np.pad(digit, m)[rows.min():rows.max() + 2 * m + 1, cols.min():cols.max() + 2 * m + 1]
    size = (max(1, round(digit.shape[1] * BOX / long)), max(1, round(digit.shape[0] * BOX / long)))
    small = np.asarray(Image.fromarray(digit.astype(np.float32), "F")
                       .resize(size, Image.Resampling.BOX), dtype=np.float64).clip(0, 1)
    rows, cols = np.nonzero(small)  # the margin's empty rows must not limit the placement
    small = small[rows.min():rows.max() + 1, cols.min():cols.max() + 1][:SIDE, :SIDE]
    h, w = small.shape
    cy, cx = np.indices(small.shape).reshape(2, -1) @ small.reshape(-1) / small.sum()
    top = min(max(round(SIDE / 2 - cy), 0), SIDE - h)  # MNIST's centres of mass lie at 14
    left = min(max(round(SIDE / 2 - cx), 0), SIDE - w)
    out = np.zeros((SIDE, SIDE), dtype=np.float32)
    out[top:top + h, left:left + w] = small
    return out.reshape(-1)
