"""Images read as input anyone could have written: bounded by the pixel count their header
declares before a byte is decoded, and made small before any per-pixel arithmetic.

Pillow reads an image's size from its header when it opens it and decodes only on
``load()``; :func:`load` refuses a header that declares more than :data:`MAX_PIXELS`, lets a
JPEG decode at a reduced scale, and box-reduces what is decoded to at most
:data:`WORK_PIXELS`, so a photo of a digit costs tens of megabytes, not gigabytes.
"""

from __future__ import annotations

import math
from typing import Any

from nnx.io import BadFile

MAX_PIXELS = 64_000_000  # a 48-megapixel phone photo fits; decoded as RGBA: 256 MB at most
WORK_PIXELS = 4_000_000  # 2000x2000: a digit keeps far more detail than its 20x20 box needs


def load(img: Any) -> Any:
    """The opened PIL image ``img`` decoded, at most :data:`WORK_PIXELS` in size (a new
    image if reduced); :class:`BadFile` if its header declares too many pixels."""
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise BadFile(f"is {w}x{h} pixels, more than the {MAX_PIXELS:,} nnx reads; scale it "
                      "down")
    factor = math.ceil(math.sqrt(w * h / WORK_PIXELS)) if w * h > WORK_PIXELS else 1
    if factor > 1 and img.format == "JPEG":  # decoded at 1/2, 1/4 or 1/8 of its size
        img.draft(img.mode, (w // factor, h // factor))
    img.load()
    w, h = img.size
    factor = math.ceil(math.sqrt(w * h / WORK_PIXELS)) if w * h > WORK_PIXELS else 1
    if factor > 1:
        try:
            img = img.reduce(factor)
        except ValueError:  # a mode reduce does not take (palette, 1-bit): convert first
            img = img.convert("RGBA").reduce(factor)
    return img
