"""Build script for fastloss's compiled kernels.

Everything declarative lives in pyproject.toml; this file only does what needs code:

* renders the ``*.pyx.tp`` Tempita templates into ``*.pyx`` (the loop variants of every kernel
  family are generated from one template per family, see ``fastloss/_regression.pyx.tp``);
* detects whether the C compiler supports OpenMP and compiles the kernels with it, or serially;
* sets portable optimisation flags (never ``-ffast-math``: it breaks NaN and infinity handling).

Environment variables
---------------------
FASTLOSS_OPENMP
    ``0`` builds without OpenMP even where the compiler has it (a serial build); ``1`` requires
    OpenMP and fails the build without it. Unset: use OpenMP when the compiler supports it.
FASTLOSS_CFLAGS
    Extra compiler flags appended after fastloss's own (for example ``-g`` for debug info, or
    sanitizer flags).
FASTLOSS_AVX2
    ``0`` skips the AVX2 + FMA and AVX-512 twins of each kernel module (two thirds of the build
    time; the portable kernels then always run). Unset: build the twins on x86-64 compilers
    that accept the flags.
FASTLOSS_AVX512
    ``0`` skips the AVX-512 twins only.

Every kernel module is built three times on x86-64: ``fastloss._<family>`` with portable flags,
``fastloss._<family>_avx2`` with ``-mavx2 -mfma`` and ``fastloss._<family>_avx512`` with
AVX-512 F/DQ/VL/BW as well; ``fastloss/_dispatch.py`` picks the widest twin the CPU runs at
import time, so a wheel runs on any x86-64 and fast on a recent one.

The usual ``CC``, ``CFLAGS``, ``CPPFLAGS`` and ``LDFLAGS`` apply to the OpenMP check as to the
build: on macOS, ``CPPFLAGS=-I$(brew --prefix libomp)/include`` and
``LDFLAGS=-L$(brew --prefix libomp)/lib`` let Apple clang use Homebrew's libomp. Release wheels
are made by cibuildwheel (settings in pyproject.toml); ``sdist`` ships the templates and sources,
not what setup.py generates from them (rendered ``.pyx``, the twins) nor Cython's C.
"""

import os
import platform
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy
from Cython.Build import cythonize
from Cython.Tempita import sub as tempita_sub
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
PKG = HERE / "fastloss"

# Kernel modules: one per family. A ".pyx.tp" template is rendered to ".pyx" before Cython runs.
MODULES = ["_core", "_regression", "_embedding", "_binary", "_multiclass"]


def _include(name, **namespace):
    """``{{include('file.tpi', NAME=value)}}`` inside a template: a shared, rendered snippet."""
    path = PKG / name
    return tempita_sub(path.read_text(), _template_name=name, include=_include, **namespace)


def _write_if_changed(path, text):
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def render_sources(twins):
    """Render every ``.pyx.tp`` to ``.pyx``; write the twin sources (``_avx2``, ``_avx512``)
    named in ``twins``."""
    for tp in sorted(PKG.glob("*.pyx.tp")):
        text = tempita_sub(tp.read_text(), _template_name=str(tp.name), include=_include)
        header = f"# Generated from {tp.name} by setup.py. Do not edit: edit the template.\n"
        _write_if_changed(tp.with_suffix(""), header + text)  # drops ".tp"
    for suffix in twins:
        for name in MODULES:
            src = PKG / f"{name}.pyx"
            header = f"# Generated from {src.name} by setup.py: its {TWINS[suffix]} build.\n"
            _write_if_changed(PKG / f"{name}{suffix}.pyx", header + src.read_text())


# the x86-64 twins of every kernel module: suffix -> what it is built for
TWINS = {"_avx2": "AVX2 + FMA", "_avx512": "AVX-512 (F, DQ, VL, BW) + FMA"}


def _want_twins():
    """The twin suffixes to build (none off x86)."""
    if os.environ.get("FASTLOSS_AVX2", "").strip() == "0":
        return []
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return []
    return ["_avx2"] + ([] if os.environ.get("FASTLOSS_AVX512", "").strip() == "0"
                       else ["_avx512"])


