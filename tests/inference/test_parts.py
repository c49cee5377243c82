"""A cohort split into parts: --part K/N, Slurm array variables and torchrun ranks split identically."""

from __future__ import annotations

import random

import pytest

from medseg.errors import ConfigError
from medseg.inference.parts import Part, parse_part, resolve_part

CASES = [f"case{i:02d}" for i in range(11)]


def test_every_case_goes_to_exactly_one_part_whatever_the_input_order():
    shuffled = random.Random(0).sample(CASES, len(CASES))
    chosen = [Part(k, 4).select(shuffled, key=str) for k in range(4)]
    assert sorted(c for part in chosen for c in part) == CASES
    assert chosen[1] == ["case01", "case05", "case09"]  # sorted ids 1, 5, 9: every 4th from the 2nd, by hand
    assert chosen == [Part(k, 4).select(CASES, key=str) for k in range(4)]


@pytest.mark.parametrize(("env", "expected"), [
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}, (3, 4, "slurm")),
    ({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "10", "SLURM_ARRAY_TASK_MIN": "1"}, (0, 10, "slurm")),
    ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "5", "SLURM_ARRAY_TASK_MIN": "1",
      "SLURM_ARRAY_TASK_STEP": "2"}, (3, 5, "slurm")),  # --array=1-9:2 -> tasks 1,3,5,7,9
    ({"RANK": "1", "WORLD_SIZE": "2"}, (1, 2, "torchrun")),
    ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "0", "RANK": "1",
      "WORLD_SIZE": "2"}, (5, 6, "slurm+torchrun")),  # each array task runs two torchrun processes
    ({}, (0, 1, "single")),
])  # fmt: skip
def test_parts_from_the_environment(env, expected):
    part = resolve_part(None, env)
    assert (part.index, part.count, part.source) == expected


def test_part_flag_and_slurm_variables_split_identically():
    for k in range(3):
        slurm = resolve_part(None, {"SLURM_ARRAY_TASK_ID": str(k + 1), "SLURM_ARRAY_TASK_COUNT": "3",
                                    "SLURM_ARRAY_TASK_MIN": "1"})  # fmt: skip
        flag = resolve_part(f"{k}/3", {"SLURM_ARRAY_TASK_ID": "99"})  # --part wins over the array variables
        assert flag.select(CASES, key=str) == slurm.select(CASES, key=str)
        assert flag.source == "--part" and slurm.source == "slurm"


@pytest.mark.parametrize("text", ["3/3", "-1/3", "1", "a/b", "1/0", "2/"])
def test_bad_parts_are_one_line(text):
    with pytest.raises(ConfigError, match="K/N"):
        parse_part(text)


def test_bad_slurm_variables_are_refused():
    with pytest.raises(ConfigError, match="SLURM_ARRAY_TASK_COUNT"):
        resolve_part(None, {"SLURM_ARRAY_TASK_ID": "2"})
    with pytest.raises(ConfigError, match="is not one of the 3 tasks"):
        resolve_part(None, {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1"})
