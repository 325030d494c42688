"""Build-time only: the ``kaizenml._ext._aot`` extension of ahead-of-time compiled kernels.

``setup.py`` calls :func:`aot_extension`. The kernels to compile and their signatures are listed
in ``kaizenml.indicators._aot.EXPORTS``; each is compiled from the Python source of the numba
kernel in ``kaizenml.indicators._kernels`` with numba's ``pycc`` for the build machine's CPU,
and the extension also carries that CPU's fingerprint so it is never loaded on another one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parent.parent / "src"


def _numba_type(code: str) -> Any:
    from numba import types

    return {
        "x": types.Array(types.float64, 1, "C", readonly=True),
        "t": types.Array(types.int64, 1, "C", readonly=True),
        "out": types.Array(types.float64, 1, "C"),
        "i": types.int64,
        "f": types.float64,
    }[code]


def _match_jit_options() -> None:
    """Compile the exports with the options of the just-in-time serial kernels.

    ``pycc`` builds its compiler flags itself and has no setting for them; the flags class it
    instantiates is swapped for one with the two options that change behaviour:
    ``error_model="numpy"`` (a division by zero gives inf/NaN as in the just-in-time kernels,
    not ZeroDivisionError) and ``nogil`` (the wrapper releases the GIL, so the feature store's
    threads run one-series kernels side by side). Tests compare every export with the
    just-in-time kernel, so a numba that changes this mechanism fails the build's tests.
    """
    from numba.pycc import compiler

    base = compiler.Flags
    if getattr(base, "_kaizenml_jit_options", False):
        return

    class JitOptionFlags(base):  # type: ignore[misc, valid-type]
        _kaizenml_jit_options = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.error_model = "numpy"
            self.release_gil = True

    compiler.Flags = JitOptionFlags


def aot_extension() -> Any:
    """A setuptools Extension that numba LLVM-compiles when ``build_ext`` reaches it."""
    from numba import types
    from numba.pycc import CC

    _match_jit_options()

    sys.path.insert(0, str(SRC))
    try:
        from kaizenml.indicators import _aot, _kernels
    finally:
        sys.path.remove(str(SRC))

    module_name = _aot.EXTENSION.rsplit(".", 1)[1]
    cc = CC(module_name)
    cc.target_cpu = "host"
    cc.verbose = False
    for name, (ret, args) in _aot.EXPORTS.items():
        restype = types.void if ret is None else _numba_type(ret)
        signature = restype(*(_numba_type(code) for code in args))
        cc.export(name, signature)(getattr(_kernels, name).py_func)

    fingerprint = _aot.target_id()

    def target_id() -> int:
        return fingerprint

    cc.export(_aot.TARGET_FUNCTION, types.int64())(target_id)
    ext = cc.distutils_extension()
    ext.name = _aot.EXTENSION
    # numba's C helpers are compiled into the module from numba's own installation: absolute
    # paths, which setuptools refuses in the metadata of an sdist or wheel. They are handed
    # to the compiler only when the extension is built (see prepare).
    ext.aot_sources = ext.sources
    ext.sources = []
    # rebuilt by an incremental build_ext when the kernels' source changes (relative paths,
    # which an sdist accepts)
    ext.depends = ["src/kaizenml/indicators/_kernels.py", "src/kaizenml/indicators/_aot.py"]
    return ext


def prepare(build_ext_command: Any, ext: Any) -> None:
    """Before ``build_ext`` compiles an :func:`aot_extension`: give it numba's C helpers and
    LLVM-compile the kernels to the object files it links."""
    if getattr(ext, "_cc", None) is not None:
        ext.sources = ext.aot_sources
        ext._prepare_object_files(build_ext_command)
