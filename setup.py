"""Build the native extensions; all other metadata lives in pyproject.toml.

* every ``.pyx`` under ``csrc/`` (Cython), and
* ``kaizenml._ext._aot``: the serial indicator kernels compiled ahead of time by numba for the
  build machine's CPU (see ``csrc/aot_build.py``), so a fresh process computes a one-series
  indicator without importing numba. ``KAIZENML_NO_AOT=1`` skips it; the kernels are then
  compiled just in time, as they are anyway on a CPU other than the build machine's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
CSRC = HERE / "csrc"


def _openmp_flags() -> tuple[list[str], list[str]]:
    """OpenMP compile/link flags, or none where the toolchain lacks it."""
    if os.environ.get("KAIZENML_NO_OPENMP"):
        return [], []
    if sys.platform.startswith("linux"):
        return ["-fopenmp"], ["-fopenmp"]
    if sys.platform == "win32":
        return ["/openmp"], []
    return [], []  # Apple clang ships without OpenMP; the kernels fall back to one thread.


def _extensions() -> list[Extension]:
    omp_compile, omp_link = _openmp_flags()
    extra_compile = ["-O3"] if sys.platform != "win32" else ["/O2"]
    exts = []
    for pyx in sorted(CSRC.rglob("*.pyx")):
        rel = pyx.relative_to(CSRC).with_suffix("")
        name = ".".join(rel.parts)
        exts.append(
            Extension(
                name,
                [str(pyx.relative_to(HERE))],
                include_dirs=[np.get_include()],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                extra_compile_args=extra_compile + omp_compile,
                extra_link_args=omp_link,
            )
        )
    if not exts:
        return []
    from Cython.Build import cythonize

    return cythonize(
        exts,
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
        include_path=[str(CSRC)],
    )


def _aot_build() -> Any:
    sys.path.insert(0, str(CSRC))
    try:
        import aot_build
    finally:
        sys.path.remove(str(CSRC))
    return aot_build


def _aot_extensions() -> list[Extension]:
    if os.environ.get("KAIZENML_NO_AOT"):
        return []
    return [_aot_build().aot_extension()]


class BuildExt(build_ext):
    """``build_ext`` that lets numba compile the ahead-of-time kernels to objects first."""

    def build_extension(self, ext: Extension) -> None:
        _aot_build().prepare(self, ext)
        super().build_extension(ext)


setup(ext_modules=_extensions() + _aot_extensions(), cmdclass={"build_ext": BuildExt})
