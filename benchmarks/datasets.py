"""Real tabular data sets shipped inside installed packages: loaded offline, tuned by nobody.

scikit-learn bundles its small classic sets; the statsmodels wheel carries larger ones (as
CSV files inside the package), big enough for windows of 2,000 rows on each half. Each set
is registered the way users register models: a float64 CSV of the reference rows, a small
scikit-learn pipeline trained on it, exported with skl2onnx (FP32 input `[batch, F]`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from registry import Manifest, ModelRegistry

Floats = npt.NDArray[np.float64]
TARGET = "target"


class Dataset(NamedTuple):
    """One data set: float64 features, a target, and where it came from."""

    name: str
    source: str
    features: tuple[str, ...]
    data: Floats  # [rows, F]
    target: npt.NDArray[np.generic]  # class labels, or values for a regression
    classification: bool


def _sklearn(name: str, loader: str, *, classification: bool) -> Callable[[], Dataset]:
    def load() -> Dataset:
        from sklearn import datasets

        bunch = getattr(datasets, loader)()
        return Dataset(
            name=name,
            source=f"sklearn.datasets.{loader}",
            features=tuple(str(feature) for feature in bunch.feature_names),
            data=np.asarray(bunch.data, dtype=np.float64),
            target=np.asarray(bunch.target),
            classification=classification,
        )

    return load


def _randhie() -> Dataset:
    # RAND Health Insurance Experiment: 20,190 rows; the target is the number of visits.
    from statsmodels.datasets import randhie

    frame = randhie.load_pandas().data
    features = [column for column in frame.columns if column != "mdvis"]
    return Dataset(
        name="randhie",
        source="statsmodels.datasets.randhie",
        features=tuple(features),
        data=frame[features].to_numpy(dtype=np.float64),
        target=frame["mdvis"].to_numpy(dtype=np.float64),
        classification=False,
    )


def _fair() -> Dataset:
    # Fair's extramarital affairs survey: 6,366 rows; the target is "any affair".
    from statsmodels.datasets import fair

    frame = fair.load_pandas().data
    features = [column for column in frame.columns if column != "affairs"]
    return Dataset(
        name="fair",
        source="statsmodels.datasets.fair",
        features=tuple(features),
        data=frame[features].to_numpy(dtype=np.float64),
        target=(frame["affairs"].to_numpy() > 0).astype(np.int64),
        classification=True,
    )


LOADERS: dict[str, Callable[[], Dataset]] = {
    "breast_cancer": _sklearn("breast_cancer", "load_breast_cancer", classification=True),
    "digits": _sklearn("digits", "load_digits", classification=True),
    "diabetes": _sklearn("diabetes", "load_diabetes", classification=False),
    "wine": _sklearn("wine", "load_wine", classification=True),
    "randhie": _randhie,
    "fair": _fair,
}


def load(name: str) -> Dataset:
    """The data set called `name` (a key of `LOADERS`)."""
    return LOADERS[name]()


def register_reference(
    dataset: Dataset, rows: npt.NDArray[np.intp], directory: Path, *, seed: int
) -> Manifest:
    """Register a model trained on `rows` of `dataset`, with those rows as its reference.

    As a user would: the rows go to a float64 CSV (features, then the target), a scaled
    logistic regression (or ridge regression) is trained on them and exported to ONNX with
    an FP32 input `[batch, F]`, and the registry profiles the reference from the CSV.
    """
    import polars as pl
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, target = dataset.data[rows], dataset.target[rows]
    estimator = (
        LogisticRegression(max_iter=2000, random_state=seed) if dataset.classification else Ridge()
    )
    model = make_pipeline(StandardScaler(), estimator)
    model.fit(features.astype(np.float32), target)
    onnx = to_onnx(
        model,
        initial_types=[("input", FloatTensorType([None, features.shape[1]]))],
        options={"zipmap": False} if dataset.classification else None,
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    directory.mkdir(parents=True, exist_ok=True)
    model_path = directory / "model.onnx"
    model_path.write_bytes(onnx.SerializeToString())
    frame = pl.DataFrame(features, schema=list(dataset.features), orient="row")
    reference_path = directory / "reference.csv"
    frame.with_columns(pl.Series(TARGET, target)).write_csv(reference_path)
    registry = ModelRegistry(directory / "registry")
    return registry.register(dataset.name, model_path, reference_path, target=TARGET)
