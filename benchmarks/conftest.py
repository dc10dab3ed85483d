import os

import pytest


def pytest_collection_modifyitems(config, items):
    """n = 10^8 cases need ~4 GB and minutes: run them with FASTLOSS_BENCH_HUGE=1."""
    if os.environ.get("FASTLOSS_BENCH_HUGE") == "1":
        return
    skip = pytest.mark.skip(reason="set FASTLOSS_BENCH_HUGE=1 to run n = 1e8")
    for item in items:
        if "huge" in item.keywords:
            item.add_marker(skip)
