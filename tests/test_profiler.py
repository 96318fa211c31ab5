"""minigrad.profiler: counts that match the ops run, the table, the Chrome trace file, and an
engine left on its plain paths afterwards."""

import json
import os
import time
from collections import Counter

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import autograd, nn, profiler
from minigrad.autograd import Function


def _plain_engine():
    return not autograd.observers and Function.__dict__["apply"].__func__.__name__ == "apply"


def _counts(prof, phase):
    return Counter(name for name, p, *_ in prof.events if p == phase)


def test_counts_match_the_ops_run(backend):
    a, b, c = (mg.tensor(np.arange(1.0, 5.0), requires_grad=True) for _ in range(3))
    with profiler.profile() as prof:
        for _ in range(3):
            (a * b + c).sum().backward()
    assert _counts(prof, "forward") == {"Mul": 3, "Add": 3, "Sum": 3}
    assert _counts(prof, "backward") == {"Mul": 3, "Add": 3, "Sum": 3}
    assert {s.backend for s in prof.stats()} == {backend}
    assert _plain_engine()


def test_counts_of_a_training_step_match_its_layers(backend):
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    opt = mg.optim.SGD(model.parameters(), lr=0.1)
    x, y = mg.randn(5, 6), mg.tensor(np.array([0, 1, 2, 0, 1]))
    steps = 4
    with profiler.profile() as prof:
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    expected = {"Linear": 2 * steps, "BatchNorm": steps, "ReLU": steps, "CrossEntropy": steps}
    assert _counts(prof, "forward") == expected
    # the first Linear's input needs no gradient, but its node still runs for the weights
    assert _counts(prof, "backward") == expected
    rows = {s.name: s for s in prof.stats()}
    assert rows["Linear"].forward_count == 2 * steps and rows["Linear"].backward_count == 2 * steps
    assert sum(s.share for s in prof.stats()) == pytest.approx(1.0)
    totals = [s.total_us for s in prof.stats()]
    assert totals == sorted(totals, reverse=True) and all(t > 0 for t in totals)
    assert rows["ReLU"].forward_mean_us == pytest.approx(rows["ReLU"].forward_us / steps)


def test_ops_under_no_grad_count_forward_only():
    x = mg.randn(3, 3)
    with mg.no_grad(), profiler.profile() as prof:
        x.exp().sum()
    assert _counts(prof, "forward") == {"Exp": 1, "Sum": 1} and not _counts(prof, "backward")


def test_each_backend_gets_its_own_row():
    x = mg.randn(4, 5, requires_grad=True)
    previous = mg.get_backend()
    try:
        with profiler.profile() as prof:
            for name in ("numpy", "cython"):
                mg.set_backend(name)
                x.softmax(axis=-1).sum().backward()
    finally:
        mg.set_backend(previous)
    softmax = {s.backend: s.forward_count for s in prof.stats() if s.name == "Softmax"}
    assert softmax == {"numpy": 1, "cython": 1}


def test_table_lists_every_op_sorted_by_time():
    x = mg.randn(16, 16, requires_grad=True)
    with profiler.profile() as prof:
        (x @ x).relu().sum().backward()
    table = prof.table()
    assert table == str(prof)
    names = [line.split()[0] for line in table.splitlines()[2:-1]]
    assert names == [s.name for s in prof.stats()] and set(names) == {"MatMul", "ReLU", "Sum"}
    assert "6 op calls" in table.splitlines()[-1]


def test_chrome_trace_parses_and_its_events_match_the_ops(tmp_path):
    x = mg.randn(8, 4, requires_grad=True)
    w = mg.randn(4, 2, requires_grad=True)
    with profiler.profile() as prof:
        (x @ w).tanh().mean().backward()
    path = tmp_path / "trace.json"
    path.write_text("old contents that must go entirely")
    prof.export_chrome_trace(path)
    trace = json.loads(path.read_text())
    events = trace["traceEvents"]
    assert Counter((e["name"], e["cat"]) for e in events) == Counter(
        {(op, phase): 1 for op in ("MatMul", "Tanh", "Mean") for phase in ("forward", "backward")})
    assert all(e["ph"] == "X" and e["dur"] >= 0 and e["ts"] >= 0 for e in events)
    assert all(e["pid"] == os.getpid() and "backend" in e["args"] for e in events)
    forward_end = max(e["ts"] + e["dur"] for e in events if e["cat"] == "forward")
    assert min(e["ts"] for e in events if e["cat"] == "backward") >= forward_end
    assert os.listdir(tmp_path) == ["trace.json"]  # no temporary file left behind


def test_chrome_trace_to_a_missing_directory_names_it(tmp_path):
    with profiler.profile() as prof:
        mg.randn(2, requires_grad=True).sum()
    with pytest.raises(FileNotFoundError, match="no such directory"):
        prof.export_chrome_trace(tmp_path / "missing" / "trace.json")


def test_an_exception_in_the_block_still_stops_profiling():
    with pytest.raises(ZeroDivisionError), profiler.profile():
        raise ZeroDivisionError
    assert _plain_engine()


def test_nested_profiles_both_record_and_a_profile_cannot_be_entered_twice():
    x = mg.randn(3, requires_grad=True)
    with profiler.profile() as outer:
        x.exp()
        with profiler.profile() as inner:
            x.exp()
            with pytest.raises(RuntimeError, match="already recording"), inner:
                pass
        x.exp()
    assert _counts(outer, "forward") == {"Exp": 3}
    assert _counts(inner, "forward") == {"Exp": 1}
    assert _plain_engine()


def test_profiling_does_not_change_results(backend):
    def run():
        mg.manual_seed(1)
        model = nn.Sequential(nn.Linear(5, 7), nn.LayerNorm(7), nn.GELU(), nn.Linear(7, 2))
        x = mg.randn(6, 5, requires_grad=True)
        (model(x) ** 2).mean().backward()
        return [p.grad.numpy().copy() for p in model.parameters()] + [x.grad.numpy().copy()]

    plain = run()
    with profiler.profile():
        profiled = run()
    for a, b in zip(plain, profiled, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_profile_entered_again_adds_to_its_record():
    # the wall time must cover every block, as the events do (not only the last block's),
    # and trace times count from the first block's start, so none is negative
    x = mg.randn(3, requires_grad=True)
    prof = profiler.profile()
    with prof:
        x.exp()
    first_wall = prof.wall_us
    time.sleep(0.05)  # between the blocks: not part of the record
    with prof:
        x.exp()
    assert _counts(prof, "forward") == {"Exp": 2}
    assert first_wall < prof.wall_us < first_wall + 40_000
    in_ops = sum(r.total_us for r in prof.stats())
    assert in_ops <= prof.wall_us
    assert min(e["ts"] for e in prof.chrome_trace()["traceEvents"]) >= 0
