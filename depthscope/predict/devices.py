"""The device profile type and the built-in profiles (H100, H200, A100 80 GB and 40 GB, this host's CPU), with sources.

A profile gives peak FLOP/s, lanes, the time of one dependent level, the launch overhead (Brent's theorem with
overheads) and, for the roofline, the memory bandwidth and the fast-memory size M. M is the on-chip memory a
kernel tiles into (shared memory per SM on a GPU, the private L2 per core on a CPU), the M of the I/O bounds the
analysis uses (Hong and Kung 1981 per processor; Dao et al. 2022, whose SRAM is per SM). Sources are cited per
figure in `sources` and in docs/predict-and-validate.md.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

KB = 1024
MB = 1000**2  # NVIDIA's L2 sizes are decimal megabytes in the datasheets; shared memory sizes are KiB


@dataclass(frozen=True)
class DeviceProfile:
    """One device in the numbers Brent's theorem and the roofline need (times in seconds, sizes in bytes)."""

    name: str
    peak_flops: float  # FLOP/s, whole device
    processors: int  # P: scalar lanes working at once
    level_time_s: float  # t: one dependent level
    launch_overhead_s: float  # o: starting one op (kernel launch or eager dispatch)
    description: str = ""
    sources: dict = field(default_factory=dict)  # field -> where the figure comes from
    memory_bandwidth: float | None = None  # bytes/s between slow memory (HBM, DRAM) and the chip
    fast_memory_bytes: int | None = None  # M: the on-chip memory one kernel's tiles live in

    @property
    def lane_flops(self) -> float:
        """One processor's rate, peak / P."""
        return self.peak_flops / self.processors

    @property
    def ridge_intensity(self) -> float | None:
        """The roofline's ridge point peak / bandwidth (ops per byte): above it an op is compute-bound."""
        return self.peak_flops / self.memory_bandwidth if self.memory_bandwidth else None

    def to_dict(self) -> dict:
        return asdict(self)


LAUNCH_SOURCE = ("a CUDA kernel launch costs a few microseconds (NVIDIA, 'Getting Started with CUDA Graphs'); "
                 "5 us taken")


def _level_source(ghz: float) -> str:
    return (f"about 30 cycles (shared-memory/L1 round trip, a tree-reduction step) at {ghz:g} GHz; "
            "microbenchmarks: Luo et al. 2024, arXiv:2402.13499")


# What the cards of one chip share: lanes, clock, shared memory per SM, and where each figure comes from.
HOPPER = {  # GH100 in the SXM5 H100 and the H200: 132 SMs, 50 MB L2, 228 KB shared memory per SM
    # 132 SMs x 128 FP32 lanes = 16,896; 16,896 x 2 FLOP (FMA) x 1.98 GHz = 66.9 TFLOP/s (datasheets: 67)
    "peak_flops": 66.9e12, "processors": 16896, "level_time_s": 15e-9, "fast_memory_bytes": 228 * KB,
    "sources": {
        "peak_flops": "NVIDIA H100 and H200 Tensor Core GPU datasheets: FP32 67 TFLOPS (SXM); = 16,896 lanes x 2 x "
                      "1.98 GHz. TF32 tensor cores: 494.7 TFLOPS dense (989 with sparsity)",
        "processors": "NVIDIA H100 whitepaper (Hopper architecture): 132 SMs x 128 FP32 cores = 16,896",
        "level_time_s": _level_source(1.98),
        "fast_memory_bytes": "NVIDIA Hopper Tuning Guide: shared memory configurable up to 228 KB per SM (227 KB to "
                             "one thread block); the 50 MB L2 is shared by the 132 SMs and not counted in M",
    },
}
AMPERE = {  # GA100 in the A100 SXM4 40 GB and 80 GB: 108 SMs, 40 MB L2, 164 KB shared memory per SM
    # 108 SMs x 64 FP32 lanes = 6,912; 6,912 x 2 x 1.41 GHz = 19.5 TFLOP/s (datasheet: 19.5)
    "peak_flops": 19.5e12, "processors": 6912, "level_time_s": 21e-9, "fast_memory_bytes": 164 * KB,
    "sources": {
        "peak_flops": "NVIDIA A100 Tensor Core GPU datasheet: FP32 19.5 TFLOPS; = 6,912 lanes x 2 x 1.41 GHz. "
                      "TF32 tensor cores: 156 TFLOPS dense (312 with sparsity)",
        "processors": "NVIDIA A100 whitepaper (Ampere architecture): 108 SMs x 64 FP32 cores = 6,912",
        "level_time_s": _level_source(1.41),
        "fast_memory_bytes": "NVIDIA Ampere Tuning Guide: A100 shared memory capacity up to 164 KB per SM; the 40 MB "
                             "L2 is shared by the 108 SMs and not counted in M",
    },
}


def _gpu(chip: dict, name: str, card: str, bandwidth: float, bandwidth_source: str) -> DeviceProfile:
    """One card of a chip: its memory's bandwidth (bytes/s) and where that figure comes from."""
    return DeviceProfile(
        name=name,
        peak_flops=chip["peak_flops"],
        processors=chip["processors"],
        level_time_s=chip["level_time_s"],
        launch_overhead_s=5e-6,
        memory_bandwidth=bandwidth,
        fast_memory_bytes=chip["fast_memory_bytes"],
        description=f"NVIDIA {card}, dense FP32 on CUDA cores (PyTorch's default float32 precision)",
        sources={**chip["sources"], "launch_overhead_s": LAUNCH_SOURCE, "memory_bandwidth": bandwidth_source},
    )


