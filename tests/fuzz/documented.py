"""The one 500 that client input may cause, as both the schemathesis run (`hooks.py`) and the
test that reads its requests back (`test_fuzz.py`) recognise it.

`lookup` (tests/models.py) gathers from a table of three, so an index past 2 fails inside ONNX
Runtime; the gateway answers that as documented: 500 with `the model failed: ...`
(tests/test_bad_input.py pins it). Nothing else is excused: no other path, status or text.
"""

from __future__ import annotations

import re

MODEL_FAILURE_PATH = re.compile(r"^/v2/models/lookup(/versions/[^/]+)?/infer$")
MODEL_FAILURE_BODY = b'{"error":"the model failed: '


def is_documented_model_failure(path: str, status: int, body: bytes) -> bool:
    """Whether a response is the documented failure of the `lookup` model on its input."""
    return (
        status == 500
        and MODEL_FAILURE_PATH.match(path) is not None
        and body.startswith(MODEL_FAILURE_BODY)
    )
