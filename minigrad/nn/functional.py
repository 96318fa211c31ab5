"""``minigrad.nn.functional``: the same stateless API as ``minigrad.functional``, under the
name PyTorch users reach for (``import minigrad.nn.functional as F``)."""

from ..functional import *  # noqa: F403
from ..functional import __all__  # noqa: F401
