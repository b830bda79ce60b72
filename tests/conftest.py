import os
import sys

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
sys.path.insert(0, os.path.dirname(__file__))

import torch  # noqa: E402

import toyenv  # noqa: E402

# two cores shared by pytest-xdist workers: one torch thread each avoids oversubscription
torch.set_num_threads(1)


@pytest.fixture(params=toyenv.presets())
def preset(request):
    return toyenv.make(request.param)


def random_tabular(mdp, seed, scale=1.5):
    return toyenv.TabularPolicy(mdp, seed=seed, scale=scale)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_generate_tests(metafunc):
    """Classes deriving from exercise_contract.ExerciseContract run once per exercise of RIGHT."""
    if "exercise_id" in metafunc.fixturenames and metafunc.cls is not None:
        metafunc.parametrize("exercise_id", sorted(metafunc.cls.RIGHT))
