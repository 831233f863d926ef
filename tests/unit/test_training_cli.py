"""The eurovoc-train parser: every training setting is a flag, and flags reach the config."""

import pytest

from model_training.cli import _config_overrides, build_parser, main
from model_training.profiles import TrainConfig, build_config


def test_every_setting_is_a_flag_and_overrides_the_profile():
    parser = build_parser()
    flags = {
        option
        for action in parser._subparsers._group_actions[0].choices["train"]._actions
        for option in action.option_strings
    }
    for name in TrainConfig.model_fields:
        if name != "profile":
            assert "--" + name.replace("_", "-") in flags
    args = parser.parse_args(
        [
            "train",
            "--profile",
            "cpu-quick",
            "--epochs",
            "3",
            "--no-group-by-length",
            "--subset-strategy",
            "random",
            "--max-train-seconds",
            "30",
            "--labels",
            "l.json",
        ]
    )
    config = build_config(args.profile, _config_overrides(args))
    assert (config.epochs, config.group_by_length, config.subset_strategy) == (3, False, "random")
    assert config.max_train_seconds == 30.0 and config.labels == "l.json"
    assert config.base_model == "minilm" and config.profile == "cpu-quick"  # from the profile


def test_bad_choices_are_rejected_by_the_parser():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--precision", "fp8"])


def test_errors_exit_2(tmp_path, capsys):
    assert main(["train", "--output", str(tmp_path), "--resume"]) == 2
    assert (
        main(
            ["make-labels", "--concepts", str(tmp_path / "none.json.gz"), "-o", str(tmp_path / "x")]
        )
        == 2
    )
    assert main(["baseline", "--data", str(tmp_path / "missing")]) == 2
