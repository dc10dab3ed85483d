import os

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings

# Property tests (test_properties.py): reproducible in CI (derandomised: the examples depend only
# on the test's code), no deadline (the first call of a kernel may be slow on a loaded machine).
# HYPOTHESIS_PROFILE=random draws new examples on each run, for local fuzzing.
settings.register_profile(
    "ci", derandomize=True, deadline=None, database=None, print_blob=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.data_too_large],
)
settings.register_profile("random", settings.get_profile("ci"), derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="run tests marked slow (huge arrays, long runs)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
