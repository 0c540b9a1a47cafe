"""The calibration file and the image size it is for, decided once at start-up.

A calibration is only right for the image size it was made for: a 640x480 pair run
through KITTI's 1241x376 intrinsics gives a confident, wrong grid. So the file's size
is part of the calibration, taken (first match wins) from the ``calib_image_size``
parameter, the file itself (stereo YAML image_width/height, a KITTI calib.txt's
``# image_size: W H`` line), or, for a KITTI odometry sequence's calib.txt, the first
image of its ``image_2`` folder. A file with none of these is refused at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..geometry.calib import CalibrationError, StereoCalibration, calibration_file_image_size, load_calibration_file

KITTI_LEFT_FOLDER = "image_2"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class FileCalibration:
    calibration: StereoCalibration
    size_source: str  # where the image size came from, for the start-up log


def image_size_for(calib_file: str | Path, calib_image_size: tuple[int, ...]) -> tuple[tuple[int, int], str]:
    """((height, width), where it came from) of the images ``calib_file`` is for."""
    if calib_image_size:
        w, h = calib_image_size
        return (int(h), int(w)), "parameter calib_image_size"
    recorded = calibration_file_image_size(calib_file)
    if recorded is not None:
        return recorded, f"{calib_file}"
    folder = Path(calib_file).parent / KITTI_LEFT_FOLDER
    if folder.is_dir():
        first = next((p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES), None)
        if first is not None:
            with Image.open(first) as im:
                w, h = im.size
            return (h, w), f"{first}"
    raise CalibrationError(
        f"calib_file {calib_file} does not say which image size it is for: set calib_image_size "
        f"[width, height], add a line '# image_size: <width> <height>' to it (KITTI calib.txt) or "
        f"image_width/image_height (stereo YAML)"
    )


def load_file_calibration(calib_file: str | Path, calib_image_size: tuple[int, ...]) -> FileCalibration:
    size, source = image_size_for(calib_file, calib_image_size)
    return FileCalibration(load_calibration_file(calib_file, size), source)
