"""Training settings: one pydantic-settings model, its generated flags, EUROVOC_TRAIN_* variables
and profile presets, in that order of priority."""

import pytest
from pydantic import ValidationError

from model_training import cli
from model_training.cli import build_parser, main
from model_training.profiles import PROFILES, TrainConfig


def _train_options() -> set[str]:
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    return {option for action in train._actions for option in action.option_strings}


class _Stopped(Exception):
    pass


def _config_from(argv: list[str], monkeypatch) -> TrainConfig:
    """The TrainConfig that ``eurovoc-train train ARGV`` would train with."""
    seen = []

    def fake_run(config, output, *, resume):
        seen.append(config)
        raise _Stopped

    monkeypatch.setattr("model_training.trainer.run_training", fake_run)
    with pytest.raises(_Stopped):
        main(["train", *argv])
    return seen[0]


def test_every_setting_is_a_generated_flag():
    options = _train_options()
    for name in TrainConfig.model_fields:
        assert "--" + name.replace("_", "-") in options
    assert {"--no-group-by-length", "--output", "--resume"} <= options
    assert not hasattr(cli, "_add_config_flags")  # no hand-made flag generation


def test_flags_beat_environment_beat_profile_beat_defaults(monkeypatch):
    monkeypatch.setenv("EUROVOC_TRAIN_EPOCHS", "4")
    monkeypatch.setenv("EUROVOC_TRAIN_LEARNING_RATE", "0.001")
    monkeypatch.setenv("EUROVOC_MAX_LENGTH", "999")  # the worker's variable: ignored
    monkeypatch.setenv("EUROVOC_DEVICE", "cuda")  # the worker's variable: ignored
    config = _config_from(
        [
            "--profile", "cpu-quick",
            "--epochs", "3",
            "--no-group-by-length",
            "--subset-strategy", "random",
            "--max-train-seconds", "30",
            "--labels", "l.json",
        ],
        monkeypatch,
    )  # fmt: skip
    assert (config.epochs, config.group_by_length, config.subset_strategy) == (3, False, "random")
    assert config.max_train_seconds == 30.0 and config.labels == "l.json"
    assert config.learning_rate == 0.001  # environment over the profile's 1e-4
    assert config.base_model == "minilm" and config.max_length == 128  # the profile's preset
    assert config.device == "cpu" and config.profile == "cpu-quick"
    assert config.weight_decay == 0.01  # default, in no preset
    plain = _config_from([], monkeypatch)
    assert plain.max_length == 512 and plain.epochs == 4 and plain.device == "auto"


def test_profiles_are_presets_and_settings_are_frozen(monkeypatch):
    monkeypatch.setenv("EUROVOC_TRAIN_PROFILE", "gpu")
    gpu = TrainConfig()
    assert gpu.base_model == "mpnet" and gpu.max_length == PROFILES["gpu"]["max_length"] == 512
    assert gpu.grad_accum == 2 and gpu.learning_rate == 3e-5
    assert TrainConfig(profile="gpu", epochs=2).epochs == 2
    quick = TrainConfig(profile="cpu-quick")
    assert quick.max_train_seconds <= 600 and quick.threads == 2
    with pytest.raises(ValidationError):
        quick.epochs = 9
    with pytest.raises(ValidationError):
        TrainConfig(profile="tpu")
    with pytest.raises(ValidationError):
        TrainConfig(batch_size=0)
    with pytest.raises(ValidationError):
        TrainConfig(not_a_setting=1)


def test_bad_settings_are_one_clear_line(tmp_path, caplog):
    for flags, message in (
        (["--precision", "fp8"], "precision: Input should be 'auto', 'fp32', 'bf16' or 'fp16'"),
        (["--profile", "tpu"], "unknown profile 'tpu'; choose from gpu, cpu-quick"),
        (["--batch-size", "0"], "batch_size: Input should be greater than or equal to 1"),
    ):
        caplog.clear()
        assert main(["train", "--output", str(tmp_path), *flags]) == 2
        (record,) = [r for r in caplog.records if r.levelname == "ERROR"]
        assert message in record.getMessage() and "\n" not in record.getMessage()


def test_errors_exit_2(tmp_path, monkeypatch):
    assert main(["train", "--output", str(tmp_path), "--resume"]) == 2
    assert main(["train", "--resume"]) == 2
    monkeypatch.setenv("EUROVOC_TRAIN_BATCH_SIZE", "0")
    assert main(["train", "--output", str(tmp_path)]) == 2
    assert (
        main(
            ["make-labels", "--concepts", str(tmp_path / "none.json.gz"), "-o", str(tmp_path / "x")]
        )
        == 2
    )
    assert main(["baseline", "--data", str(tmp_path / "missing")]) == 2
