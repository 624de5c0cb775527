"""The `driftgate` command line, run as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.version import driftgate_version


def driftgate(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_register_list_show(tmp_path: Path, artifacts: Path) -> None:
    done = driftgate(
        "models",
        "register",
        "churn",
        str(artifacts / "affine.onnx"),
        "--reference",
        str(artifacts / "affine.csv"),
        "--target",
        "label",
        "--description",
        "churn model",
        "--tag",
        "team=growth",
        "--tag",
        "stage=dev",
        "--metric",
        "auc=0.87",
        "--owner",
        "growth-team",
        home=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("registered churn version 1 (sha256 ")
    again = driftgate(
        "models",
        "register",
        "churn",
        str(artifacts / "affine.onnx"),
        "--reference",
        str(artifacts / "affine.parquet"),
        "--target",
        "label",
        home=tmp_path,
    )
    assert "registered churn version 2" in again.stdout

    listing = driftgate("models", "list", home=tmp_path)
    assert listing.stdout.splitlines()[1].split()[:3] == ["churn", "2", "2"]
    assert json.loads(driftgate("models", "list", "--json", home=tmp_path).stdout) == [
        {"name": "churn", "versions": [1, 2], "latest": 2}
    ]
    shown = driftgate("models", "show", "churn", "1", home=tmp_path)
    assert "growth-team" in shown.stdout
    assert "team=growth, stage=dev" in shown.stdout
    assert "affine.csv, 500 rows" in shown.stdout
    manifest = json.loads(driftgate("models", "show", "churn", "1", "--json", home=tmp_path).stdout)
    assert manifest["metrics"] == {"auc": 0.87}
    assert manifest["profile"]["features"][0]["type"] == "numeric"


def test_errors_are_one_clear_line(tmp_path: Path, artifacts: Path) -> None:
    bad_name = driftgate(
        "models",
        "register",
        "../x",
        str(artifacts / "affine.onnx"),
        "--reference",
        str(artifacts / "affine.csv"),
        home=tmp_path,
    )
    assert bad_name.returncode == 1
    assert bad_name.stderr.startswith("driftgate: error: invalid model name '../x'")
    bad_metric = driftgate(
        "models",
        "register",
        "m",
        str(artifacts / "affine.onnx"),
        "--reference",
        str(artifacts / "affine.csv"),
        "--target",
        "label",
        "--metric",
        "auc=high",
        home=tmp_path,
    )
    assert bad_metric.returncode == 1
    assert "'auc=high'" in bad_metric.stderr
    missing = driftgate("models", "show", "ghost", home=tmp_path)
    assert missing.returncode == 1
    assert "'ghost' is not registered" in missing.stderr


def test_exit_codes_help_and_version(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """1 for a command that failed, 2 (argparse's) for a command line that is wrong."""
    home = ["--home", str(tmp_path)]
    assert main(["models", "show", "ghost", *home]) == 1
    usage, helped, version = ["models", "show", *home], ["traffic", "--help"], ["--version"]
    for argv, code in [(usage, 2), (helped, 0), (version, 0)]:
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == code, argv
    out = capsys.readouterr().out
    assert "canary to 0%" in out  # a % in a help string crashed `traffic --help`
    assert out.rstrip().endswith(f"driftgate {driftgate_version()}")


def test_home_from_environment(tmp_path: Path, artifacts: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "models", "init-demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"DRIFTGATE_HOME": str(tmp_path / "elsewhere"), "PATH": ""},
    )
    assert done.returncode == 0, done.stderr
    assert "registered demo version 1" in done.stdout
    assert (tmp_path / "elsewhere" / "models" / "demo" / "1" / "manifest.json").is_file()
