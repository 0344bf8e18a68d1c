"""
Which runtime runs which artifact, and how to install it: the runtime registry and load().

Standard library + numpy only; a backend module is imported when an artifact needs it.

    from edgernn.runtimes import load, available_runtimes
    s = load("artifacts/step-int8.tflite", threads=1)   # LiteRTSession, manifest verified
    s = load("artifacts/step-int8.tflite", runtime="tflm")   # the same file on TFLite Micro (TFLMSession)
    available_runtimes()                                 # ['onnxruntime', 'litert'] (installed ones)
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import numpy as np

from edgernn.errors import ArtifactError, ConfigError, MissingDependencyError
from edgernn.runtimes.manifest import FORMAT_RUNTIME, read_manifest

# runtime name -> "module:class", imported on first use. Backend files are named so that they never
# shadow the package they wrap (ort_backend.py, not onnxruntime.py).
RUNTIMES = {
    "onnxruntime": "edgernn.runtimes.ort_backend:OrtSession",
    "litert": "edgernn.runtimes.litert_backend:LiteRTSession",
    "c": "edgernn.runtimes.c_backend:CSession",
    "tflm": "edgernn.runtimes.tflm_backend:TFLMSession",
}
# runtimes that also run another runtime's format, chosen with load(..., runtime=...): the manifest names the
# runtime a file was exported and checked for (FORMAT_RUNTIME); TFLite Micro runs the same .tflite flatbuffers
# as LiteRT (the subset it supports: edgernn.runtimes.tflm_backend.tflm_check says which)
ALSO_RUNS = {"tflm": ("tflite",)}
# runtime -> (pip extra, plain pip line for a device, importable module names that provide it)
INSTALL = {
    "onnxruntime": ("ort", "pip install onnxruntime", ("onnxruntime",)),
    "litert": ("litert", "pip install ai-edge-litert (or tflite-runtime)",
               ("ai_edge_litert", "tflite_runtime", "tensorflow")),
    # the C backend needs no Python package: ctypes + a C compiler (or a library prebuilt for the device)
    "c": ("", "apt-get install gcc (a C compiler; or push a prebuilt library)", ()),
    "tflm": ("tflm", "pip install tflite-micro", ("tflite_micro",)),
}


# what pip installs on a device (an ssh target, the emulated Pi's rootfs) for numpy and each runtime
PIP_NAMES = {"numpy": "numpy", "onnxruntime": "onnxruntime", "litert": "ai-edge-litert", "tflm": "tflite-micro"}


def missing_dependency(runtime: str, detail: str = "") -> MissingDependencyError:
    """The error for a runtime whose package is not installed: names the pip extra and the plain pip line."""
    extra, pip_line, _ = INSTALL[runtime]
    why = f" ({detail})" if detail else ""
    return MissingDependencyError(
        f"the {runtime} runtime is not installed{why}; install it with: pip install 'edgernn[{extra}]' "
        f"(on a device without edgernn's extras: {pip_line})"
    )


def available_runtimes() -> list[str]:
    """Runtime names whose backend package is installed here (checked without importing it)."""
    out = []
    for name, (_, _, modules) in INSTALL.items():
        if name == "c":  # no package: a C compiler on PATH
            from edgernn.runtimes.c_backend import find_compiler

            try:
                find_compiler()
                out.append(name)
            except MissingDependencyError:
                pass
        for mod in modules:
            try:
                if importlib.util.find_spec(mod) is not None:
                    out.append(name)
                    break
            except (ImportError, ValueError):
                continue
    return out


def _check_runtime_name(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")


def backend_class(runtime: str):
    _check_runtime_name(runtime)
    module, cls = RUNTIMES[runtime].split(":")
    return getattr(importlib.import_module(module), cls)


def load(path, threads: int = 1, runtime: str | None = None):
    """Open an artifact with its runtime. Reads `<path>.json`, verifies schema, size + sha256, checks that
    the artifact is meant for `runtime` (default: the manifest's; or one that also runs its format, ALSO_RUNS:
    runtime="tflm" for a .tflite), and returns a Session."""
    if runtime is not None:
        _check_runtime_name(runtime)
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ConfigError(f"threads must be an integer >= 1, got {threads!r}")
    manifest = read_manifest(path)
    name = Path(path).name
    built_for = manifest["runtime"]
    if built_for not in RUNTIMES:
        raise ArtifactError(f"{name} was built for runtime {built_for!r}, which edgernn.runtimes cannot run; "
                            f"supported: {', '.join(RUNTIMES)}")
    expected = FORMAT_RUNTIME.get(manifest["format"])
    if expected != built_for:
        raise ArtifactError(f"{name}: manifest says format {manifest['format']!r} but runtime {built_for!r} "
                            f"(a {manifest['format']} file runs on {expected}); re-run `edgernn export`")
    if runtime is not None and runtime != built_for:
        if manifest["format"] in ALSO_RUNS.get(runtime, ()):
            return backend_class(runtime)(manifest["_artifact_path"], manifest, int(threads))
        fmts = "/".join([f for f, r in FORMAT_RUNTIME.items() if r == runtime] + list(ALSO_RUNS.get(runtime, ())))
        raise ArtifactError(f"{name} is a {manifest['format']} artifact built for {built_for}, not {runtime}: "
                            f"load it with runtime={built_for!r} (or None), or export with --format {fmts} "
                            f"for {runtime}")
    return backend_class(built_for)(manifest["_artifact_path"], manifest, int(threads))
