"""Collection rules for the whole repository (the doctests in fastloss/ included).

Modules that need an optional dependency are not imported for their doctests when it is missing;
their tests in tests/ skip on their own with ``pytest.importorskip``.
"""

import importlib.util

# module path -> the optional packages it imports
OPTIONAL = {
    "fastloss/dask.py": ("dask", "distributed"),
}

collect_ignore = [
    path for path, needs in OPTIONAL.items()
    if any(importlib.util.find_spec(name) is None for name in needs)
]
