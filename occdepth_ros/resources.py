"""Locate the package's shared files (config/, models/) in every install layout.

A source checkout, a ``pip install`` (data files under ``<prefix>/share``) and a
colcon/ament install (``share/occdepth_ros``) put them in different places.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

PACKAGE_NAME = "occdepth_ros"
SHARE_ENV = "OCCDEPTH_ROS_SHARE"


def _candidates() -> list[Path]:
    out: list[Path] = []
    if os.environ.get(SHARE_ENV):
        out.append(Path(os.environ[SHARE_ENV]))
    # Source checkout / editable install: the repo root sits above the package.
    out.append(Path(__file__).resolve().parent.parent)
    try:  # a real ROS install
        from ament_index_python.packages import get_package_share_directory

        out.append(Path(get_package_share_directory(PACKAGE_NAME)))
    except Exception:  # noqa: BLE001 - ament_index missing or package not registered
        pass
    out.append(Path(sys.prefix) / "share" / PACKAGE_NAME)
    return out


@lru_cache(maxsize=None)
def share_dir() -> Path:
    """The folder that holds ``config/`` (and ``models/``) for this install."""
    for cand in _candidates():
        if (cand / "config" / "classes").is_dir():
            return cand
    tried = ", ".join(str(c) for c in _candidates())
    raise FileNotFoundError(
        f"cannot find the occdepth_ros share folder (config/); tried {tried}. "
        f"Set {SHARE_ENV} to the folder that contains config/."
    )


def config_path(*parts: str) -> Path:
    return share_dir().joinpath("config", *parts)


def model_path(*parts: str) -> Path:
    return share_dir().joinpath("models", *parts)


DEFAULT_MODEL_FILE = "default.safetensors"  # the shipped model (docs/MODEL_CARD.md)


def default_model_path() -> Path:
    return model_path(DEFAULT_MODEL_FILE)


DEFAULT_CLASS_PRIOR_FILE = "default.class_prior.yaml"  # the shipped model's class prior (occdepth-class-prior)


def default_class_prior_path() -> Path:
    return model_path(DEFAULT_CLASS_PRIOR_FILE)


CACHE_ENV = "OCCDEPTH_ROS_CACHE"


def cache_dir(*parts: str) -> Path:
    """Where derived files go (exported ONNX, TensorRT engines, native builds):
    $OCCDEPTH_ROS_CACHE, else $XDG_CACHE_HOME/occdepth_ros, else ~/.cache/occdepth_ros."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / PACKAGE_NAME)
    path = Path(root).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
