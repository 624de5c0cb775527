"""The adaptive batcher over a real ONNX Runtime session."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import numpy as np
import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.batching import AdaptiveBatcher
from gateway.errors import ModelRuntimeError, ServiceUnavailableError
from gateway.runtime import OnnxRuntime, batchable
from gateway.settings import Batching, Settings
from registry.signature import open_session, read_signature

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as pool:
        yield pool


def runtime(path: Path, executor: ThreadPoolExecutor, sizes: list[int]) -> OnnxRuntime:
    model = path.read_bytes()
    signature = read_signature(open_session(model))
    return OnnxRuntime(
        model, signature, executor, intra_op_threads=1, observe=lambda rows, _: sizes.append(rows)
    )


async def test_lone_requests_run_alone_and_concurrent_ones_share_batches(
    artifacts: Path, executor: ThreadPoolExecutor
) -> None:
    sizes: list[int] = []
    batcher = AdaptiveBatcher(
        runtime(artifacts / "affine.onnx", executor, sizes), max_batch_size=16
    )
    rng = np.random.default_rng(0)
    rows = [rng.normal(size=(int(rng.integers(1, 4)), 4)).astype(np.float32) for _ in range(60)]
    for row in rows[:5]:  # one at a time: nothing to batch with, nothing waits
        await batcher.predict({"x": row}, ["y", "total"])
    assert sizes == [len(row) for row in rows[:5]]

    alone = runtime(artifacts / "affine.onnx", executor, [])
    expected = [await alone.predict({"x": row}, ["y", "total"]) for row in rows]
    sizes.clear()
    results = await asyncio.gather(*(batcher.predict({"x": row}, ["y", "total"]) for row in rows))
    assert max(sizes) > 4  # requests that arrived during a run were batched
    assert max(sizes) <= 16
    assert sum(sizes) == sum(len(row) for row in rows)
    for (y, total), (y_alone, total_alone) in zip(results, expected, strict=True):
        np.testing.assert_array_equal(y, y_alone)  # identical to unbatched
        np.testing.assert_array_equal(total, total_alone)


async def test_a_failed_batch_fails_only_its_own_requests(
    artifacts: Path, executor: ThreadPoolExecutor
) -> None:
    sizes: list[int] = []
    batcher = AdaptiveBatcher(
        runtime(artifacts / "lookup.onnx", executor, sizes), max_batch_size=64
    )
    good = [np.array([i % 3]) for i in range(10)]
    bad = np.array([7])
    outcomes = await asyncio.gather(
        *(batcher.predict({"index": index}, ["value"]) for index in [*good, bad]),
        return_exceptions=True,
    )
    *answered, failed = outcomes  # the bad request fails alone; its batch is answered
    assert isinstance(failed, ModelRuntimeError)
    assert "indices" in str(failed).lower()
    assert [value.tolist() for (value,) in answered] == [
        [[10.0, 20.0, 30.0][i % 3]] for i in range(10)
    ]
    (value,) = await batcher.predict({"index": np.array([2])}, ["value"])  # the next is served
    assert value.tolist() == [30.0]


async def test_requests_with_other_trailing_shapes_never_share_a_batch(
    artifacts: Path, executor: ThreadPoolExecutor
) -> None:
    sizes: list[int] = []
    batcher = AdaptiveBatcher(
        runtime(artifacts / "passthrough.onnx", executor, sizes), max_batch_size=64
    )
    widths = [1, 2, 3, 1, 2, 3, 1]
    arrays = [np.full((2, width), float(index), np.float32) for index, width in enumerate(widths)]
    results = await asyncio.gather(*(batcher.predict({"x": a}, ["y"]) for a in arrays))
    for array, (y,) in zip(arrays, results, strict=True):
        np.testing.assert_array_equal(y, array)
    assert sum(sizes) == 2 * len(widths)
    assert len(sizes) < len(widths)  # equal widths were batched together


async def test_a_full_queue_refuses_with_503(artifacts: Path, executor: ThreadPoolExecutor) -> None:
    sizes: list[int] = []
    batcher = AdaptiveBatcher(
        runtime(artifacts / "affine.onnx", executor, sizes), max_batch_size=4, max_queued=3
    )
    row = np.zeros((1, 4), np.float32)
    outcomes = await asyncio.gather(
        *(batcher.predict({"x": row}, ["y"]) for _ in range(20)), return_exceptions=True
    )
    refused = [o for o in outcomes if isinstance(o, ServiceUnavailableError)]
    assert refused
    assert "queue is full" in str(refused[0])
    assert len(refused) + sum(not isinstance(o, BaseException) for o in outcomes) == 20


def test_only_signatures_with_a_leading_batch_axis_are_batchable(artifacts: Path) -> None:
    assert batchable(read_signature(open_session((artifacts / "affine.onnx").read_bytes())))
    identity = read_signature(open_session((artifacts / "identity.onnx").read_bytes()))
    assert batchable(identity)


async def test_the_gateway_batches_a_configured_model(settings: Settings) -> None:
    batched = msgspec.structs.replace(
        settings, model_batching={"affine": Batching(max_batch_size=8)}
    )
    rows = np.random.default_rng(1).normal(size=(40, 4)).astype(np.float32)
    async with AsyncTestClient(app=create_app(batched)) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/v2/models/affine/infer",
                    json={
                        "inputs": [
                            {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": row.tolist()}
                        ]
                    },
                )
                for row in rows
            )
        )
        metrics = (await client.get("/metrics")).text
    for row, response in zip(rows, responses, strict=True):
        assert response.status_code == 200, response.text
        y = np.array(response.json()["outputs"][0]["data"], np.float32)
        np.testing.assert_array_equal(y, row + np.float32(2.0))
    assert 'driftgate_queue_duration_seconds_count{model="affine",version="2"}' in metrics


async def test_requests_of_one_loop_tick_share_runs_on_the_loop_and_lone_ones_never_wait(
    artifacts: Path, executor: ThreadPoolExecutor
) -> None:
    sizes: list[int] = []
    model = (artifacts / "affine.onnx").read_bytes()
    inline = OnnxRuntime(
        model,
        read_signature(open_session(model)),
        executor,
        intra_op_threads=1,
        inline_seconds=1.0,  # every run is cheap enough for the loop
        observe=lambda rows, _: sizes.append(rows),
    )
    inline.warm_up()
    sizes.clear()
    batcher = AdaptiveBatcher(inline, max_batch_size=32)
    rows = np.random.default_rng(2).normal(size=(40, 4)).astype(np.float32)
    results = await asyncio.gather(*(batcher.predict({"x": row[None]}, ["y"]) for row in rows))
    # The first ran at once (requests had come alone); the second in its tick showed company,
    # and the rest of the tick's requests were run together, at most 32 rows a run.
    assert sizes == [1, 32, 7]
    (expected,) = inline.run_inline({"x": rows}, ["y"])
    for index, (y,) in enumerate(results):
        np.testing.assert_array_equal(y, expected[index : index + 1])

    sizes.clear()
    await batcher.predict({"x": rows[:1]}, ["y"])  # alone in its tick: a run of its own
    assert sizes == [1]
    await asyncio.sleep(0)  # the next tick
    lone = batcher.predict({"x": rows[:1]}, ["y"])
    with pytest.raises(StopIteration) as done:  # alone again: it ran without waiting at all
        lone.send(None)
    np.testing.assert_array_equal(done.value.value[0], expected[:1])
    assert sizes == [1, 1]
