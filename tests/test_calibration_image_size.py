"""A calibration is used only for the image size it is for: other sizes are refused with
both sizes named, or (opt-in, same aspect ratio) get scaled intrinsics."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from occdepth_ros.geometry.calib import (
    KITTI_IMAGE_SIZE,
    CalibrationError,
    calibration_file_image_size,
    fit_calibration,
    kitti_calib_image_size,
    parse_kitti_calib,
    read_kitti_calib,
    write_kitti_calib,
)
from occdepth_ros.node.file_calibration import image_size_for, load_file_calibration
from occdepth_ros.node.params import NodeParams
from occdepth_ros.node.processor import FrameProcessor
from occdepth_ros.resources import config_path

SHIPPED = config_path("calib", "kitti_odometry_00-02.txt")
KITTI_H, KITTI_W = KITTI_IMAGE_SIZE


def test_the_shipped_kitti_calibration_records_1241x376() -> None:
    assert KITTI_IMAGE_SIZE == (376, 1241)
    assert calibration_file_image_size(SHIPPED) == (376, 1241)
    assert set(read_kitti_calib(SHIPPED)) == {"P0", "P1", "P2", "P3", "Tr"}  # the comment is no matrix


def test_image_size_comment_round_trip_and_errors(tmp_path: Path) -> None:
    m = read_kitti_calib(SHIPPED)
    write_kitti_calib(tmp_path / "a.txt", m, image_size=(370, 1226))
    assert calibration_file_image_size(tmp_path / "a.txt") == (370, 1226)
    write_kitti_calib(tmp_path / "b.txt", m)
    assert calibration_file_image_size(tmp_path / "b.txt") is None
    with pytest.raises(CalibrationError, match="image_size"):
        kitti_calib_image_size("# image_size: 1241\n", "f.txt")
    with pytest.raises(CalibrationError, match="image_size"):
        kitti_calib_image_size("# image_size: 0 376\n", "f.txt")
    assert parse_kitti_calib("# any comment\n" + (tmp_path / "b.txt").read_text()).keys() == m.keys()


def test_stereo_yaml_records_its_size(tmp_path: Path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("left_projection: [1]\nimage_width: 640\nimage_height: 480\n")
    assert calibration_file_image_size(p) == (480, 640)
    p.write_text("left_projection: [1]\nimage_width: 640\n")
    with pytest.raises(CalibrationError, match="image_height"):
        calibration_file_image_size(p)


def test_size_sources_in_order(tmp_path: Path) -> None:
    seq = tmp_path / "08"
    (seq / "image_2").mkdir(parents=True)
    write_kitti_calib(seq / "calib.txt", read_kitti_calib(SHIPPED))
    with pytest.raises(CalibrationError, match="calib_image_size"):
        image_size_for(seq / "calib.txt", ())
    Image.new("RGB", (1226, 370)).save(seq / "image_2" / "000000.png")
    assert image_size_for(seq / "calib.txt", ())[0] == (370, 1226)  # the sequence's first left image
    assert image_size_for(seq / "calib.txt", (640, 480)) == ((480, 640), "parameter calib_image_size")
    assert load_file_calibration(SHIPPED, ()).calibration.image_size == (376, 1241)


def _shipped():
    return load_file_calibration(SHIPPED, ()).calibration


def test_other_size_is_refused_naming_both_sizes() -> None:
    calib = _shipped()
    assert fit_calibration(calib, (376, 1241), False) == (calib, None)
    for allow in (False, True):  # 640x480 has another aspect ratio: refused even with scaling allowed
        with pytest.raises(CalibrationError, match=r"1241x376 .* 640x480"):
            fit_calibration(calib, (480, 640), allow)
    with pytest.raises(CalibrationError, match=r"1241x376 .* 1226x370"):  # KITTI 03-21's size
        fit_calibration(calib, (370, 1226), True)
    with pytest.raises(CalibrationError, match=r"1241x376 .* 620x188"):
        fit_calibration(calib, (188, 620), False)


def test_scaled_intrinsics_project_to_scaled_pixels() -> None:
    """Half-size images: a point's pixel in the scaled calibration is its full-size pixel
    times the size ratio (checked in float64 against the unscaled projection)."""
    calib = _shipped()
    scaled, note = fit_calibration(calib, (188, 620), True)
    assert scaled.image_size == (188, 620) and "scaled" in note and "1241x376" in note
    X = np.array([3.0, -1.2, 17.0, 1.0])
    for P, Ps in zip(calib.projections, scaled.projections):
        u, v, w = P @ X
        us, vs, ws = Ps @ X
        assert us / ws == pytest.approx(u / w * 620 / 1241, rel=1e-12)
        assert vs / ws == pytest.approx(v / w * 188 / 376, rel=1e-12)
    np.testing.assert_array_equal(scaled.T_grid_to_ref, calib.T_grid_to_ref)


def _img(w: int, h: int):
    return SimpleNamespace(width=w, height=h)


def _info(w: int, h: int, p):
    return SimpleNamespace(width=w, height=h, p=list(np.asarray(p, float).ravel()))


def test_processor_file_mode_checks_every_pair() -> None:
    notes: list[str] = []
    proc = FrameProcessor(None, NodeParams().validate(), None, on_note=notes.append)  # engine unused here
    assert proc.calibration(_img(1241, 376), _img(1241, 376), None).image_size == (376, 1241)
    with pytest.raises(CalibrationError, match=r"calib_file .*1241x376.*640x480"):
        proc.calibration(_img(640, 480), _img(640, 480), None)
    scaling = FrameProcessor(None, NodeParams(scale_intrinsics_to_image=True).validate(), None, on_note=notes.append)
    for _ in range(2):
        assert scaling.calibration(_img(620, 188), _img(620, 188), None).image_size == (188, 620)
    assert len(notes) == 1 and "620x188" in notes[0] and "scaled" in notes[0]  # said once per size


def test_processor_camera_info_mode_checks_sizes() -> None:
    m = read_kitti_calib(SHIPPED)
    proc = FrameProcessor(None, NodeParams(calib_file="").validate(), None)
    infos = (_info(1241, 376, m["P2"]), _info(1241, 376, m["P3"]))
    assert proc.calibration(_img(1241, 376), _img(1241, 376), infos).image_size == (376, 1241)
    with pytest.raises(CalibrationError, match=r"camera_info: .*1241x376.*640x480"):
        proc.calibration(_img(640, 480), _img(640, 480), infos)
    with pytest.raises(CalibrationError, match="right one for 640x480"):
        proc.calibration(_img(1241, 376), _img(1241, 376), (infos[0], _info(640, 480, m["P3"])))


def test_calib_image_size_parameter_is_checked() -> None:
    with pytest.raises(ValueError, match="calib_image_size"):
        NodeParams(calib_image_size=(640,)).validate()
    with pytest.raises(ValueError, match="calib_image_size"):
        NodeParams(calib_file="", calib_image_size=(640, 480)).validate()
    assert NodeParams(calib_image_size=(1241, 376)).validate()
