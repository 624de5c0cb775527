"""Each package's `__all__` is sorted and names only what it really exports."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    "package",
    ["gateway", "gateway.grpc", "gateway.ui", "monitor", "monitor.inference_log", "registry"],
)
def test_all_is_sorted_and_importable(package: str) -> None:
    module = importlib.import_module(package)
    names = module.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(module, name) is not None, name
