"""minigrad.viz: look inside a network. ``trace_backward`` runs a backward pass and reports
it step by step: each node, the gradient it received and those it passed on."""

from .trace import BackwardTrace, GradInfo, TraceStep, trace_backward

__all__ = ["BackwardTrace", "GradInfo", "TraceStep", "trace_backward"]
