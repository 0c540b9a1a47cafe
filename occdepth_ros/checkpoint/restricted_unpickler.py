"""Read PyTorch zip checkpoints (torch.save, PyTorch Lightning .ckpt) safely.

Unpickling runs whatever callables a file names, so a hostile checkpoint can run
code. This unpickler resolves only an allow-list: tensor rebuilding, plain
containers, a few NumPy reconstructors. OmegaConf / Lightning / typing objects,
which the official checkpoint carries in ``hyper_parameters``, become inert
placeholders that run nothing. Any other global is refused with its name.
"""

from __future__ import annotations

import _compat_pickle
import collections
import importlib
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError

STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}

# Packages whose objects appear in Lightning hyper-parameters; loaded as placeholders.
INERT_PREFIXES = ("omegaconf", "pytorch_lightning", "lightning_fabric", "lightning", "typing", "pathlib")

_SAFE_BUILTINS = {
    "dict": dict, "list": list, "tuple": tuple, "set": set, "frozenset": frozenset,
    "int": int, "float": float, "str": str, "bool": bool, "bytes": bytes,
    "bytearray": bytearray, "complex": complex, "slice": slice, "range": range,
}


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class Opaque(dict):
    """Placeholder for a pickled object whose class is never imported or run.

    It absorbs whatever the pickle stream feeds it: constructor arguments, BUILD
    state, SETITEMS (dict subclasses such as Lightning's AttributeDict) and APPENDS
    (list subclasses), so the rest of the file can be read."""

    pickled_name = "?"
    args: tuple = ()
    kwargs: dict = {}
    state: Any = None  # class defaults: NEWOBJ builds instances without calling __init__

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.args, self.kwargs, self.state, self.items_list = args, kwargs, None, []

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def append(self, item: Any) -> None:
        self.__dict__.setdefault("items_list", []).append(item)

    def extend(self, items: Any) -> None:
        self.__dict__.setdefault("items_list", []).extend(items)

    def __hash__(self) -> int:  # type: ignore[override]
        return id(self)

    def __repr__(self) -> str:
        return f"<opaque {self.pickled_name}>"


_opaque_classes: dict[str, type] = {}


def _opaque(qualified: str) -> type:
    if qualified not in _opaque_classes:
        _opaque_classes[qualified] = type("Opaque_" + qualified.replace(".", "_"), (Opaque,),
                                          {"pickled_name": qualified})
    return _opaque_classes[qualified]


def _rebuild_tensor(storage: torch.Tensor, offset: int, size, stride, *_: Any) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor):
        raise CheckpointError("malformed checkpoint: tensor without storage")
    needed = offset + sum((s - 1) * st for s, st in zip(size, stride)) + 1 if len(size) and all(size) else 0
    if needed > storage.numel():
        raise CheckpointError("malformed checkpoint: tensor reaches past its storage")
    return storage.as_strided(tuple(size), tuple(stride), offset).clone()


def _rebuild_parameter(data: torch.Tensor, *_: Any) -> torch.Tensor:
    return data


def _allowed(module: str, name: str) -> Any:
    if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
        return _rebuild_tensor
    if module == "torch._utils" and name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
        return _rebuild_parameter
    if module == "torch" and name in STORAGE_DTYPES:
        return _StorageType(STORAGE_DTYPES[name])
    if module == "torch" and name == "Size":
        return torch.Size
    if module == "torch" and name == "device":
        return torch.device
    if module == "collections" and name in ("OrderedDict", "Counter", "defaultdict", "deque"):
        return getattr(collections, name)  # MultiStepLR keeps its milestones in a Counter
    if module == "builtins" and name in _SAFE_BUILTINS:
        return _SAFE_BUILTINS[name]
    if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("_reconstruct", "scalar"):
        return getattr(importlib.import_module("numpy._core.multiarray" if np.__version__ >= "2" else
                                               "numpy.core.multiarray"), name)
    if module == "numpy" and name in ("ndarray", "dtype"):
        return getattr(np, name)
    if module.startswith("numpy.dtypes") or (module == "numpy" and name.endswith("DType")):
        return getattr(__import__(module, fromlist=[name]), name)
    if module.split(".")[0] in INERT_PREFIXES:
        return _opaque(f"{module}.{name}")
    return None


