"""The course kit end to end: make a student copy, check that it holds no solution and runs
without compiled kernels, and grade it untouched (zero), with the solutions restored (full
marks), with one wrong exercise (that unit only), and with an endless loop or a crash (cut off,
that unit only)."""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from minigrad.course import UNITS, grade, make
from minigrad.course.__main__ import main
from minigrad.course._worker import BOOT, CPU_LIMIT_VARIABLE
from minigrad.course.make import PACKAGE_ROOT, find_solutions
from minigrad.course.stubs import body_text, find_sites, scan_package, stub_lines, stub_source


def _restore(dest: str, exercises: set[str] | None = None) -> None:
    """Copy the library's own bodies back over the stubs in ``dest`` (all, or ``exercises``)."""
    for site in scan_package(PACKAGE_ROOT):
        if exercises is not None and site.exercise not in exercises:
            continue
        with open(os.path.join(PACKAGE_ROOT, site.path), encoding="utf-8") as f:
            original = body_text(f.read(), site).splitlines()
        path = os.path.join(dest, "minigrad", site.path)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        target = [s for s in find_sites(text, site.path) if s.qualname == site.qualname]
        with open(path, "w", encoding="utf-8") as f:
            f.write(stub_source(text, target, {site.qualname: original}))


def _edit(dest: str, relpath: str, old: str, new: str) -> None:
    path = os.path.join(dest, "minigrad", relpath)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert text.count(old) == 1, old
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(old, new))


@pytest.fixture(scope="module")
def full_copy(tmp_path_factory) -> str:
    dest = str(tmp_path_factory.mktemp("course") / "student")
    make(dest)
    return dest


@pytest.fixture(scope="module")
def solved_copy(tmp_path_factory) -> str:
    dest = str(tmp_path_factory.mktemp("course") / "solved")
    make(dest)
    _restore(dest)
    return dest


# ----------------------------------------------------------------------------- the source


def test_every_exercise_has_a_marker_and_every_marker_an_exercise():
    sites = scan_package(PACKAGE_ROOT)
    marked = {s.exercise for s in sites}
    listed = {e for u in UNITS for e in u.exercises}
    assert marked == listed
    assert len(UNITS) >= 11 and [u.key for u in UNITS][:1] == ["engine"]


def test_stub_replaces_the_whole_body_and_keeps_the_signature():
    source = (
        "class A:\n"
        "    # exercise: demo\n"
        "    @staticmethod\n"
        "    def f(x, *, y=2) -> int:\n"
        '        """Returns x * y: the secret formula."""\n'
        "        # the trick is here\n"
        "        z = x * y\n"
        "        return z\n"
        "        # and a last remark\n"
        "\n"
        "    def g(self):\n"
        "        return 1\n"
    )
    (site,) = find_sites(source, "demo.py")
    assert site.qualname == "A.f"
    text = stub_source(source, [site], {"A.f": stub_lines(site, "multiply", "handout.md")})
    assert "def f(x, *, y=2) -> int:" in text and "# exercise: demo" in text
    assert "secret" not in text and "trick" not in text and "z = x * y" not in text
    assert "remark" not in text and "def g(self):" in text
    namespace: dict = {}
    exec(text, namespace)
    with pytest.raises(NotImplementedError, match="exercise demo"):
        namespace["A"].f(3)


def test_a_marker_away_from_a_function_is_an_error():
    with pytest.raises(ValueError, match="exercise 'lost'"):
        find_sites("# exercise: lost\nx = 1\n", "demo.py")


# ----------------------------------------------------------------------------- make


