"""Device profiles for predictions: peak FLOP/s, processors, time per dependent level, launch overhead.

A profile describes a machine in the four numbers Brent's theorem with overheads needs:

- ``peak_flops``: the whole device's peak rate in FLOP/s (one unit of depthscope work is one FLOP-like op);
- ``processors`` (P): how many scalar lanes run at once; one lane's rate is ``peak_flops / processors``;
- ``level_time_s`` (t): the time of one dependent level of the DAG (a step of a tree reduction);
- ``launch_overhead_s`` (o): the fixed cost of starting one op (a CUDA kernel launch, an eager dispatch).

Built-in profiles are FP32 on CUDA cores, PyTorch's default for float32 matmuls
(``torch.backends.cuda.matmul.allow_tf32`` is False unless set); docs/predict-and-validate.md gives the
sources of every figure and the TF32 alternatives. A TOML file gives the same keys (``base = "h100"`` starts
from a built-in profile and overrides some of its figures).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

from depthscope.errors import InputError

FIELDS = ("peak_flops", "processors", "level_time_s", "launch_overhead_s")
OPTIONAL = ("name", "description", "base", "sources")


@dataclass(frozen=True)
class DeviceProfile:
    """One device in the numbers Brent's theorem needs (all times in seconds)."""

    name: str
    peak_flops: float  # FLOP/s, whole device
    processors: int  # P: scalar lanes working at once
    level_time_s: float  # t: one dependent level
    launch_overhead_s: float  # o: starting one op (kernel launch or eager dispatch)
    description: str = ""
    sources: dict = field(default_factory=dict)  # field -> where the figure comes from

    @property
    def lane_flops(self) -> float:
        """One processor's rate, peak / P."""
        return self.peak_flops / self.processors

    def to_dict(self) -> dict:
        return asdict(self)


# H100 SXM5: 132 SMs x 128 FP32 lanes = 16,896; 16,896 x 2 FLOP (FMA) x 1.98 GHz = 66.9 TFLOP/s (datasheet: 67).
H100 = DeviceProfile(
    name="h100",
    peak_flops=66.9e12,
    processors=16896,
    level_time_s=15e-9,
    launch_overhead_s=5e-6,
    description="NVIDIA H100 SXM5, dense FP32 on CUDA cores (PyTorch's default float32 precision)",
    sources={
        "peak_flops": "NVIDIA H100 Tensor Core GPU datasheet: FP32 67 TFLOPS (SXM); = 16,896 lanes x 2 x 1.98 GHz. "
                      "TF32 tensor cores: 494.7 TFLOPS dense (989 with sparsity)",
        "processors": "NVIDIA H100 whitepaper (Hopper architecture): 132 SMs x 128 FP32 cores = 16,896",
        "level_time_s": "about 30 cycles (shared-memory/L1 round trip, a tree-reduction step) at 1.98 GHz; "
                        "microbenchmarks: Luo et al. 2024, arXiv:2402.13499",
        "launch_overhead_s": "a CUDA kernel launch costs a few microseconds (NVIDIA, 'Getting Started with CUDA "
                             "Graphs'); 5 us taken",
    },
)

# A100 SXM4: 108 SMs x 64 FP32 lanes = 6,912; 6,912 x 2 x 1.41 GHz = 19.5 TFLOP/s (datasheet: 19.5).
A100 = DeviceProfile(
    name="a100",
    peak_flops=19.5e12,
    processors=6912,
    level_time_s=21e-9,
    launch_overhead_s=5e-6,
    description="NVIDIA A100 SXM4, dense FP32 on CUDA cores (PyTorch's default float32 precision)",
    sources={
        "peak_flops": "NVIDIA A100 Tensor Core GPU datasheet: FP32 19.5 TFLOPS; = 6,912 lanes x 2 x 1.41 GHz. "
                      "TF32 tensor cores: 156 TFLOPS dense (312 with sparsity)",
        "processors": "NVIDIA A100 whitepaper (Ampere architecture): 108 SMs x 64 FP32 cores = 6,912",
        "level_time_s": "about 30 cycles (shared-memory/L1 round trip, a tree-reduction step) at 1.41 GHz; "
                        "microbenchmarks: Luo et al. 2024, arXiv:2402.13499",
        "launch_overhead_s": "a CUDA kernel launch costs a few microseconds (NVIDIA, 'Getting Started with CUDA "
                             "Graphs'); 5 us taken",
    },
)

CPU_GHZ = 3.0
CPU_LANES_PER_CORE = 16  # AVX2: 2 FMA units x 8 FP32 lanes
CPU_FLOPS_PER_LANE_CYCLE = 2  # fused multiply-add


def host_cores() -> int:
    """Cores PyTorch uses here (torch.get_num_threads(), else os.cpu_count())."""
    try:
        import torch

        return max(1, int(torch.get_num_threads()))
    except Exception:  # noqa: BLE001 - torch is a dependency; this is belt and braces
        return max(1, os.cpu_count() or 1)