def stream_protocol(data: bytes) -> int:
    """The pickle protocol a stream declares (its PROTO opcode); 0 or 1 when it has none."""
    return data[1] if len(data) > 1 and data[0] == pickle.PROTO[0] else 0


def python3_name(module: str, name: str) -> tuple[str, str]:
    """A Python 2 global name as Python 3 spells it, mapped exactly as the standard
    unpickler maps it for protocols below 3 (torch.save writes protocol 2, so the class
    ``int`` arrives as ``__builtin__.long`` and ``str`` as ``__builtin__.unicode``)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, storages: "StorageReader", source: str) -> None:
        super().__init__(io.BytesIO(data))
        self._storages = storages
        self._source = source
        self._python2_names = stream_protocol(data) < 3

    def find_class(self, module: str, name: str) -> Any:
        # Overriding find_class skips the standard Python 2 name mapping, so do it here,
        # before the allow-list sees the name.
        mapped = python3_name(module, name) if self._python2_names else (module, name)
        obj = _allowed(*mapped)
        if obj is None:
            spelled = f"{module}.{name}"
            as_py3 = "" if mapped == (module, name) else f" (Python 3: '{mapped[0]}.{mapped[1]}')"
            raise CheckpointError(
                f"{self._source}: refusing to load '{spelled}'{as_py3}: a checkpoint may only hold "
                "tensors, plain containers and inert OmegaConf/Lightning metadata"
            )
        return obj

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"{self._source}: unsupported persistent id {pid!r:.80}")
        # pid[3] is where the storage lived when saved ("cpu", "cuda:0" for a file written
        # during GPU training); every storage is read into CPU memory regardless.
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"{self._source}: unsupported storage type {storage_type!r}")
        return self._storages.read(key, storage_type.dtype, numel)


class StorageReader:
    """Tensor storages of a torch zip archive, read on demand."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, source: str) -> None:
        self._zip, self._prefix, self._source = archive, prefix, source
        self._cache: dict[str, torch.Tensor] = {}

    def read(self, key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        if key not in self._cache:
            try:
                raw = self._zip.read(f"{self._prefix}data/{key}")
            except KeyError as exc:
                raise CheckpointError(f"{self._source}: storage {key} is missing (truncated file?)") from exc
            itemsize = torch.empty((), dtype=dtype).element_size()
            if len(raw) < numel * itemsize:
                raise CheckpointError(f"{self._source}: storage {key} is truncated")
            self._cache[key] = torch.frombuffer(bytearray(raw[: numel * itemsize]), dtype=dtype)
        return self._cache[key]


def load_torch_zip(path: str | Path) -> Any:
    """Unpickle a torch zip checkpoint with the restricted unpickler."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{source} is not a zip-format PyTorch checkpoint (torch >= 1.6 format expected); "
            "it may be corrupt, truncated, or a legacy file that must be re-saved with torch.save"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pkl = [n for n in names if n.endswith("data.pkl")]
            if len(pkl) != 1:
                raise CheckpointError(f"{source}: expected one data.pkl in the archive, found {len(pkl)}")
            prefix = pkl[0][: -len("data.pkl")]
            order = f"{prefix}byteorder"
            if order in names and archive.read(order).strip() != b"little":
                raise CheckpointError(f"{source}: big-endian checkpoints are not supported")
            storages = StorageReader(archive, prefix, source)
            return RestrictedUnpickler(archive.read(pkl[0]), storages, source).load()
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError, TypeError,
            AttributeError, IndexError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{source}: cannot read checkpoint ({type(exc).__name__}: {exc})") from exc
