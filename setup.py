"""Build the compiled kernels of minigrad.

Everything about the package itself lives in pyproject.toml; this file only describes the
Cython extensions and picks compiler flags that the local compiler accepts.

Environment switches:
    MINIGRAD_PORTABLE=1      do not pass -march=native (for wheels that run on other CPUs)
    MINIGRAD_NO_OPENMP=1     build without OpenMP (kernels then run on one thread)
    MINIGRAD_CYTHON_DEBUG=1  turn bounds and wraparound checks back on, -O0 -g
    MINIGRAD_EXTENSIONS=a,b  build only these kernel modules (e.g. "_reduce"), a developer aid
"""

import os
import shutil
import tempfile
from glob import glob
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

TRY_PROGRAM = """
#ifdef _OPENMP
#include <omp.h>
#endif
int main(void) {
    double acc = 0.0;
    #pragma omp parallel for reduction(+:acc)
    for (int i = 0; i < 64; i++) acc += i;
    return acc > 0.0 ? 0 : 1;
}
"""


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _compiler_accepts(compiler, compile_args: list, link_args: list) -> bool:
    """Compile and link a tiny C program with the given flags; True when that works."""
    tmp = tempfile.mkdtemp(prefix="minigrad-probe-")
    try:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as f:
            f.write(TRY_PROGRAM)
        objects = compiler.compile([source], output_dir=tmp, extra_postargs=compile_args)
        compiler.link_executable(
            objects, "probe", output_dir=tmp, extra_postargs=link_args
        )
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class ProbingBuildExt(build_ext):
    """build_ext that adds -fopenmp / -march=native only when the compiler accepts them."""

    def build_extensions(self):
        if self.compiler.compiler_type == "msvc":
            base, openmp, native, link_openmp = ["/O2"], ["/openmp"], [], []
        else:
            base, openmp, native = ["-O3"], ["-fopenmp"], ["-march=native"]
            link_openmp = ["-fopenmp"]
        if _env_flag("MINIGRAD_CYTHON_DEBUG"):
            base = ["-O2", "-g"]  # same floating-point code as release (FMA contraction)

        compile_args, link_args = list(base), []
        if not _env_flag("MINIGRAD_PORTABLE") and native:
            if _compiler_accepts(self.compiler, native, []):
                compile_args += native
            else:
                print("minigrad: compiler rejects -march=native; building without it")
        if not _env_flag("MINIGRAD_NO_OPENMP"):
            if _compiler_accepts(self.compiler, openmp, link_openmp):
                compile_args += openmp
                link_args += link_openmp
            else:
                print("minigrad: compiler lacks OpenMP; kernels will run on one thread")

        for ext in self.extensions:
            ext.extra_compile_args = compile_args + ext.extra_compile_args
            ext.extra_link_args = link_args + ext.extra_link_args
        super().build_extensions()


def _extensions() -> list:
    debug = _env_flag("MINIGRAD_CYTHON_DEBUG")
    wanted = {n.strip() for n in os.environ.get("MINIGRAD_EXTENSIONS", "").split(",") if n.strip()}
    sources = sorted(glob(os.path.join("minigrad", "kernels", "_*.pyx")))
    # The memory-safety checks are plain Python that both backends share; compiled as well, they
    # cost about half as much on the kernels' hot path (the .py still runs when this is absent)
    sources.append(os.path.join("minigrad", "kernels", "_checks.py"))
    sources.append(os.path.join("minigrad", "kernels", "_checks_spatial.py"))
    # every C header of the kernels: an edit to one rebuilds the extensions (setuptools compares
    # these files' times with the built module's; Cython tracks the .pxi and .pxd files itself)
    headers = sorted(glob(os.path.join("minigrad", "kernels", "*.h")))
    extensions = []
    for source in sources:
        stem = Path(source).stem
        if wanted and stem not in wanted:
            continue
        extensions.append(
            Extension(
                f"minigrad.kernels.{stem}",
                [source],
                include_dirs=[np.get_include(), os.path.join("minigrad", "kernels")],
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
                depends=headers,
            )
        )
    directives = {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": debug,
        "initializedcheck": debug,
        "cdivision": True,  # kernels rely on IEEE 0/0 = nan, also when debugging
        "embedsignature": True,
    }
    return cythonize(extensions, compiler_directives=directives, quiet=True)


setup(ext_modules=_extensions(), cmdclass={"build_ext": ProbingBuildExt})
