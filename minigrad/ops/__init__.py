"""Differentiable ops: one ``Function`` subclass per op, grouped by family, on ndarrays only.

Each Function's ``forward(ctx, *arrays, **attrs)`` and ``backward(ctx, grad)`` take and return
ndarrays and call kernels through ``minigrad.kernels.impl``. They trust their arguments: the
public functions of ``minigrad.functional`` check them once and call ``Function.apply``.
"""