# GCC/clang flags (scripts/check_vectorized.py reads these four lists).
# -fno-math-errno lets the compiler drop and vectorise unused libm calls; it does not change
# results. -ffast-math (or -ffinite-math-only) is never used. -g0 overrides Python's -g: debug
# info would be 80% of a wheel (FASTLOSS_CFLAGS=-g brings it back). No -march: the portable
# kernels target the architecture's baseline (x86-64: SSE2), only the *_avx2 and *_avx512
# twins, chosen at run time, use more.
OPT_FLAGS = ["-O3", "-g0", "-fno-math-errno", "-fno-trapping-math", "-Wno-unused-function"]
# The element math must be inlined into the kernel loops for them to vectorise; GCC's default
# limits stop short of the larger losses (log-cosh, deviances): with them, GCC 12 leaves fl_log
# and whole loss functions as calls, differently per target (aarch64 more than x86).
INLINE_FLAGS = ["--param", "max-inline-insns-single=1200",
                "--param", "large-function-growth=2000",
                "--param", "inline-unit-growth=400"]
AVX2_FLAGS = ["-mavx2", "-mfma"]
# 512-bit vectors: GCC's tuning would otherwise keep 256 (for Intel parts that clock down with
# them). Measured on an AMD Zen 5 only: about twice the AVX2 twins' speed (benchmarks/RESULTS.md).
AVX512_FLAGS = AVX2_FLAGS + ["-mavx512f", "-mavx512dq", "-mavx512vl", "-mavx512bw",
                             "-mprefer-vector-width=512"]


def _compiler_kind(compiler):
    return getattr(compiler, "compiler_type", "unix")


def _openmp_flags(kind):
    if kind == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":
        # Apple clang needs libomp (e.g. from Homebrew) and the preprocessor flag.
        return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
    return ["-fopenmp"], ["-fopenmp"]


def _accepts(compiler, flags):
    """Whether the compiler compiles a trivial file with these flags."""
    with tempfile.TemporaryDirectory() as tmp:
        c = Path(tmp) / "check_flags.c"
        c.write_text("int fastloss_check(int x) { return x + 1; }\n")
        try:
            compiler.compile([str(c)], output_dir=tmp, extra_postargs=flags)
        except Exception:
            return False
    return True


def _compiles_with_openmp(compiler, cflags, ldflags):
    """Try to build and link a tiny OpenMP library with the compiler setuptools will use.

    It is linked as a shared object, like the extensions, so that the same linker command and
    flags are tried (``LDFLAGS`` reaches the shared-object linker only: that is how a libomp
    outside the default paths is found on macOS, e.g. ``LDFLAGS=-L$(brew --prefix libomp)/lib``).
    """
    src = ("#include <omp.h>\nint check_openmp(void){int n=0;\n"
           "#pragma omp parallel reduction(+:n)\nn+=1;\nreturn omp_get_max_threads()>0 ? n : 0;}\n"
           "int main(void){return check_openmp()>0 ? 0 : 1;}\n")
    with tempfile.TemporaryDirectory() as tmp:
        c = Path(tmp) / "check_openmp.c"
        c.write_text(src)
        try:
            objs = compiler.compile([str(c)], output_dir=tmp, extra_postargs=cflags)
            if _compiler_kind(compiler) == "msvc":
                compiler.link_executable(objs, str(Path(tmp) / "check_openmp"),
                                         extra_postargs=ldflags)
            else:
                compiler.link_shared_object(objs, str(Path(tmp) / "check_openmp.so"),
                                            extra_postargs=ldflags)
        except Exception:
            return False
    return True


