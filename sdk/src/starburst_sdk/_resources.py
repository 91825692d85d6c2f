"""Fargate task sizes: parse what the user wrote, accept only what Fargate runs."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# vCPU units -> allowed memory in MiB (AWS "Task CPU and memory" table).
_GIB = 1024
VALID_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1 * _GIB, 4 * _GIB + 1, _GIB)),
    1024: tuple(range(2 * _GIB, 8 * _GIB + 1, _GIB)),
    2048: tuple(range(4 * _GIB, 16 * _GIB + 1, _GIB)),
    4096: tuple(range(8 * _GIB, 30 * _GIB + 1, _GIB)),
    8192: tuple(range(16 * _GIB, 60 * _GIB + 1, 4 * _GIB)),
    16384: tuple(range(32 * _GIB, 120 * _GIB + 1, 8 * _GIB)),
}
_VCPUS = {units / 1024: units for units in VALID_SIZES}

_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_UNITS = {"": 1, "m": 1, "mb": 1, "mib": 1, "g": _GIB, "gb": _GIB, "gib": _GIB}


@dataclass(frozen=True)
class TaskSize:
    """A valid Fargate task size."""

    cpu_units: int
    memory_mib: int

    @property
    def vcpu(self) -> float:
        return self.cpu_units / 1024

    @property
    def memory_gb(self) -> float:
        return self.memory_mib / _GIB

    def __str__(self) -> str:
        return f"{self.vcpu:g} vCPU, {self.memory_gb:g} GB"


def parse_cpu(cpu: float | int | str) -> int:
    """vCPUs (0.25 ... 16) or CPU units (256 ... 16384) -> CPU units."""
    if isinstance(cpu, bool):
        raise TypeError("cpu must be a number of vCPUs such as 0.25, 1 or 2")
    value: float
    if isinstance(cpu, str):
        text = cpu.strip().lower().removesuffix("vcpu").strip()
        try:
            value = float(text)
        except ValueError:
            raise ValueError(
                f"cpu={cpu!r} is not a number; give vCPUs such as 0.25, 1 or 2"
            ) from None
    elif isinstance(cpu, int | float):
        value = float(cpu)
    else:
        raise TypeError(f"cpu must be a number of vCPUs, not {type(cpu).__name__}")
    if value in _VCPUS:
        return _VCPUS[value]
    if value in VALID_SIZES:
        return int(value)
    allowed = ", ".join(f"{v:g}" for v in _VCPUS)
    raise ValueError(
        f"cpu={cpu!r} is not a Fargate size; choose one of {allowed} vCPUs"
    )


def parse_memory(memory: int | float | str) -> int:
    """ "4GB", "4 GiB", "512MB", "4096" or 4096 (MiB) -> MiB."""
    if isinstance(memory, bool):
        raise TypeError('memory must be a size such as "4GB" or 4096 (MiB)')
    if isinstance(memory, int | float):
        if not math.isfinite(memory):
            raise ValueError(
                f'memory={memory!r} is not a size; write e.g. "4GB", "512MB" or '
                "4096 (MiB)"
            )
        if memory != int(memory):
            raise ValueError(
                f'memory={memory!r}: give whole MiB, or a string like "0.5GB"'
            )
        return int(memory)
    if not isinstance(memory, str):
        raise TypeError(
            f'memory must be a size such as "4GB", not {type(memory).__name__}'
        )
    match = _MEMORY_RE.match(memory)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in _UNITS:
        raise ValueError(
            f'memory={memory!r} is not a size; write e.g. "4GB", "512MB" or 4096 (MiB)'
        )
    mib = float(match.group(1)) * _UNITS[unit]
    if mib != int(mib):
        raise ValueError(f"memory={memory!r} is not a whole number of MiB")
    return int(mib)


def task_size(cpu: float | int | str, memory: int | float | str | None) -> TaskSize:
    """Validate a cpu/memory pair against Fargate's table.

    ``memory=None`` picks twice the vCPUs in GB (Fargate's most common ratio).
    """
    units = parse_cpu(cpu)
    allowed = VALID_SIZES[units]
    if memory is None:
        mib = max(allowed[0], min(allowed[-1], 2 * units))
    else:
        mib = parse_memory(memory)
    if mib not in allowed:
        choices = ", ".join(f"{m / _GIB:g}GB" for m in allowed)
        raise ValueError(
            f"memory={memory!r} ({mib} MiB) does not fit cpu={cpu!r} on Fargate; "
            f"with {units / 1024:g} vCPU choose one of: {choices}"
        )
    return TaskSize(units, mib)
