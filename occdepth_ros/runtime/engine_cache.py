"""TensorRT engine cache: one engine per (ONNX file, precision, input shapes, TensorRT
version, GPU compute capability and model, plugin library), validated before use.

An engine is only valid for the exact TensorRT version and GPU it was built on, and a
changed plugin library can change its results; so all of them are in the key. Each
engine has a JSON manifest beside it (the key, the engine's own hash and the model
config); a missing, mismatching or corrupt manifest/engine means "rebuild", never
"load and hope". Plain Python: tested without TensorRT.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

MANIFEST_SUFFIX = ".json"
ENGINE_SUFFIX = ".engine"
CACHE_FORMAT = 1


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def onnx_input_shapes(path: str | Path) -> dict[str, list[int]]:
    """Static input shapes of an ONNX graph (the engine is built for exactly these)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    shapes = {}
    for inp in model.graph.input:
        dims = inp.type.tensor_type.shape.dim
        shapes[inp.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    return shapes


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str
    precision: str
    input_shapes: str  # canonical JSON of {name: shape}
    tensorrt_version: str
    compute_capability: str  # "8.7" for Orin, "9.0" for H100
    plugin_sha256: str  # "" when built without the plugin (ONNX function inlined)
    gpu_model: str  # trt_env.describe_gpu: Orin Nano, NX and AGX share compute capability 8.7

    @classmethod
    def for_build(cls, onnx_path: str | Path, precision: str, tensorrt_version: str, compute_capability: str,
                  plugin_path: str | Path | None, gpu_model: str | None = None) -> "EngineKey":
        """``gpu_model`` None: the current CUDA device's (trt_env.gpu_model)."""
        if gpu_model is None:
            from .trt_env import gpu_model as current_gpu_model

            gpu_model = current_gpu_model()
        return cls(
            onnx_sha256=file_sha256(onnx_path),
            precision=precision,
            input_shapes=json.dumps(onnx_input_shapes(onnx_path), sort_keys=True),
            tensorrt_version=tensorrt_version,
            compute_capability=compute_capability,
            plugin_sha256=file_sha256(plugin_path) if plugin_path else "",
            gpu_model=gpu_model,
        )

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:20]

    def mismatches(self, other: "EngineKey") -> list[str]:
        """Names of the fields that differ (why a cached engine is stale)."""
        return [k for k, v in asdict(self).items() if asdict(other)[k] != v]


@dataclass
class CachedEngine:
    path: Path
    manifest: dict


class EngineCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def engine_path(self, key: EngineKey, stem: str) -> Path:
        return self.root / f"{stem}-{key.precision}-sm{key.compute_capability.replace('.', '')}-{key.digest()}{ENGINE_SUFFIX}"

    def lookup(self, key: EngineKey, stem: str) -> tuple[CachedEngine | None, str]:
        """(engine, "") when a valid engine for ``key`` exists, else (None, why not)."""
        path = self.engine_path(key, stem)
        return validate_engine(path, key)

    def store(self, key: EngineKey, stem: str, engine: bytes, extra: dict | None = None) -> CachedEngine:
        """Write engine and manifest atomically (a crash leaves no half-written engine)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.engine_path(key, stem)
        manifest = {"cache_format": CACHE_FORMAT, "key": asdict(key),
                    "engine_sha256": hashlib.sha256(engine).hexdigest(), "engine_bytes": len(engine),
                    **(extra or {})}
        _atomic_write(path, engine)
        _atomic_write(path.with_suffix(MANIFEST_SUFFIX), json.dumps(manifest, indent=1, sort_keys=True).encode())
        return CachedEngine(path, manifest)


def read_manifest(engine_path: str | Path) -> dict:
    path = Path(engine_path).with_suffix(MANIFEST_SUFFIX)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ValueError(f"no manifest {path.name} beside the engine") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"manifest {path.name} unreadable: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("cache_format") != CACHE_FORMAT or "key" not in manifest:
        raise ValueError(f"manifest {path.name} is not an occdepth_ros engine manifest (format {CACHE_FORMAT})")
    return manifest


def validate_engine(path: str | Path, key: EngineKey | None) -> tuple[CachedEngine | None, str]:
    """Check the manifest, the key (when given) and the engine bytes' hash."""
    path = Path(path)
    if not path.is_file():
        return None, f"no engine at {path}"
    try:
        manifest = read_manifest(path)
        fields = {f.name for f in dataclasses.fields(EngineKey)}
        lacking = sorted(fields - set(manifest["key"]))
        if lacking:  # written before these fields were keyed
            raise ValueError(f"manifest key lacks {', '.join(lacking)} (an older cache): rebuild the engine")
        cached_key = EngineKey(**manifest["key"])
    except (ValueError, TypeError, AttributeError) as exc:
        return None, f"{path.name}: {exc}"
    if key is not None and cached_key != key:
        return None, f"{path.name} is stale: {', '.join(key.mismatches(cached_key))} changed"
    if file_sha256(path) != manifest.get("engine_sha256"):
        return None, f"{path.name} is corrupt: its hash does not match the manifest"
    return CachedEngine(path, manifest), ""


def engine_plugin_problem(manifest: dict, plugin_path: str | Path | None) -> str:
    """Why ``plugin_path`` cannot run the engine of ``manifest`` ("" when it can): an
    engine built with the plugin needs exactly that library (its hash is in the key)."""
    wanted = manifest.get("key", {}).get("plugin_sha256", "")
    built_with = manifest.get("plugin") or "a plugin library"
    if not wanted:
        return ""
    if plugin_path is None:
        return (f"the engine was built with the plugin {built_with} (sha256 {wanted[:12]}...) but no plugin library "
                "is loaded: pass it (--plugin, $OCCDEPTH_TRT_PLUGIN) or rebuild the engine")
    actual = file_sha256(plugin_path)
    if actual != wanted:
        return (f"plugin library {plugin_path} (sha256 {actual[:12]}...) is not the one the engine was built with "
                f"({built_with}, sha256 {wanted[:12]}...): rebuild the engine or load that library")
    return ""


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)
