"""Timing on a device: inputs moved there, synchronised calls timed in blocks, the device check, progress bars.

torch (and tqdm, when installed) are imported only when a function needs them.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from depthscope.errors import InputError
from depthscope.predict.devices import A100, A100_40GB, H100, H200, cpu_profile

WARMUP_CALLS = 3
BLOCK_SECONDS = 0.05  # each timed block runs about this long (at least one call)


def to_device(value, device):
    """Tensors in `value` (nested in dicts, lists, tuples and named tuples) moved to `device`."""
    import torch

    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: to_device(v, device) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [to_device(v, device) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value


def sync(device: str) -> None:
    """Wait for queued CUDA work to finish (nothing to wait for on the CPU)."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def time_call(fn, device: str, repeats: int, deadline: float | None) -> dict:
    """Warm up, then time `repeats` blocks of calls with torch.utils.benchmark; median and IQR per call."""
    import torch
    from torch.utils import benchmark

    warm = []
    for _ in range(WARMUP_CALLS):  # the fastest warm-up call sizes the blocks (one slow call does not)
        t0 = time.perf_counter()
        fn()
        sync(device)
        warm.append(time.perf_counter() - t0)
    single = min(warm)
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    number = max(1, int(BLOCK_SECONDS / single)) if single > 0 else 1
    times = []
    cut = False
    for _ in range(repeats):
        if deadline is not None and time.monotonic() >= deadline:
            cut = True
            break
        times.append(float(timer.timeit(number).median))
    arr = np.array(times) if times else np.array([single])
    q1, med, q3 = np.percentile(arr, [25, 50, 75])
    return {"median_s": float(med), "iqr_s": float(q3 - q1), "q1_s": float(q1), "q3_s": float(q3),
            "min_s": float(arr.min()), "max_s": float(arr.max()), "repeats": len(times), "number": number,
            "single_call_s": single, "cut": cut}


def check_device(device: str) -> str:
    """'cpu' or 'cuda'; exit 2 (InputError) when CUDA is asked for and absent."""
    import torch

    if device == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise InputError(f"--device cuda: CUDA is not available (torch {torch.__version__}, {build}; "
                             "torch.cuda.is_available() is False); use --device cpu or run on a machine with a GPU")
        return torch.cuda.get_device_name(0)
    return "cpu"


def default_profile(device: str, device_name: str):
    """The profile when none is given: cpu on the CPU; a100, a100-40gb, h200 or h100 by the CUDA device's name."""
    if device == "cpu":
        return cpu_profile()
    name = device_name.upper()
    if "A100" in name:
        return A100_40GB if "40GB" in name.replace(" ", "") else A100
    return H200 if "H200" in name else H100


def estimate_seconds(prev: dict, work_next: float, repeats: int) -> float:
    """Seconds the next size will take: the last size's single call scaled by the work ratio."""
    ratio = max(1.0, work_next / prev["work"]) if prev["work"] else 1.0
    call = prev["single"] * ratio
    number = max(1, int(BLOCK_SECONDS / call)) if call > 0 else 1
    return max(prev["elapsed"], call * (WARMUP_CALLS + 1 + repeats * number))


def progress_bar(total: int, symbol: str):
    """A progress bar on stderr: tqdm's when installed, else click's (a dependency already); silent off a terminal."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _ClickBar(total, f"timing {symbol}")
    return tqdm(total=total, desc=f"timing {symbol}", unit="size", file=sys.stderr, disable=None, leave=False)


class _ClickBar:
    """The slice of tqdm's interface validate uses, drawn by click.progressbar."""

    def __init__(self, total: int, label: str):
        import click

        self._bar = click.progressbar(length=total, label=label, file=sys.stderr,
                                      item_show_func=lambda _: self._note)
        self._note = ""
        self._bar.__enter__()

    def set_postfix_str(self, text: str, refresh: bool = False):
        self._note = text

    def update(self, n: int = 1):
        self._bar.update(n)

    def close(self):
        self._bar.__exit__(None, None, None)
