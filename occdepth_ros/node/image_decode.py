"""sensor_msgs/Image fields -> (H, W, 3) uint8 RGB without copying where possible.

Works on anything with ``encoding, height, width, step, is_bigendian, data`` (an rclpy
message, a rosbags message, a test stub). Supported encodings are the 8-bit ones whose
RGB channels can be addressed with strides, so the result is a read-only *view* of
``data`` (no copy) in every supported case:

* ``rgb8`` / ``rgba8``: channel stride +1, alpha skipped by the pixel stride;
* ``bgr8`` / ``bgra8``: the same bytes read from the blue byte backwards (stride -1);
* ``mono8``: one byte broadcast to three channels (channel stride 0).

Rejected, with a message naming the encoding: 16-bit and float encodings (the network
was trained on 8-bit colour; scaling 16-bit data whose real bit depth is unknown, e.g.
12-bit sensors, would silently darken the input), Bayer patterns and YUV (debayer or
convert upstream, e.g. image_proc), and OpenCV type names like ``8UC3`` whose channel
order is ambiguous. ``is_bigendian`` is irrelevant for 8-bit data and ignored.

The buffer must hold exactly ``step * height`` bytes (the sensor_msgs/Image contract);
rows may be padded (``step > width * channels``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..inference.preprocess import InputError, check_image

RGB_CHANNELS = 3


@dataclass(frozen=True)
class PixelLayout:
    """Where R, G and B sit inside one pixel of an 8-bit encoding."""

    bytes_per_pixel: int
    red_offset: int  # byte offset of R within the pixel
    channel_stride: int  # byte step from R to G and from G to B (may be 0 or negative)


SUPPORTED_ENCODINGS: dict[str, PixelLayout] = {
    "rgb8": PixelLayout(3, 0, 1),
    "bgr8": PixelLayout(3, 2, -1),
    "rgba8": PixelLayout(4, 0, 1),
    "bgra8": PixelLayout(4, 2, -1),
    "mono8": PixelLayout(1, 0, 0),
}
_HINT = "publish one of " + ", ".join(SUPPORTED_ENCODINGS) + " (convert upstream, e.g. with image_proc)"


def decode_image(msg: Any, name: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 RGB read-only view of ``msg.data``; InputError says what is wrong."""
    layout = _layout_for(str(msg.encoding), name)
    height, width, step = _dims(msg, name)
    row_bytes = width * layout.bytes_per_pixel
    if step < row_bytes:
        raise InputError(
            f"{name}: step {step} is smaller than width * bytes per pixel = {width} * "
            f"{layout.bytes_per_pixel} = {row_bytes} for {msg.encoding}"
        )
    buf = _byte_buffer(msg.data, name)
    expected = step * height
    if buf.size != expected:
        what = "truncated" if buf.size < expected else "too long"
        raise InputError(
            f"{name}: data {what}: {buf.size} bytes, but step * height = {step} * {height} = {expected}"
        )
    view = np.ndarray(
        shape=(height, width, RGB_CHANNELS),
        dtype=np.uint8,
        buffer=buf,
        offset=layout.red_offset,
        strides=(step, layout.bytes_per_pixel, layout.channel_stride),
    )
    view.flags.writeable = False  # a view of the message: never modify it in place
    return check_image(view, name)


def _layout_for(encoding: str, name: str) -> PixelLayout:
    key = encoding.strip().lower()
    if key in SUPPORTED_ENCODINGS:
        return SUPPORTED_ENCODINGS[key]
    if not key:
        raise InputError(f"{name}: empty encoding; {_HINT}")
    if key.startswith("bayer_"):
        reason = "Bayer images must be debayered first"
    elif key.startswith(("yuv", "uyvy", "yuyv", "nv")):
        reason = "YUV images must be converted to RGB first"
    elif any(bits in key for bits in ("16", "32", "64")):
        reason = "only 8-bit encodings are supported (16-bit/float data of unknown range is not scaled)"
    elif key[:1].isdigit():
        reason = "OpenCV type names leave the channel order ambiguous"
    else:
        reason = "unknown encoding"
    raise InputError(f"{name}: encoding {encoding!r}: {reason}; {_HINT}")


def _dims(msg: Any, name: str) -> tuple[int, int, int]:
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise InputError(f"{name}: zero size image ({width}x{height})")
    if step <= 0:
        raise InputError(f"{name}: step must be positive, got {step}")
    return height, width, step


def _byte_buffer(data: Any, name: str) -> np.ndarray:
    """1-D uint8 array over ``data`` without a copy when it supports the buffer protocol."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise InputError(f"{name}: data must be uint8 bytes, got a {data.dtype} array")
        return np.ascontiguousarray(data).reshape(-1)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        pass
    try:  # a plain sequence of ints (hand-built messages): the only copying path
        return np.asarray(data, dtype=np.uint8).reshape(-1)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"{name}: data is not a byte buffer ({type(data).__name__}: {exc})") from exc