def test_withheld_modules_are_replaced_and_raise_when_used(full_copy):
    # the engine's hooked walk is the engine unit's algorithm written out in full
    with open(os.path.join(full_copy, "minigrad", "_observed.py"), encoding="utf-8") as f:
        text = f.read()
    assert "withheld" in text and "ready" not in text and "def run" not in text
    done = subprocess.run(
        [sys.executable, "-c", "from minigrad._observed import run_observed_backward"],
        cwd=full_copy, capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert "NotImplementedError" in done.stderr and "'engine' unit" in done.stderr


def test_student_copy_holds_no_solution(full_copy):
    sites = scan_package(PACKAGE_ROOT)
    assert find_solutions(full_copy, sites) == []
    # Line by line too: no statement of a stubbed body that appears nowhere else in the
    # library (a line such as `x, gamma = ctx.saved` is no solution) survives in the copy.
    texts = {}
    for directory, _, files in os.walk(full_copy):
        for name in files:
            with open(os.path.join(directory, name), "rb") as f:
                texts[name] = re.sub(rb"\s+", b"", f.read())
    copy = b"\n".join(texts.values())
    library = []
    for directory, _, files in os.walk(PACKAGE_ROOT):
        for name in files:
            if name.endswith(".py") and os.path.relpath(directory, PACKAGE_ROOT) != "course":
                with open(os.path.join(directory, name), encoding="utf-8") as f:
                    library.append((os.path.relpath(os.path.join(directory, name),
                                                    PACKAGE_ROOT), f.read()))
    outside = "".join(re.sub(r"\s+", "", _without_sites(path, text)) for path, text in library)
    checked = 0
    for site in sites:
        with open(os.path.join(PACKAGE_ROOT, site.path), encoding="utf-8") as f:
            body = body_text(f.read(), site)
        for line in _code_lines(body):
            code = re.sub(r"\s+", "", line.split("  #")[0])
            if len(code) >= 30 and not code.startswith(("#", '"', "'")) and code not in outside:
                checked += 1
                assert code.encode() not in copy, f"{site.exercise}: {line.strip()}"
    assert checked > 100


def _code_lines(body: str) -> list[str]:
    """The lines of a function body without its docstring (the math, which handouts state)."""
    source = "def f():\n" + textwrap.indent(textwrap.dedent(body), "    ")
    first = ast.parse(source).body[0].body[0]
    docstring = set()
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        docstring = set(range(first.lineno, first.end_lineno + 1))
    return [line for number, line in enumerate(source.splitlines(), 1)
            if number > 1 and number not in docstring]


def _without_sites(path: str, text: str) -> str:
    sites = find_sites(text, path)
    return stub_source(text, sites, {s.qualname: [s.indent + "pass"] for s in sites}) if sites \
        else text


def test_student_copy_is_python_only_and_runs_on_numpy(full_copy):
    names = [n for _, _, files in os.walk(full_copy) for n in files]
    assert not [n for n in names if n.endswith((".so", ".pyd", ".pyx", ".pxd", ".pxi", ".c",
                                                 ".h", ".pyc"))]
    assert sorted(os.listdir(os.path.join(full_copy, "minigrad", "course"))) == [
        "__init__.py", "__main__.py"]  # only the hand-over to the installed grader
    assert not os.path.exists(os.path.join(full_copy, "minigrad", "bench"))
    assert sorted(os.listdir(os.path.join(full_copy, "handouts")))[0] == "01-engine.md"
    probe = ("import minigrad as mg, os\n"
             "assert mg.get_backend() == 'numpy' and not mg.kernels.compiled_available()\n"
             "x = mg.tensor([[1.0, 2.0]], requires_grad=True)\n"
             "try:\n    (x * x).sum().backward()\nexcept NotImplementedError as e:\n"
             "    print(e)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MINIGRAD_BACKEND")}
    run = subprocess.run([sys.executable, "-W", "error", "-c", probe], cwd=full_copy, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "exercise engine_backward" in run.stdout


def test_handout_says_what_to_write_and_how_to_grade(full_copy):
    with open(os.path.join(full_copy, "handouts", "08-batchnorm_backward.md")) as f:
        text = f.read()
    assert "`minigrad/kernels/_norm_twin.py`" in text and "docs/normalization.md" in text
    assert "python -m minigrad.course grade . --units batchnorm_backward" in text
    assert os.path.isfile(os.path.join(full_copy, "docs", "normalization.md"))


def test_make_for_some_units_stubs_only_those(tmp_path):
    dest = str(tmp_path / "two")
    sites = make(dest, ["optim", "engine"])
    assert {s.exercise for s in sites} == {"sgd_step", "adam_step", "adam_bias_corrections",
                                           "engine_order", "engine_backward"}
    with open(os.path.join(dest, "minigrad", "kernels", "_norm_twin.py")) as f:
        assert "NotImplementedError" not in f.read()
    with open(os.path.join(dest, "course.json")) as f:
        assert json.load(f)["units"] == ["engine", "optim"]


def test_make_leaves_no_bytecode_in_the_copy(tmp_path, monkeypatch):
    # make imports the copy to check it; that import must not write __pycache__ into it
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    dest = str(tmp_path / "clean")
    make(dest, ["optim"])
    assert not [d for d, _, files in os.walk(dest) if d.endswith("__pycache__") or
                any(n.endswith(".pyc") for n in files)]


def test_make_refuses_a_used_directory_and_unknown_units(tmp_path, capsys):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    assert main(["make", str(tmp_path / "used")]) == 2
    assert "not an empty directory" in capsys.readouterr().err
    assert main(["make", str(tmp_path / "new"), "--units", "nope"]) == 2
    assert "unknown unit 'nope'" in capsys.readouterr().err
    inside = os.path.join(PACKAGE_ROOT, "ops", "student-copy")
    assert main(["make", inside, "--units", "optim"]) == 2  # it would copy itself, endlessly
    assert "is inside" in capsys.readouterr().err
    assert not os.path.exists(inside)
    assert not [n for n in os.listdir(os.path.join(PACKAGE_ROOT, "ops"))
                if n.startswith(".minigrad-course-")]
    assert not (tmp_path / "new").exists()


def test_list_names_units_exercises_and_docs(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for u in UNITS:
        assert u.key in out and all(e in out for e in u.exercises)
    assert "docs/normalization.md" in out


# ----------------------------------------------------------------------------- grade


def test_untouched_copy_scores_zero_on_every_unit(full_copy, monkeypatch):
    # With the library itself on PYTHONPATH too: the student's copy is still the one graded
    # (the library would score full marks).
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(PACKAGE_ROOT))
    results = grade(full_copy, timeout=120, jobs=2)
    assert [r.unit for r in results] == [u.key for u in UNITS]
    for r in results:
        assert r.passed == 0 and r.total > 0 and r.status == "failed", r
        assert "is not written yet" in r.message, r


def test_restored_solutions_score_full_marks(solved_copy):
    results = grade(solved_copy, timeout=120, jobs=2)
    assert [u.key for u in UNITS] == [r.unit for r in results]
    for r in results:
        assert (r.passed, r.status) == (r.total, "passed"), r


def test_a_wrong_batchnorm_backward_loses_that_unit_only(tmp_path):
    dest = str(tmp_path / "wrong")
    make(dest, ["engine", "batchnorm_forward", "batchnorm_backward", "layernorm"])
    # Everything written except the engine: layernorm's checks run backward through the
    # graph, and still pass, because each unit is graded with the key's code for the others.
    _restore(dest, {e for u in UNITS if u.key != "engine" for e in u.exercises})
    # the mean term of the closed form dropped: dx = gamma rstd / M (M dy - x_hat dgamma)
    _edit(dest, "kernels/_norm_twin.py", "count * grad_out - _per_channel(dbeta, x) - x_hat",
          "count * grad_out - x_hat")
    results = {r.unit: r for r in grade(dest, timeout=120, jobs=2)}
    wrong = results["batchnorm_backward"]
    assert wrong.status == "failed" and 0 < wrong.passed < wrong.total
    assert wrong.message.startswith("BatchNorm backward: dx wrong for input (4, 3); worst "
                                    "element ["), wrong.message
    assert re.search(r"yours -?[\d.e+-]+, expected -?[\d.e+-]+$", wrong.message)
    assert results["engine"].passed == 0
    assert results["batchnorm_forward"].status == results["layernorm"].status == "passed"


def test_an_endless_loop_or_a_crash_costs_only_its_unit(tmp_path):
    dest = str(tmp_path / "loop")
    make(dest, ["optim", "batchnorm_backward", "layernorm"])
    _restore(dest)
    _edit(dest, "kernels/_optim_twin.py", "    lr, momentum, dampening = real(lr)",
          "    while True:\n        pass\n    lr, momentum, dampening = real(lr)")
    _edit(dest, "kernels/_norm_twin.py", "    layernorm_backward_args(grad_out, x, gamma, mean",
          "    import os\n    os._exit(3)\n    layernorm_backward_args(grad_out, x, gamma, mean")
    results = {r.unit: r for r in grade(dest, timeout=10, jobs=3)}
    assert results["optim"].status == "timeout" and results["optim"].passed == 0
    assert "stopped after 10 s during 'SGD'" in results["optim"].message
    assert results["layernorm"].status == "crashed" and results["layernorm"].passed == 0
    assert results["batchnorm_backward"].status == "passed"


def test_grader_imports_the_student_copy_and_the_key_apart(full_copy):
    run = subprocess.run([sys.executable, "-c", BOOT, full_copy, PACKAGE_ROOT, "optim"],
                         cwd=full_copy, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, MINIGRAD_BACKEND="numpy",
                                  PYTHONPATH=os.path.dirname(PACKAGE_ROOT)))
    done = json.loads(run.stdout.splitlines()[-1])
    assert done["student"].startswith(os.path.join(full_copy, "minigrad") + os.sep)
    assert done["key"].startswith(PACKAGE_ROOT + os.sep)


