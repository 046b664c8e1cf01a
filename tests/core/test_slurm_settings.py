"""The inventory's ``slurm:`` block: settings, Slurm time limits, one-line errors."""

from __future__ import annotations

from typing import Any

import pytest

from dobby.core.errors import ValidationError
from dobby.core.slurm import SlurmSettings, make_settings, parse_time_limit


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 5400),
        ("1:30", 90),
        ("1:30:00", 5400),
        ("2-00", 172800),
        ("1-12:30", 131400),
        ("1-0:0:30", 86430),
        ("UNLIMITED", None),
        ("infinite", None),
    ],
)
def test_slurm_time_limits(text: str, seconds: int | None) -> None:
    assert parse_time_limit(text) == seconds


@pytest.mark.parametrize("text", ["bogus", "1h", "-5", "1:2:3:4", "0", "0:00", "1-"])
def test_bad_time_limits(text: str) -> None:
    with pytest.raises(ValidationError, match="Slurm time limit"):
        parse_time_limit(text)


def test_full_settings() -> None:
    settings = make_settings(
        {
            "partition": "gpu,debug", "account": "acme", "qos": "normal", "time_limit": 60,
            "gpus_per_task": 1, "gpu_request": "gpus", "constraint": "a100|h100",
            "extra_args": ["--mem=8G", "--comment=$(id)"], "workdir": "/shared/dobby",
        }
    )  # fmt: skip
    assert settings == SlurmSettings(
        partition="gpu,debug", account="acme", qos="normal", time_limit="60", gpus_per_task=1,
        gpu_request="gpus", constraint="a100|h100", extra_args=("--mem=8G", "--comment=$(id)"),
        workdir="/shared/dobby",
    )  # fmt: skip
    assert settings.to_dict()["extra_args"] == ["--mem=8G", "--comment=$(id)"]
    assert make_settings(None) == SlurmSettings()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("gpu", "'slurm' must be a mapping"),
        ({"partiton": "gpu"}, "unknown slurm setting 'partiton'"),
        ({"partition": "gpu; rm -rf /"}, "invalid slurm.partition"),
        ({"account": "a,b"}, "invalid slurm.account"),
        ({"qos": 3}, "invalid slurm.qos"),
        ({"time_limit": "soon"}, "invalid Slurm time limit 'soon'"),
        ({"time_limit": True}, "'slurm.time_limit' must be a Slurm time"),
        ({"gpus_per_task": -1}, "'slurm.gpus_per_task' must be a whole number"),
        ({"gpus_per_task": "2"}, "'slurm.gpus_per_task' must be a whole number"),
        ({"gpu_request": "cards"}, "invalid slurm.gpu_request 'cards'"),
        ({"constraint": ""}, "'slurm.constraint' must be a non-empty string"),
        ({"extra_args": "--mem=8G --exclusive"}, "must be a list of words"),
        ({"extra_args": ["--mem=8G", 3]}, "must be a list of strings"),
        ({"extra_args": ["--a\nb"]}, "invalid word"),
        ({"workdir": ""}, "'slurm.workdir' must be a path"),
    ],
)
def test_bad_settings_say_what_is_wrong(data: Any, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        make_settings(data)
    assert message in str(caught.value)
