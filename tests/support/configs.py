"""Checking that a broken study config is refused the way a user must see it: file first, then key."""

import copy

import pytest


def assert_refused(study, mutate, expected, source="config/broken.yaml"):
    """`mutate` a copy of `study`; validation must fail with a message starting with `source` and holding `expected`."""
    from peftstudy.study import config as studyconfig

    broken = copy.deepcopy(study)
    mutate(broken)
    with pytest.raises(studyconfig.StudyConfigError) as error:
        studyconfig.validate_study(broken, source)
    assert str(error.value).startswith(f"{source}: ")
    assert expected in str(error.value)
