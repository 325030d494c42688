"""Build the Cython extensions; all other metadata lives in pyproject.toml."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from setuptools import Extension, setup

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


setup(ext_modules=_extensions())