def test_an_infinite_timeout_sets_no_limit(solved_copy):
    """timeout=inf means no time limit at all: neither the clock nor a CPU limit stops it."""
    (result,) = grade(solved_copy, units=["optim"], timeout=float("inf"))
    assert result.status == "passed" and result.passed == result.total > 0


def test_grade_json_and_exit_status(solved_copy, capsys):
    assert main(["grade", solved_copy, "--units", "optim", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] == report["total"] > 0
    assert report["units"][0]["unit"] == "optim"
    assert main(["grade", os.path.dirname(solved_copy)]) == 2


def test_the_copys_own_course_command_hands_over_to_the_installed_grader(full_copy):
    # Run from the copy, `minigrad` is the copy: its `minigrad.course` passes the command to the
    # installed minigrad (here: the library on PYTHONPATH beside the copy).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(PACKAGE_ROOT),
                                                       full_copy]))
    run = subprocess.run([sys.executable, "-m", "minigrad.course", "grade", ".", "--units",
                          "optim", "--json"], cwd=full_copy, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 1, run.stderr
    report = json.loads(run.stdout)
    assert report["units"][0]["unit"] == "optim" and report["passed"] == 0


def test_what_a_students_code_prints_does_not_disturb_the_grader(tmp_path, capsys):
    # Bytes that are not UTF-8 on either stream, and text that is not a report line on the
    # real stdout: the unit is graded as usual and --json stays one valid document.
    dest = str(tmp_path / "noisy")
    make(dest, ["elementwise"])
    _restore(dest)
    _edit(dest, "ops/elementwise.py", "        (y,) = ctx.saved\n        return grad * y\n",
          "        import os, sys\n        sys.stderr.buffer.write(b'\\xff\\xfe\\n')\n"
          "        sys.stderr.flush()\n        os.write(1, b'\\xff{not json\\n5\\n[1]\\nnull\\n')\n"
          "        print('hello')\n        (y,) = ctx.saved\n        return grad * y\n")
    assert main(["grade", dest, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] == report["total"] > 0


def test_a_student_exit_is_reported_with_the_check_it_cut_short(tmp_path):
    dest = str(tmp_path / "exits")
    make(dest, ["elementwise"])
    _restore(dest)
    _edit(dest, "ops/elementwise.py", "        (y,) = ctx.saved\n        return grad * y\n",
          "        import sys\n        print('bye')\n        sys.exit(0)\n")
    (result,) = grade(dest, timeout=120)
    assert (result.status, result.passed) == ("crashed", 0)
    assert result.message.startswith("the grading process died during '"), result.message
    assert "(exit status 0; last line on stderr: bye)" in result.message


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX")
def test_a_process_the_students_code_leaves_running_is_killed_with_its_unit(tmp_path):
    dest = str(tmp_path / "spawns")
    make(dest, ["elementwise"])
    _restore(dest)
    marker = f"{os.getpid()}{id(tmp_path)}"
    _edit(dest, "ops/elementwise.py", "        (y,) = ctx.saved\n        return grad * y\n",
          "        import subprocess, sys\n        subprocess.Popen([sys.executable, '-c', "
          f"'import time; time.sleep(600)', '{marker}'])\n"
          "        (y,) = ctx.saved\n        return grad * y\n")
    (result,) = grade(dest, timeout=60)
    assert (result.status, result.passed) == ("passed", result.total), result
    time.sleep(0.2)
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert left.stdout == "", "the student's processes outlived the grader"


def test_a_copy_that_does_not_import_is_reported_with_file_and_line(tmp_path):
    # The answer key's own import must not reach the copy (its compiled kernels were built as
    # minigrad.kernels.* and would import the copy's modules by that name), or this would be a
    # crash inside the key instead of the student's error.
    dest = str(tmp_path / "broken")
    make(dest, ["optim"])
    with open(os.path.join(dest, "minigrad", "ops", "elementwise.py"), "a") as f:
        f.write("\ndef broken(:\n")
    (result,) = grade(dest, timeout=120)
    assert (result.status, result.passed) == ("crashed", 0)
    assert result.message.startswith("your copy does not import: SyntaxError at "
                                     f"{os.path.join('minigrad', 'ops', 'elementwise.py')}:"), \
        result.message


def test_a_solution_that_changes_its_input_is_not_compared_with_the_changed_input(tmp_path):
    # unbroadcast doubling its argument in place: the key must see the original gradient
    dest = str(tmp_path / "inplace")
    make(dest, ["elementwise"])
    _restore(dest)
    _edit(dest, "autograd.py", "    if grad.shape == shape:\n        return grad\n",
          "    grad *= 2.0\n    if grad.shape == shape:\n        return grad\n")
    (result,) = grade(dest, timeout=120)
    assert result.message.startswith("unbroadcast: unbroadcast(grad, shape) wrong for grad "
                                     "(3, 4) and shape (4,)"), result.message


def test_a_kernel_that_changes_its_arguments_does_not_change_the_keys(tmp_path):
    # batchnorm_backward doubling grad_out in place: the key must still see the original
    dest = str(tmp_path / "kernel_inplace")
    make(dest, ["batchnorm_backward"])
    _restore(dest)
    _edit(dest, "kernels/_norm_twin.py",
          "    batchnorm_backward_args(grad_out, x, gamma, mean, rstd)\n",
          "    batchnorm_backward_args(grad_out, x, gamma, mean, rstd)\n    grad_out *= 2\n")
    (result,) = grade(dest, timeout=120)
    assert result.status == "failed", result
    assert result.message.startswith("BatchNorm backward: dx wrong for input (4, 3)"), \
        result.message


@pytest.mark.parametrize("text", ['{"unit": ["optim"]}', "[1, 2]", '{"units": "optim"}', "{"])
def test_a_broken_course_manifest_is_named(tmp_path, capsys, text):
    dest = tmp_path / "copy"
    (dest / "minigrad").mkdir(parents=True)
    (dest / "minigrad" / "__init__.py").write_text("")
    (dest / "course.json").write_text(text)
    assert main(["grade", str(dest)]) == 2
    assert "is not a course manifest" in capsys.readouterr().err


def test_a_worker_left_behind_stops_itself_after_its_cpu_limit(tmp_path):
    """Should the grader die before it kills a worker stuck in an endless loop, the worker
    stops by itself once it has used its limit of CPU seconds (here 1 s, with 60 s on the
    clock): the kernel ends it."""
    if os.name != "posix":
        pytest.skip("RLIMIT_CPU is POSIX")
    dest = str(tmp_path / "spin")
    make(dest, ["optim"])
    _restore(dest)
    _edit(dest, "kernels/_optim_twin.py", "    lr, momentum, dampening = real(lr)",
          "    while True:\n        pass\n    lr, momentum, dampening = real(lr)")
    env = dict(os.environ, MINIGRAD_BACKEND="numpy", **{CPU_LIMIT_VARIABLE: "1"})
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-c", BOOT, dest, PACKAGE_ROOT, "optim"], cwd=dest,
                         capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode in (-signal.SIGXCPU, -signal.SIGKILL)
    assert time.monotonic() - started < 30
