"""minigrad.viz: look inside a network. The graph behind a tensor as Graphviz DOT text
(``to_dot``) or as a PNG/SVG picture drawn with matplotlib (``draw``, the ``viz`` extra)."""

from .dot import to_dot
from .draw import draw
