"""Retrain from a driftgate export, register the new version, and start its rollout.

Wire it as the retraining command and the loop runs unattended:

    DRIFTGATE_RETRAINING_COMMAND="python examples/retrain.py --url http://127.0.0.1:8000"

It reads the retraining event (JSON) on standard input, or takes `--export FILE.parquet
--model NAME`. Ground truth comes from the export's `label` column where label feedback
arrived, else from the stable model's own prediction (`output:label`): self-training that
moves the decision boundary with the inputs until real labels catch up. The new model is
uploaded through the admin API (the same as `driftgate models register`) and rolled out
as a canary, so the gates still decide whether it replaces the stable version.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np
import polars as pl
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, help="the exported Parquet file")
    parser.add_argument("--model", help="the model's name")
    parser.add_argument("--url", default=os.environ.get("DRIFTGATE_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("DRIFTGATE_TOKEN", ""))
    args = parser.parse_args()
    if args.export is None:
        event = json.load(sys.stdin)
        args.export, args.model = Path(event["export"]), event["model"]

    frame = pl.read_parquet(args.export)
    features = [
        c for c in frame.columns if not c.startswith("output:") and c not in ("request_id", "label")
    ]
    truth = frame.get_column("label").cast(pl.Float64, strict=False)
    labels = truth.fill_null(frame.get_column("output:label").cast(pl.Float64)).cast(pl.Int64)
    rows = frame.select(features).to_numpy().astype(np.float32)
    print(f"retraining {args.model} on {len(rows)} rows ({truth.is_not_null().sum()} labelled)")

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(rows, labels.to_numpy())
    onnx = to_onnx(
        model,
        initial_types=[("input", FloatTensorType([None, len(features)]))],
        options={"zipmap": False},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )

    headers = {"Authorization": f"Bearer {args.token}"}
    with (
        tempfile.TemporaryDirectory() as directory,
        httpx.Client(base_url=args.url, headers=headers) as client,
    ):
        reference = Path(directory, "reference.parquet")
        pl.DataFrame(rows, schema=features, orient="row").with_columns(target=labels).write_parquet(
            reference
        )
        uploaded = client.post(
            f"/admin/models/{args.model}/versions",
            files={
                "model": ("model.onnx", onnx.SerializeToString()),
                "reference": ("reference.parquet", reference.read_bytes()),
            },
            data={
                "target": "target",
                "owner": "retraining",
                "description": f"retrained on {args.export.name}",
            },
        )
        uploaded.raise_for_status()
        version = uploaded.json()["version"]
        print(f"registered {args.model} version {version}")
        started = client.post(
            f"/admin/models/{args.model}/rollout",
            json={"version": version, "reason": "retrained after drift"},
        )
        started.raise_for_status()
        print(f"rollout of version {version} started")
    return 0


if __name__ == "__main__":
    sys.exit(main())
