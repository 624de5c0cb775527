"""Sticky weighted routing: the same key, the same version; shares track weights."""

from __future__ import annotations

import pytest

from gateway.errors import NotFoundError
from gateway.routing import Route, Router
from registry.deployment import Canary, Deployment, PolicyError, Shadow, check_policy


def _router(weight: float, shadows: tuple[Shadow, ...] = ()) -> Router:
    router = Router()
    router.set_policy(
        Deployment(model="m", stable=1, canary=Canary(version=2, weight=weight), shadows=shadows)
    )
    return router


@pytest.mark.parametrize("weight", [0.0, 0.5, 10.0, 20.0, 33.33, 50.0, 99.99, 100.0])
def test_canary_share_of_distinct_keys_is_within_one_point(weight: float) -> None:
    router = _router(weight)
    canary = sum(router.route("m", f"user-{i}").version == 2 for i in range(10_000))
    assert abs(canary / 100 - weight) <= 1.0


def test_same_key_same_version_under_the_same_policy() -> None:
    router = _router(30.0)
    first = [router.route("m", f"k{i}") for i in range(2_000)]
    assert [router.route("m", f"k{i}") for i in range(2_000)] == first
    assert {route.role for route in first} == {"stable", "canary"}


def test_raising_the_weight_only_moves_keys_to_the_canary() -> None:
    low, high = _router(10.0), _router(30.0)
    for i in range(5_000):
        if low.route("m", f"k{i}").role == "canary":
            assert high.route("m", f"k{i}").role == "canary"


def test_without_a_key_calls_are_split_at_random() -> None:
    router = _router(50.0)
    roles = {router.route("m", None).role for _ in range(200)}
    assert roles == {"stable", "canary"}


def test_explicit_versions_bypass_the_split_and_keep_their_role() -> None:
    router = _router(0.0, shadows=(Shadow(version=3, percent=10),))
    assert router.explicit("m", 1) == Route(1, "stable")
    assert router.explicit("m", 2) == Route(2, "canary")
    assert router.explicit("m", 3) == Route(3, "shadow")
    assert router.explicit("m", 9) == Route(9, "explicit")
    with pytest.raises(NotFoundError):
        router.route("unknown", "k")


def test_shadow_draws_mirror_their_percent() -> None:
    router = _router(0.0, shadows=(Shadow(version=3, percent=25.0), Shadow(version=4)))
    draws = [router.shadows("m", f"k{i}") for i in range(10_000)]
    assert abs(sum(3 in d for d in draws) / 100 - 25.0) <= 1.0
    assert all(4 in d for d in draws)


@pytest.mark.parametrize(
    ("deployment", "message"),
    [
        (Deployment(model="m", stable=7), "no version 7"),
        (Deployment(model="m", stable=1, canary=Canary(version=1, weight=5)), "only one role"),
        (Deployment(model="m", stable=1, canary=Canary(version=2, weight=5.005)), "two decimals"),
        (Deployment(model="m", stable=1, shadows=(Shadow(version=3, percent=1),)), "no version 3"),
    ],
)
def test_invalid_policies(deployment: Deployment, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        check_policy(deployment, [1, 2])
