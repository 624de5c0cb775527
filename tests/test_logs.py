"""Logs: deployment changes said in words, the text and JSON formats with the call's fields,
the access log of infer calls, secrets taken out of every line."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient
from opentelemetry.sdk.trace import TracerProvider

from gateway.app import create_app
from gateway.logs import ACCESS_LOGGER, AccessHandler, Redactor, configure
from gateway.settings import Settings
from registry.deployment import Canary, Deployment, Shadow, describe_change
from registry.rollout import Evaluation, RolloutConfig, RolloutState
from tests.conftest import ADMIN_TOKEN

AFFINE = {"id": "r-7", "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                   "data": [1, 2, 3, 4]}]}  # fmt: skip
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
STABLE = Deployment(model="demo", stable=1, revision=3)
ROLLOUT = RolloutState(
    version=2, status="running", config=RolloutConfig(), started_at=1.0, started_by="alice"
)


@pytest.mark.parametrize(
    ("before", "after", "words"),
    [
        (None, STABLE, "stable 1"),
        (
            None,
            Deployment(
                model="demo",
                stable=1,
                canary=Canary(version=2, weight=10),
                shadows=(Shadow(version=3),),
            ),
            "stable 1, canary 2 at 10%, shadow 3 at 100%",
        ),
        (STABLE, Deployment(model="demo", stable=2, revision=4), "stable 1 -> 2"),
        (
            STABLE,
            Deployment(model="demo", stable=1, canary=Canary(version=2, weight=2.5)),
            "canary 2 at 2.5%",
        ),
        (
            Deployment(model="demo", stable=1, canary=Canary(version=2, weight=10)),
            Deployment(model="demo", stable=1, canary=Canary(version=2, weight=25)),
            "canary 2 10% -> 25%",
        ),
        (
            Deployment(model="demo", stable=1, canary=Canary(version=2, weight=10)),
            Deployment(model="demo", stable=1, canary=Canary(version=3, weight=5)),
            "canary 2 at 10% replaced by 3 at 5%",
        ),
        (
            Deployment(model="demo", stable=1, canary=Canary(version=2, weight=10)),
            Deployment(model="demo", stable=1),
            "canary 2 removed",
        ),
        (
            Deployment(model="demo", stable=1, canary=Canary(version=2, weight=50)),
            Deployment(model="demo", stable=2),
            "canary 2 promoted (stable was 1)",
        ),
        (
            Deployment(model="demo", stable=1, shadows=(Shadow(version=2), Shadow(version=3))),
            Deployment(
                model="demo", stable=1, shadows=(Shadow(version=3, percent=50), Shadow(version=4))
            ),
            "shadow 2 removed, shadow 3 100% -> 50%, shadow 4 at 100%",
        ),
        (
            STABLE,
            Deployment(model="demo", stable=1, canary=Canary(version=2, weight=5), rollout=ROLLOUT),
            "canary 2 at 5%, rollout of 2 started",
        ),
        (
            Deployment(model="demo", stable=1, canary=Canary(version=2, weight=5), rollout=ROLLOUT),
            Deployment(
                model="demo",
                stable=1,
                canary=Canary(version=2, weight=25),
                rollout=RolloutState(
                    version=2,
                    status="running",
                    config=RolloutConfig(),
                    started_at=1.0,
                    started_by="alice",
                    step=1,
                    evaluations=1,
                    last=Evaluation(at=2.0, weight=5, verdict="pass", gates=()),
                ),
            ),
            "canary 2 5% -> 25%, evaluation 1 pass",
        ),
        (
            Deployment(model="demo", stable=1, canary=Canary(version=2, weight=5), rollout=ROLLOUT),
            Deployment(
                model="demo",
                stable=1,
                canary=Canary(version=2, weight=0),
                rollout=RolloutState(
                    version=2,
                    status="aborted",
                    config=RolloutConfig(),
                    started_at=1.0,
                    started_by="alice",
                ),
            ),
            "canary 2 5% -> 0%, rollout of 2 running -> aborted",
        ),
        (STABLE, Deployment(model="demo", stable=1, revision=9), "no change"),
    ],
)
def test_a_deployment_change_in_words(
    before: Deployment | None, after: Deployment, words: str
) -> None:
    assert describe_change(before, after) == words


def test_an_applied_change_is_one_readable_line(
    client: TestClient[Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.deployments")
    policy = {"stable": 2, "canary": {"version": 1, "weight": 10}, "reason": 'try "v1"'}
    assert client.put("/admin/models/affine/deployment", json=policy, headers=ADMIN).is_success
    policy["canary"] = {"version": 1, "weight": 25}
    del policy["reason"]
    assert client.put("/admin/models/affine/deployment", json=policy, headers=ADMIN).is_success
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.deployments"]
    assert lines[-2:] == [
        'deployment of affine revision 2 (by alice: "try \\"v1\\""): canary 1 at 10%',
        "deployment of affine revision 3 (by alice): canary 1 10% -> 25%",
    ]
    assert all(
        r.__dict__["model"] == "affine" for r in caplog.records if r.name.startswith("gateway.dep")
    )


@pytest.fixture
def logging_state() -> Iterator[None]:
    """Whatever `configure` changes in this process's logging, put back."""
    root, access = logging.getLogger(), logging.getLogger(ACCESS_LOGGER)
    saved = (root.handlers[:], root.level, access.handlers[:], access.level, access.propagate)
    yield
    for handler in access.handlers:
        if handler not in saved[2]:
            handler.close()
    root.handlers[:], root.level = saved[0], saved[1]
    logging.captureWarnings(False)
    access.handlers[:], access.level, access.propagate = saved[2], saved[3], saved[4]


