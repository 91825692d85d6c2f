"""Fargate task sizes, and Plan's argument checks (which precede any AWS call)."""

import pytest

from starburst_sdk import Plan, _plan
from starburst_sdk._resources import (
    VALID_SIZES,
    TaskSize,
    parse_cpu,
    parse_memory,
    task_size,
)


@pytest.mark.parametrize(
    ("cpu", "memory", "units", "mib"),
    [
        (0.25, "512MB", 256, 512),
        (0.25, 2048, 256, 2048),
        (0.5, "1GB", 512, 1024),
        (1, "4GB", 1024, 4096),
        (1, "4 GiB", 1024, 4096),
        (1, "4096", 1024, 4096),
        (1, 4096, 1024, 4096),
        (1, 4096.0, 1024, 4096),
        (1, "4g", 1024, 4096),
        ("2", "16GB", 2048, 16384),
        ("1 vCPU", "2GB", 1024, 2048),
        (1024, "8GB", 1024, 8192),
        (4, "30GB", 4096, 30720),
        (8, "60GB", 8192, 61440),
        (16, "120GB", 16384, 122880),
    ],
)
def test_resources_task_size_accepts_valid_pairs(cpu, memory, units, mib):
    assert task_size(cpu, memory) == TaskSize(units, mib)


@pytest.mark.parametrize(
    ("cpu", "memory"),
    [
        (0.25, "4GB"),
        (1, "1GB"),
        (1, "9GB"),
        (2, "3GB"),
        (8, "18GB"),
        (16, "36GB"),
        (0.5, "0.5GB"),
        (4, "31GB"),
    ],
)
def test_resources_task_size_rejects_invalid_pairs_naming_choices(cpu, memory):
    with pytest.raises(ValueError) as info:
        task_size(cpu, memory)
    text = str(info.value)
    allowed = VALID_SIZES[parse_cpu(cpu)]
    assert f"{allowed[0] / 1024:g}GB" in text and f"{allowed[-1] / 1024:g}GB" in text
    assert "memory=" in text


@pytest.mark.parametrize("cpu", [3, 0.3, "3", 32, 0, -1, "lots"])
def test_resources_parse_cpu_rejects_non_fargate_sizes_naming_choices(cpu):
    with pytest.raises(ValueError) as info:
        parse_cpu(cpu)
    assert "cpu=" in str(info.value)
    if cpu != "lots":
        assert "0.25, 0.5, 1, 2, 4, 8, 16" in str(info.value)


@pytest.mark.parametrize("value", [True, False])
def test_resources_bools_are_rejected(value):
    with pytest.raises(TypeError, match="cpu"):
        parse_cpu(value)
    with pytest.raises(TypeError, match="memory"):
        parse_memory(value)
    with pytest.raises(TypeError):
        task_size(1, value)


@pytest.mark.parametrize(
    "memory", ["4TB", "four GB", "", "GB", "-4GB", "4.5.1GB", "0.3MB", 4096.5]
)
def test_resources_parse_memory_rejects_nonsense(memory):
    with pytest.raises(ValueError, match="memory"):
        parse_memory(memory)


@pytest.mark.parametrize("memory", [[4096], None, object()])
def test_resources_parse_memory_rejects_wrong_types(memory):
    with pytest.raises(TypeError, match="memory"):
        parse_memory(memory)


@pytest.mark.parametrize("cpu", [[1], None, object()])
def test_resources_parse_cpu_rejects_wrong_types(cpu):
    with pytest.raises(TypeError, match="cpu"):
        parse_cpu(cpu)


def test_resources_default_memory_is_two_gb_per_vcpu_within_range():
    assert task_size(0.25, None).memory_mib == 512
    assert task_size(1, None).memory_mib == 2048
    assert task_size(2, None).memory_mib == 4096
    assert task_size(16, None).memory_mib == 32768
    for units in VALID_SIZES:
        size = task_size(units / 1024, None)
        assert size.memory_mib in VALID_SIZES[units]


def test_resources_task_size_str():
    assert str(task_size(0.5, "1GB")) == "0.5 vCPU, 1 GB"


@pytest.fixture
def no_aws(monkeypatch):
    """Any attempt to build AWS clients fails the test."""

    def boom(*a, **k):
        raise AssertionError("Plan touched AWS before validating its arguments")

    monkeypatch.setattr(_plan, "Clients", boom)
    monkeypatch.setattr(_plan, "load_config", boom)


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"workers": 0}, ValueError, "workers"),
        ({"workers": -3}, ValueError, "workers"),
        ({"workers": 2.5}, TypeError, "workers"),
        ({"workers": True}, TypeError, "workers"),
        ({"workers": "4"}, TypeError, "workers"),
        ({"max_attempts": 0}, ValueError, "max_attempts"),
        ({"timeout": -1}, ValueError, "timeout"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": "60"}, TypeError, "timeout"),
        ({"cpu": 3}, ValueError, "cpu"),
        ({"cpu": True}, TypeError, "cpu"),
        ({"cpu": 1, "memory": "1GB"}, ValueError, "memory"),
        ({"memory": False}, TypeError, "memory"),
        ({"idle_timeout": 0}, ValueError, "idle_timeout"),
        ({"chunksize": 0}, ValueError, "chunksize"),
        ({"max_tasks_per_worker": -1}, ValueError, "max_tasks_per_worker"),
        ({"vcpu_quota": 0}, ValueError, "vcpu_quota"),
        ({"environment": {"A": 1}}, TypeError, "environment"),
    ],
)
def test_plan_arguments_are_checked_before_any_aws_call(no_aws, kwargs, exc, name):
    with pytest.raises(exc, match=name):
        Plan(**kwargs)
