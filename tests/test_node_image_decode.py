"""decode_image: every supported encoding against a per-pixel reference, zero-copy views,
and every error path."""

from __future__ import annotations

import array
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from occdepth_ros.geometry.image_fit import ImageFit
from occdepth_ros.inference.preprocess import InputError, to_network_input
from occdepth_ros.model.config import ImageConfig
from occdepth_ros.node.image_decode import SUPPORTED_ENCODINGS, decode_image

H, W, PAD = 3, 4, 5  # odd padding catches step/width mix-ups
# encoding -> (bytes per pixel, byte index of R, G, B within a pixel): written out by hand
REFERENCE = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
}


def make_msg(encoding, height=H, width=W, pad=PAD, data=None, step=None):
    bpp = REFERENCE.get(encoding, (3, None))[0]
    step = width * bpp + pad if step is None else step
    if data is None:
        data = bytes((7 * i + 3) % 256 for i in range(step * height))
    return SimpleNamespace(encoding=encoding, height=height, width=width, step=step,
                           is_bigendian=0, data=data)


def reference_rgb(msg):
    """Slow per-pixel decode straight from the byte layout."""
    bpp, idx = REFERENCE[msg.encoding]
    raw = bytes(msg.data)
    out = np.zeros((msg.height, msg.width, 3), np.uint8)
    for r in range(msg.height):
        for c in range(msg.width):
            base = r * msg.step + c * bpp
            out[r, c] = [raw[base + i] for i in idx]
    return out


def test_reference_table_covers_supported_encodings():
    assert set(REFERENCE) == set(SUPPORTED_ENCODINGS)


@pytest.mark.parametrize("encoding", sorted(REFERENCE))
def test_decode_matches_per_pixel_reference(encoding):
    msg = make_msg(encoding)
    img = decode_image(msg)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, reference_rgb(msg))


@pytest.mark.parametrize("encoding", sorted(REFERENCE))
@pytest.mark.parametrize("container", ["bytes", "bytearray", "array", "numpy", "memoryview"])
def test_decode_is_a_read_only_view(encoding, container):
    msg = make_msg(encoding)
    raw = bytes(msg.data)
    buf = {"bytes": raw, "bytearray": bytearray(raw), "array": array.array("B", raw),
           "numpy": np.frombuffer(raw, np.uint8).copy(), "memoryview": memoryview(bytearray(raw))}[container]
    msg.data = buf
    img = decode_image(msg)
    assert np.shares_memory(img, np.frombuffer(buf, np.uint8))  # zero copy
    assert not img.flags.writeable
    np.testing.assert_array_equal(img, reference_rgb(make_msg(encoding, data=raw)))


def test_unpadded_rows_and_plain_list_data():
    msg = make_msg("rgb8", pad=0)
    expected = reference_rgb(msg)
    msg.data = list(bytes(msg.data))  # hand-built messages: copied, still correct
    np.testing.assert_array_equal(decode_image(msg), expected)


def test_encoding_name_is_case_insensitive():
    np.testing.assert_array_equal(decode_image(make_msg("RGB8", pad=0, step=W * 3)),
                                  decode_image(make_msg("rgb8", pad=0)))


@pytest.mark.parametrize("encoding", ["bgr8", "mono8", "bgra8"])
def test_strided_views_feed_the_network_preprocessing(encoding):
    msg = make_msg(encoding, height=8, width=8)
    img = decode_image(msg)
    fit = ImageFit((8, 8), (8, 8), "crop")
    x = to_network_input(img, fit, ImageConfig())
    y = to_network_input(np.ascontiguousarray(reference_rgb(msg)), fit, ImageConfig())
    assert torch.equal(x, y)


@pytest.mark.parametrize("encoding, words", [
    ("yuv422", "YUV"), ("uyvy", "YUV"), ("bayer_rggb8", "Bayer"), ("mono16", "8-bit"),
    ("rgb16", "8-bit"), ("bgra16", "8-bit"), ("32FC1", "8-bit"), ("16UC1", "8-bit"),
    ("8UC3", "ambiguous"), ("jpeg", "unknown encoding"), ("", "empty encoding"),
])
def test_unsupported_encodings_are_named(encoding, words):
    msg = make_msg("rgb8")
    msg.encoding = encoding
    with pytest.raises(InputError, match=words) as exc:
        decode_image(msg, "left")
    assert str(exc.value).startswith("left:") and "rgb8" in str(exc.value)


@pytest.mark.parametrize("height, width", [(0, W), (H, 0), (0, 0)])
def test_zero_size(height, width):
    with pytest.raises(InputError, match="zero size"):
        decode_image(make_msg("rgb8", height=height, width=width, data=b""))


def test_step_smaller_than_row():
    with pytest.raises(InputError, match=r"step 11 is smaller than width \* bytes per pixel .* = 12"):
        decode_image(make_msg("rgb8", step=11))


def test_non_positive_step():
    with pytest.raises(InputError, match="step must be positive"):
        decode_image(make_msg("rgb8", step=0, data=b""))


def test_truncated_data():
    msg = make_msg("bgr8")
    msg.data = bytes(msg.data)[:-1]
    with pytest.raises(InputError, match=r"truncated: 50 bytes, but step \* height = 17 \* 3 = 51"):
        decode_image(msg)


def test_too_long_data():
    msg = make_msg("mono8")
    msg.data = bytes(msg.data) + b"\0"
    with pytest.raises(InputError, match="too long"):
        decode_image(msg)


def test_wrong_buffer_types():
    with pytest.raises(InputError, match="uint8 bytes"):
        decode_image(make_msg("mono8", pad=0, data=np.zeros(H * W, np.uint16)))
    with pytest.raises(InputError, match="not a byte buffer"):
        decode_image(make_msg("mono8", pad=0, data=[300] * (H * W)))
    msg = make_msg("mono8", pad=0)
    msg.data = None
    with pytest.raises(InputError, match="not a byte buffer"):
        decode_image(msg)


def test_too_small_image_is_rejected_by_the_shared_check():
    with pytest.raises(InputError, match="too small"):
        decode_image(make_msg("rgb8", height=1, width=5))