@pytest.mark.usefixtures("logging_state")
def test_json_lines_carry_the_calls_fields_and_its_trace() -> None:
    stream = io.StringIO()
    configure(Settings(log_format="json", log_level="info"), stream)
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("call") as span:
        logging.getLogger("gateway.test").warning(
            "shadow %s failed", "demo", extra={"model": "demo", "version": 3, "role": "shadow"}
        )
    logging.getLogger("gateway.test").debug("not at info")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("gateway.test").exception("it failed\non two lines")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["time"].endswith("Z")
    assert {key: first[key] for key in ("level", "logger", "message", "model", "version")} == {
        "level": "WARNING",
        "logger": "gateway.test",
        "message": "shadow demo failed",
        "model": "demo",
        "version": 3,
    }
    assert first["role"] == "shadow"
    assert first["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert first["span_id"] == f"{span.get_span_context().span_id:016x}"
    assert second["message"] == "it failed\non two lines"
    assert "RuntimeError: boom" in second["exception"]
    assert "trace_id" not in second


@pytest.mark.usefixtures("logging_state")
def test_text_lines_are_one_line_with_the_calls_fields() -> None:
    stream = io.StringIO()
    configure(Settings(log_format="text"), stream)
    logging.getLogger("uvicorn.error").info("a\nforged line", extra={"model": "demo"})
    (line,) = stream.getvalue().splitlines()
    assert line.endswith(" INFO uvicorn.error: a\\nforged line model=demo")


def test_secrets_and_url_credentials_are_taken_out() -> None:
    redact = Redactor.of(
        Settings(
            tokens="ops:admin:token-secret-1,ci:read:abc",
            redis_url="redis://user:redis-pass@redis:6379/0",
            retraining_webhook="https://hooks.example/x?key=webhook-key",
            export_sensitive="hash",
            export_hash_key="0123456789abcdef-key",
        )
    )
    text = (
        "token-secret-1 0123456789abcdef-key redis-pass webhook-key abc "
        "'https://u:p@example.org/path?q=1#frag' redis://:other@host:1/0 /v2/models/a?b=c"
    )
    assert redact(text) == (
        "*** *** *** *** abc 'https://***@example.org/path?***' redis://***@host:1/0 "
        "/v2/models/a?b=c"  # a path is not a URL; 'abc' is too short to be blanked
    )


def test_the_access_log_has_a_line_per_infer_call(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    logged = Settings(home=settings.home, access_log=True)
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    with TestClient(app=create_app(logged)) as client:
        headers = {"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"}
        assert client.post("/v2/models/affine/infer", json=AFFINE, headers=headers).is_success
        assert client.post("/v2/models/affine/versions/9/infer", json=AFFINE).status_code == 404
        assert client.get("/v2/models/affine").is_success  # not an infer call: no line
    ok, missing = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert ok.getMessage().startswith("POST /v2/models/affine/infer 200 in ")
    fields = ("method", "path", "status", "model", "version", "role", "request_id", "trace_id")
    assert {name: ok.__dict__[name] for name in fields} == {
        "method": "POST",
        "path": "/v2/models/affine/infer",
        "status": 200,
        "model": "affine",
        "version": 2,
        "role": "stable",
        "request_id": "r-7",
        "trace_id": trace_id,  # the caller's, although tracing is off
    }
    assert ok.__dict__["latency_ms"] > 0
    assert {name: missing.__dict__.get(name) for name in fields} == {
        "method": "POST",
        "path": "/v2/models/affine/versions/9/infer",
        "status": 404,
        "model": "affine",
        "version": 9,
        "role": None,
        "request_id": None,
        "trace_id": None,
    }


def test_the_access_writer_drops_what_it_cannot_keep_up_with() -> None:
    release, written = threading.Event(), []

    class Slow(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            release.wait(5)
            written.append(record.getMessage())

    handler = AccessHandler(Slow(), capacity=2)
    logger = logging.getLogger("tests.access")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for index in range(10):
            logger.warning("line %d", index)  # never waits for the writer
        assert handler.dropped >= 10 - 3  # the writer holds one, the queue two
        release.set()
    finally:
        logger.removeHandler(handler)
        handler.close()  # writes what was queued
    assert len(written) == 10 - handler.dropped
    assert written[0] == "line 0"
