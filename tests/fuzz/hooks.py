"""schemathesis hooks of the fuzz tier, loaded by `st` through `SCHEMATHESIS_HOOKS`: tokens on
the routes behind them, the OIP specification's path templates, and the one documented 500.

Tokens are read from the environment (`test_fuzz.py` sets them). They are set by auth
providers rather than by `[[operations]]` headers in `schemathesis.toml`: schemathesis 4.32
keeps one session per worker, built with the headers of the first operation it tests, so a
token given to one operation went out with the calls of every other.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis
from schemathesis import AuthContext, Case, HookContext, Response

from tests.fuzz.documented import is_documented_model_failure

ADMIN_TOKEN = "DRIFTGATE_FUZZ_ADMIN_TOKEN"
FEEDBACK_TOKEN = "DRIFTGATE_FUZZ_FEEDBACK_TOKEN"


class _Bearer:
    variable = ""

    def get(self, case: Case, context: AuthContext) -> str:
        return os.environ[self.variable]

    def set(self, case: Case, data: str, context: AuthContext) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@schemathesis.auth().apply_to(path_regex="^/admin/")
class AdminToken(_Bearer):
    """Every admin route, with a token of the `admin` role."""

    variable = ADMIN_TOKEN


@schemathesis.auth().apply_to(path="/v1/feedback")
class FeedbackToken(_Bearer):
    """Label feedback, with a token of the `feedback` role, as a labelling pipeline sends it."""

    variable = FEEDBACK_TOKEN


@schemathesis.hook
def before_load_schema(context: HookContext, raw_schema: dict[str, Any]) -> None:
    """The OIP specification writes its path templates as its prose does, `${MODEL_NAME}`,
    where OpenAPI means `{MODEL_NAME}`; read as written, every call would name a model
    `$affine`. The file stays as published, and its paths are read as meant."""
    paths = raw_schema.get("paths") or {}
    raw_schema["paths"] = {path.replace("${", "{"): item for path, item in paths.items()}


@schemathesis.hook
def filter_failure(context: HookContext, failure: Any, case: Case, response: Response) -> bool:
    """Keep every failure but the documented model failure's 500 (`documented.py`)."""
    return not is_documented_model_failure(
        case.formatted_path, response.status_code, response.content
    )