class BuildExt(build_ext):
    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:  # the modules are independent: compile them side by side (-j)
            self.parallel = True

    def build_extensions(self):
        kind = _compiler_kind(self.compiler)
        want = os.environ.get("FASTLOSS_OPENMP", "").strip()
        omp_c, omp_l = _openmp_flags(kind)
        if want == "0":
            use_omp = False
        else:
            use_omp = _compiles_with_openmp(self.compiler, omp_c, omp_l)
            if want == "1" and not use_omp:
                raise RuntimeError("FASTLOSS_OPENMP=1 but the compiler cannot build OpenMP code")
        if kind == "msvc":
            opt = ["/O2", "/fp:precise"]
            flags = {"_avx2": ["/arch:AVX2"], "_avx512": ["/arch:AVX512"]}
        else:
            # see OPT_FLAGS, INLINE_FLAGS, AVX2_FLAGS and AVX512_FLAGS above
            opt = list(OPT_FLAGS)
            if _accepts(self.compiler, INLINE_FLAGS):
                opt += INLINE_FLAGS
            flags = {"_avx2": list(AVX2_FLAGS), "_avx512": list(AVX512_FLAGS)}
        extra = shlex.split(os.environ.get("FASTLOSS_CFLAGS", ""))
        simd_of = {}
        for suffix, f in flags.items():
            mine = [e for e in self.extensions if e.name.endswith(suffix)]
            if mine and not _accepts(self.compiler, f):
                print(f"fastloss: the compiler does not accept {TWINS[suffix]} flags; "
                      f"no {suffix} twins")
                self.extensions = [e for e in self.extensions if e not in mine]
                mine = []
            simd_of.update({e.name: f for e in mine})
        built = sorted({s for s in flags for n in simd_of if n.endswith(s)})
        # What was asked of OpenMP, for `fastloss info` to say why a build is serial:
        # 0 = FASTLOSS_OPENMP=0, 1 = FASTLOSS_OPENMP=1, 2 = unset (used when the compiler has it).
        request = {"0": 0, "1": 1}.get(want, 2)
        for ext in self.extensions:
            ext.define_macros = [m for m in ext.define_macros if m[0] != "FASTLOSS_OPENMP_REQUEST"]
            ext.define_macros.append(("FASTLOSS_OPENMP_REQUEST", str(request)))
            simd = simd_of.get(ext.name, [])
            ext.extra_compile_args = opt + simd + (omp_c if use_omp else []) + extra
            ext.extra_link_args = (omp_l if use_omp else []) + [
                f for f in extra if f.startswith("-fsanitize")
            ]
        print(f"fastloss: building with OpenMP {'on' if use_omp else 'off'}, "
              f"twins {', '.join(built) or 'none'}; flags {opt + extra}")
        super().build_extensions()


def generated_sources():
    """The .pyx files setup.py writes: rendered templates and the twins (paths from HERE)."""
    out = {tp.with_suffix("").relative_to(HERE).as_posix() for tp in PKG.glob("*.pyx.tp")}
    return out | {f"fastloss/{name}{suffix}.pyx" for name in MODULES for suffix in TWINS}


class SDist(sdist):
    """The sdist ships the templates and sources, never what is generated from them.

    MANIFEST.in lists the sources (and excludes Cython's C); this drops every ``.pyx`` that
    setup.py writes itself (see ``generated_sources``), whatever the family.
    """

    def make_release_tree(self, base_dir, files):
        generated = generated_sources()
        files = [f for f in files if Path(f).as_posix() not in generated]
        super().make_release_tree(base_dir, files)


def _metadata_only(argv):
    """True for the commands that make an sdist or metadata: they need no C, so no Cython run."""
    args = set(argv[1:])
    builds = {"build", "build_ext", "bdist_wheel", "bdist", "bdist_egg", "install", "develop",
              "editable_wheel"}
    return bool(args & {"sdist", "egg_info", "dist_info"}) and not args & builds


def extensions():
    if _metadata_only(sys.argv):
        # the sources as they are in git (a template, or a .pyx); the build renders and cythonizes
        def source(name):
            tp = f"fastloss/{name}.pyx.tp"
            return tp if (HERE / tp).exists() else f"fastloss/{name}.pyx"

        return [Extension(f"fastloss.{name}", [source(name)]) for name in MODULES]
    twins = _want_twins()
    render_sources(twins)
    names = MODULES + [f"{name}{suffix}" for suffix in twins for name in MODULES]
    exts = [
        Extension(
            f"fastloss.{name}",
            [f"fastloss/{name}.pyx"],
            include_dirs=[numpy.get_include(), str(PKG)],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
        )
        for name in names
    ]
    return cythonize(
        exts,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "cdivision": True,
            "embedsignature": True,
        },
        include_path=[str(PKG)],
    )


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt, "sdist": SDist})
