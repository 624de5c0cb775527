"""Settings: defaults, a TOML file, DRIFTGATE_* variables and overrides, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import Settings, load_settings, settings_environ


def test_precedence(tmp_path: Path) -> None:
    config = tmp_path / "driftgate.toml"
    config.write_text('port = 9000\nhost = "0.0.0.0"\nintra_op_threads = 2\n')
    settings = load_settings(
        {"DRIFTGATE_CONFIG": str(config), "DRIFTGATE_PORT": "9100", "OTHER": "x"},
        host=None,
        workers=3,
    )
    assert (settings.port, settings.host, settings.workers) == (9100, "0.0.0.0", 3)
    assert settings.intra_op_threads == 2
    assert load_settings({}) == Settings()


def test_round_trip_through_the_environment(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, port=1234, workers=2, log_level="warning")
    assert load_settings(settings_environ(settings)) == settings


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DRIFTGATE_PORT": "eighty"}, "port"),
        ({"DRIFTGATE_WORKERS": "0"}, "workers"),
        ({"DRIFTGATE_LOG_LEVEL": "loud"}, "log_level"),
        ({"DRIFTGATE_LOG_FORMAT": "xml"}, "log_format"),
    ],
)
def test_invalid_values_name_the_setting(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_settings(environ)


def test_unknown_keys_in_the_config_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "driftgate.toml"
    config.write_text("prot = 80\n")
    with pytest.raises(ValueError, match="prot"):
        load_settings({"DRIFTGATE_CONFIG": str(config)})


def test_structured_settings_come_as_json() -> None:
    settings = load_settings(
        {
            "DRIFTGATE_MODEL_SAMPLE_RATES": '{"demo": 1.0}',
            "DRIFTGATE_MODEL_BATCHING": '{"demo": {"max_batch_size": 16}}',
        }
    )
    assert (settings.sample_rate_of("demo"), settings.sample_rate_of("other")) == (1.0, 0.1)
    assert settings.batching_of("demo").max_batch_size == 16
    assert settings.batching_of("other").max_batch_size == 1  # off unless configured


def test_drift_decisions_per_model(tmp_path: Path) -> None:
    from gateway.components import monitor_config
    from monitor.drift import VersionWatch
    from registry import ModelRegistry
    from tests.models import affine_model, affine_reference

    settings = load_settings(
        {
            "DRIFTGATE_DRIFT": '{"persistence": 2}',
            "DRIFTGATE_MODEL_DRIFT": '{"pricing": {"alpha": 0.001}}',
        }
    )
    assert settings.drift.persistence == 2
    assert settings.model_drift["pricing"].alpha == 0.001
    assert load_settings(settings_environ(settings)) == settings
    registry = ModelRegistry(tmp_path)
    model, reference = affine_model(tmp_path / "m.onnx"), affine_reference(tmp_path / "r.csv")
    config = monitor_config(settings)
    pricing = VersionWatch(registry.register("pricing", model, reference, target="label"), config)
    other = VersionWatch(registry.register("other", model, reference, target="label"), config)
    assert pricing.detectors["input"].config.alpha == 0.001
    assert other.detectors["input"].config == settings.drift
    with pytest.raises(ValueError, match="alpha"):
        load_settings({"DRIFTGATE_MODEL_DRIFT": '{"pricing": {"alpha": 2}}'})


@pytest.mark.parametrize("key", ["", "short-key"])
def test_hashed_exports_need_a_real_key(key: str) -> None:
    with pytest.raises(ValueError, match="export_hash_key of at least 16"):
        load_settings({"DRIFTGATE_EXPORT_SENSITIVE": "hash", "DRIFTGATE_EXPORT_HASH_KEY": key})
    with pytest.raises(ValueError, match="export_hash_key"):
        Settings(export_sensitive="hash", export_hash_key=key)
    good = {"DRIFTGATE_EXPORT_SENSITIVE": "hash", "DRIFTGATE_EXPORT_HASH_KEY": "k" * 16}
    assert load_settings(good).export_hash_key == "k" * 16


@pytest.mark.parametrize(
    "tokens",
    [
        "alice:admin:fine,THE-WHOLE-SECRET-WITHOUT-COLONS",
        "alice:admin:fine,bob:superuser:THE-SECRET",
        "THE-SECRET:admin:",
        "alice:THE-SECRET",
    ],
)
def test_a_malformed_token_entry_shows_no_part_of_it(tokens: str) -> None:
    with pytest.raises(ValueError, match=r"token entry \d of \d is not NAME:ROLE:SECRET") as error:
        load_settings({"DRIFTGATE_TOKENS": tokens})
    assert "SECRET" not in str(error.value).replace("NAME:ROLE:SECRET", "")
    assert "superuser" not in str(error.value)


def test_a_malformed_token_entry_fails_the_cli_without_the_secret(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "gateway", "models", "list", "--home", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "DRIFTGATE_TOKENS": "ops-admin-hunter2-no-colons"},
    )
    assert done.returncode == 1
    assert "token entry 1 of 1" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout
