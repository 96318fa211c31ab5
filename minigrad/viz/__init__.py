"""minigrad.viz: look inside a network. ``trace_backward`` runs a backward pass and reports
it step by step: each node, the gradient it received and those it passed on. The graph
behind a tensor as Graphviz DOT text (``to_dot``) or as a PNG/SVG picture drawn with
matplotlib (``draw``, the ``viz`` extra). ``Monitor`` records per-layer statistics while a
model trains and plots them."""

from .dot import to_dot
from .draw import draw
from .monitor import Monitor
from .trace import BackwardTrace, GradInfo, TraceStep, trace_backward

__all__ = ["BackwardTrace", "GradInfo", "TraceStep", "trace_backward", "to_dot", "draw",
           "Monitor"]
