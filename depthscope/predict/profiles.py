"""Device profiles by name or from a TOML file: the built-in ones (depthscope.predict.devices) and validation.

A TOML file gives the keys of a built-in profile: the four Brent figures (``peak_flops``, ``processors``,
``level_time_s``, ``launch_overhead_s``), optionally ``memory_bandwidth`` (bytes/s) and ``fast_memory_bytes``
(M, bytes) for the roofline; ``base = "h100"`` starts from a built-in profile and overrides some of its figures.
"""

from __future__ import annotations

import math
import os

from depthscope.errors import InputError
from depthscope.predict.devices import (  # noqa: F401 - re-exported: the profiles by name
    A100,
    A100_40GB,
    BUILTIN,
    H100,
    H200,
    DeviceProfile,
    cpu_profile,
    host_cores,
)

FIELDS = ("peak_flops", "processors", "level_time_s", "launch_overhead_s")
ROOFLINE = ("memory_bandwidth", "fast_memory_bytes")  # optional: without them the roofline is not drawn
OPTIONAL = ("name", "description", "base", "sources") + ROOFLINE


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
    for key in FIELDS + ROOFLINE:
        if key not in data:
            continue
        values[key] = checked_number(key, data[key], where)
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
        memory_bandwidth=values.get("memory_bandwidth"),
        fast_memory_bytes=values.get("fast_memory_bytes"),
        description=data.get("description") or (f"{values.get('description')} (overridden by {where})" if base else ""),
        sources=merged_sources,
    )


def checked_number(key: str, value, where: str):
    """One profile figure, validated: finite, positive where it divides, integral for counts and sizes."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"device profile {where}: {key} = {value!r} must be a finite number")
    if key in ("processors", "fast_memory_bytes"):
        if float(value) != int(value) or value < 1:
            raise InputError(f"device profile {where}: {key} = {value!r} must be a positive integer")
        return int(value)
    if key == "peak_flops" and value <= 0:
        raise InputError(f"device profile {where}: peak_flops = {value!r} must be positive (FLOP/s)")
    if key == "memory_bandwidth" and value <= 0:
        raise InputError(f"device profile {where}: memory_bandwidth = {value!r} must be positive (bytes/s)")
    if value < 0:
        raise InputError(f"device profile {where}: {key} = {value!r} must be zero or positive (seconds)")
    return float(value)