def cpu_profile(cores: int | None = None) -> DeviceProfile:
    """This host's CPU, assuming AVX2 FMA at a nominal 3 GHz (a generic figure; write a TOML file for yours)."""
    cores = host_cores() if cores is None else cores
    lanes = cores * CPU_LANES_PER_CORE
    return DeviceProfile(
        name="cpu",
        peak_flops=lanes * CPU_FLOPS_PER_LANE_CYCLE * CPU_GHZ * 1e9,
        processors=lanes,
        level_time_s=4 / (CPU_GHZ * 1e9),
        launch_overhead_s=2e-6,
        description=f"this host's CPU: {cores} core(s) x AVX2 (2 FMA units x 8 FP32 lanes) at a nominal {CPU_GHZ:g} GHz",
        sources={
            "peak_flops": f"{cores} core(s) x 32 FP32 FLOP/cycle (2 AVX2 FMA units x 8 lanes x 2) x {CPU_GHZ:g} GHz; "
                          "Intel 64 and IA-32 Architectures Optimization Reference Manual (Skylake: 2 FMA ports)",
            "processors": f"{cores} core(s) (torch.get_num_threads()) x 16 FP32 FMA lanes",
            "level_time_s": "FMA latency of 4 cycles (Agner Fog, instruction tables, Skylake) at 3 GHz",
            "launch_overhead_s": "PyTorch eager dispatch of one op from Python: about 1.2 us measured for a tiny "
                                 "torch.add on a Xeon dev machine; 2 us taken",
        },
    )


BUILTIN = {"h100": lambda: H100, "a100": lambda: A100, "cpu": cpu_profile}


def builtin_names() -> list[str]:
    return list(BUILTIN)


def load_profile(name_or_path: str) -> DeviceProfile:
    """A built-in profile by name, or a TOML file's profile; InputError with the reason otherwise."""
    key = name_or_path.strip().lower()
    if key in BUILTIN:
        return BUILTIN[key]()
    if not key.endswith(".toml") and not os.path.exists(name_or_path):
        raise InputError(f"unknown device profile {name_or_path!r}: expected one of {', '.join(BUILTIN)} "
                         "or a path to a .toml file")
    return load_profile_file(name_or_path)


def _toml_loads(text: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError as exc:
            raise InputError("reading a TOML device profile needs Python 3.11+ or `pip install tomli`") from exc
    return tomllib.loads(text)


def load_profile_file(path: str) -> DeviceProfile:
    """Read and validate a TOML profile (flat keys, or under a [profile] table)."""
    if not os.path.exists(path):
        raise InputError(f"device profile {path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"device profile {path}: is a directory, expected a .toml file")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"device profile {path}: cannot read it: {exc}") from exc
    try:
        data = _toml_loads(text)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - tomllib.TOMLDecodeError (or tomli's)
        raise InputError(f"device profile {path}: invalid TOML: {exc}") from exc
    return profile_from_dict(data, path)


def profile_from_dict(data: dict, where: str = "profile") -> DeviceProfile:
    """Validate a profile's keys and values; `base` names a built-in profile to start from."""
    if set(data) == {"profile"} and isinstance(data["profile"], dict):
        data = data["profile"]
    unknown = sorted(set(data) - set(FIELDS) - set(OPTIONAL))
    if unknown:
        raise InputError(f"device profile {where}: unknown key(s) {', '.join(unknown)}; "
                         f"allowed: {', '.join(FIELDS + OPTIONAL)}")
    values: dict = {}
    base = data.get("base")
    if base is not None:
        if not isinstance(base, str) or base.lower() not in BUILTIN:
            raise InputError(f"device profile {where}: base = {base!r} is not a built-in profile "
                             f"({', '.join(BUILTIN)})")
        values = BUILTIN[base.lower()]().to_dict()
        values["sources"] = dict(values["sources"])
    missing = [k for k in FIELDS if k not in data and k not in values]
    if missing:
        raise InputError(f"device profile {where}: missing {', '.join(missing)} (required: {', '.join(FIELDS)}; "
                         "or set base = \"h100\" to inherit them)")
    for key in FIELDS:
        if key not in data:
            continue
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(f"device profile {where}: {key} = {value!r} must be a finite number")
        if key == "processors":
            if float(value) != int(value) or value < 1:
                raise InputError(f"device profile {where}: processors = {value!r} must be a positive integer")
            value = int(value)
        elif key == "peak_flops" and value <= 0:
            raise InputError(f"device profile {where}: peak_flops = {value!r} must be positive (FLOP/s)")
        elif value < 0:
            raise InputError(f"device profile {where}: {key} = {value!r} must be zero or positive (seconds)")
        values[key] = float(value) if key != "processors" else value
        values.setdefault("sources", {})[key] = f"{where}"
    for key in ("name", "description"):
        if key in data and not isinstance(data[key], str):
            raise InputError(f"device profile {where}: {key} must be a string")
    sources = data.get("sources")
    if sources is not None and not isinstance(sources, dict):
        raise InputError(f"device profile {where}: sources must be a table of strings")
    merged_sources = dict(values.get("sources") or {})
    merged_sources.update({str(k): str(v) for k, v in (sources or {}).items()})
    default_name = os.path.splitext(os.path.basename(where))[0]
    return DeviceProfile(
        name=data.get("name") or default_name,
        peak_flops=float(values["peak_flops"]),
        processors=int(values["processors"]),
        level_time_s=float(values["level_time_s"]),
        launch_overhead_s=float(values["launch_overhead_s"]),
        description=data.get("description") or (f"{values.get('description')} (overridden by {where})" if base else ""),
        sources=merged_sources,
    )