H100 = _gpu(HOPPER, "h100", "H100 SXM5, 80 GB HBM3", 3.35e12,
            "NVIDIA H100 Tensor Core GPU datasheet: GPU memory bandwidth 3.35 TB/s (SXM, HBM3)")
H200 = _gpu(HOPPER, "h200", "H200 SXM, 141 GB HBM3e", 4.8e12,
            "NVIDIA H200 Tensor Core GPU datasheet: GPU memory bandwidth 4.8 TB/s (HBM3e)")
A100 = _gpu(AMPERE, "a100", "A100 SXM4, 80 GB HBM2e", 2.039e12,
            "NVIDIA A100 Tensor Core GPU datasheet: GPU memory bandwidth 2,039 GB/s (80 GB SXM4, HBM2e)")
A100_40GB = _gpu(AMPERE, "a100-40gb", "A100 SXM4, 40 GB HBM2", 1.555e12,
                 "NVIDIA A100 Tensor Core GPU datasheet: GPU memory bandwidth 1,555 GB/s (40 GB SXM4, HBM2)")

CPU_GHZ = 3.0
CPU_LANES_PER_CORE = 16  # AVX2: 2 FMA units x 8 FP32 lanes
CPU_FLOPS_PER_LANE_CYCLE = 2  # fused multiply-add
CPU_BANDWIDTH_PER_CORE = 10e9  # bytes/s one core streams from DRAM (nominal; measured here 12.9 GB/s)
CPU_L2_DEFAULT = 1024 * KB  # private L2 per core when the host does not say (Skylake-SP: 1 MiB)


def host_cores() -> int:
    """Cores PyTorch uses here (torch.get_num_threads(), else os.cpu_count())."""
    try:
        import torch

        return max(1, int(torch.get_num_threads()))
    except Exception:  # noqa: BLE001 - torch is a dependency; this is belt and braces
        return max(1, os.cpu_count() or 1)


def host_l2_bytes(root: str = "/sys/devices/system/cpu/cpu0/cache") -> tuple[int, str]:
    """The L2 of one core and where the figure came from (Linux sysfs, else a default)."""
    units = {"K": KB, "M": KB * KB, "G": KB**3}
    try:
        for entry in sorted(os.listdir(root)):
            with open(os.path.join(root, entry, "level"), encoding="ascii") as fh:
                if fh.read().strip() != "2":
                    continue
            with open(os.path.join(root, entry, "size"), encoding="ascii") as fh:
                text = fh.read().strip()
            size = int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
            if size > 0:
                return size, f"this host's L2 per core ({text}, from {root}/{entry}/size)"
    except (OSError, ValueError, IndexError):
        pass
    return CPU_L2_DEFAULT, "1 MiB L2 per core (Intel Optimization Reference Manual, Skylake-SP); the host gave none"


def cpu_profile(cores: int | None = None) -> DeviceProfile:
    """This host's CPU, assuming AVX2 FMA at a nominal 3 GHz (a generic figure; write a TOML file for yours)."""
    cores = host_cores() if cores is None else cores
    lanes = cores * CPU_LANES_PER_CORE
    l2, l2_source = host_l2_bytes()
    return DeviceProfile(
        name="cpu",
        peak_flops=lanes * CPU_FLOPS_PER_LANE_CYCLE * CPU_GHZ * 1e9,
        processors=lanes,
        level_time_s=4 / (CPU_GHZ * 1e9),
        launch_overhead_s=2e-6,
        memory_bandwidth=cores * CPU_BANDWIDTH_PER_CORE,
        fast_memory_bytes=l2,
        description=f"this host's CPU: {cores} core(s) x AVX2 (2 FMA units x 8 FP32 lanes) at a nominal {CPU_GHZ:g} GHz",
        sources={
            "peak_flops": f"{cores} core(s) x 32 FP32 FLOP/cycle (2 AVX2 FMA units x 8 lanes x 2) x {CPU_GHZ:g} GHz; "
                          "Intel 64 and IA-32 Architectures Optimization Reference Manual (Skylake: 2 FMA ports)",
            "processors": f"{cores} core(s) (torch.get_num_threads()) x 16 FP32 FMA lanes",
            "level_time_s": "FMA latency of 4 cycles (Agner Fog, instruction tables, Skylake) at 3 GHz",
            "launch_overhead_s": "PyTorch eager dispatch of one op from Python: about 1.2 us measured for a tiny "
                                 "torch.add on a Xeon dev machine; 2 us taken",
            "memory_bandwidth": f"{cores} core(s) x 10 GB/s, a nominal DRAM stream rate per core (McCalpin's STREAM "
                                "benchmark measures 10-15 GB/s per server core); a 256 MB torch copy on one core of "
                                "the development VM moved 12.9 GB/s (read plus write)",
            "fast_memory_bytes": l2_source,
        },
    )


BUILTIN = {"h100": lambda: H100, "h200": lambda: H200, "a100": lambda: A100, "a100-40gb": lambda: A100_40GB,
           "cpu": cpu_profile}
