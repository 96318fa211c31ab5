"""The kernel backend switch, and the guarantee that a broken build cannot pass unnoticed."""

import os
import subprocess
import sys
import textwrap

import pytest

import minigrad as mg
from minigrad import kernels

NUMPY_ONLY = os.environ.get("MINIGRAD_BACKEND", "").strip().lower() == "numpy"


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "MINIGRAD_BACKEND"}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=environment, timeout=120)


@pytest.mark.skipif(NUMPY_ONLY, reason="MINIGRAD_BACKEND=numpy was set on purpose")
def test_compiled_kernels_are_built_and_used_by_default():
    """Fails when the Cython extensions are missing, so a broken build cannot pass CI."""
    assert kernels.compiled_available(), (
        f"compiled kernels missing: {kernels.COMPILED_IMPORT_ERROR}")
    result = run_python("""
        import minigrad as mg
        from minigrad import kernels
        print(mg.get_backend(), kernels.impl.__name__, kernels.compiled._reduce.__file__)
    """)
    assert result.returncode == 0, result.stderr
    backend, module, path = result.stdout.split()
    assert backend == "cython" and module == "minigrad.kernels.compiled"
    assert path.endswith((".so", ".pyd"))


def test_environment_variable_selects_numpy():
    result = run_python("import minigrad as mg; print(mg.get_backend())", MINIGRAD_BACKEND="numpy")
    assert result.returncode == 0 and result.stdout.strip() == "numpy"


def test_missing_compiled_module_warns_once_and_falls_back():
    result = run_python("""
        import sys, warnings
        sys.modules["minigrad.kernels._reduce"] = None  # simulate a build that produced nothing
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import minigrad as mg
            mg.set_backend("cython")
        print(mg.get_backend(), sum("compiled kernels" in str(w.message) for w in caught))
        print(float((mg.tensor([1.0, 2.0]) * 3).sum().item()))
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0] == "numpy 1" and lines[1] == "9.0"


def test_set_backend_switches_and_validates():
    previous = mg.get_backend()
    try:
        mg.set_backend("numpy")
        assert mg.get_backend() == "numpy" and kernels.impl is kernels.reference
        with pytest.raises(ValueError, match="unknown backend"):
            mg.set_backend("fortran")
    finally:
        mg.set_backend(previous)


def test_set_num_threads_validates():
    with pytest.raises(ValueError, match="positive int"):
        mg.set_num_threads(0)
    previous = mg.get_num_threads()
    mg.set_num_threads(1)
    assert mg.get_num_threads() == 1
    mg.set_num_threads(previous)


def test_twins_and_compiled_kernels_have_the_same_names():
    public = [n for n in kernels.compiled.__all__] if kernels.compiled_available() else []
    for name in public:
        assert callable(getattr(kernels.reference, name)), f"reference.{name} is missing"
