"""Optimizers and a model converted with Module.double() / .float(): built after the
conversion they follow the update rules in the new dtype; built before, they work until their
state exists and then refuse to step, naming the fix. Every test runs on both kernel backends."""

from __future__ import annotations

import numpy as np
import pytest
from optim_cases import CASES, TOL, case_id, grads_for, make_params, set_grads

from minigrad import nn, optim

pytestmark = pytest.mark.usefixtures("backend")


class _Params(nn.Module):
    """A module holding the float32 parameters of the optimizer test cases."""

    def __init__(self):
        super().__init__()
        for i, p in enumerate(make_params(0, np.float32)):
            setattr(self, f"p{i}", p)


def _run_and_check(cls, rule, options, model, opt):
    params = list(model.parameters())
    expected = [p.data.copy() for p in params]
    states = [{} for _ in params]
    for t, grads in enumerate(grads_for(1, n_steps=4), start=1):
        set_grads(params, grads)
        opt.step()
        expected = [rule(e, g, s, t, **options) for e, g, s in zip(expected, grads, states,
                                                                    strict=True)]
        for p, e in zip(params, expected, strict=True):
            assert p.data.dtype == np.float64
            np.testing.assert_allclose(p.data, e, **TOL[np.float64])
    for state in opt.state.values():
        assert all(v.dtype == np.float64 for v in state.values() if isinstance(v, np.ndarray))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_optimizer_built_after_double_follows_the_rule_in_float64(case):
    cls, rule, options = case
    model = _Params().double()
    _run_and_check(cls, rule, options, model, cls(model.parameters(), **options))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_optimizer_built_before_double_works_while_it_has_no_state(case):
    # The optimizer holds the same Parameter objects, whose arrays changed dtype.
    cls, rule, options = case
    model = _Params()
    opt = cls(model.parameters(), **options)
    model.double()
    _run_and_check(cls, rule, options, model, opt)


STATEFUL = [c for c in CASES if c[0] is not optim.SGD or c[2].get("momentum")]


@pytest.mark.parametrize("case", STATEFUL, ids=case_id)
@pytest.mark.parametrize("convert", ["double", "float"])
def test_state_of_the_old_dtype_refuses_to_step_and_names_the_fix(case, convert):
    cls, _, options = case
    model = _Params() if convert == "double" else _Params().double()
    params = list(model.parameters())
    opt = cls(params, **options)
    grads = grads_for(2, n_steps=2)
    set_grads(params, grads[0])
    opt.step()
    getattr(model, convert)()
    set_grads(params, grads[1])
    before = [p.data.copy() for p in params]
    with pytest.raises(TypeError, match=r"parameter 0 of a group changed from float\d\d to "
                       r"float\d\d since its state .* build the optimizer after converting "
                       r"the model, or cast its state with opt\.load_state_dict"):
        opt.step()
    for p, b in zip(params, before, strict=True):  # nothing was updated
        np.testing.assert_array_equal(p.data, b)
    opt.load_state_dict(opt.state_dict())  # the named fix: the state takes the new dtype
    opt.step()
    dtype = np.float64 if convert == "double" else np.float32
    for p, b in zip(params, before, strict=True):
        assert p.data.dtype == dtype and np.all(np.isfinite(p.data))
        assert not np.array_equal(p.data, b)
    for state in opt.state.values():
        assert all(v.dtype == dtype for v in state.values() if isinstance(v, np.ndarray))
