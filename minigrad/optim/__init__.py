"""Optimizers (SGD, Adam, AdamW, RMSprop) and learning-rate schedulers.

Each optimizer keeps PyTorch's per-parameter state and updates all parameters of a group in
one fused kernel call (see optimizer.py); each update rule is written out in its own file.
"""

from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "Optimizer", "lr_scheduler"]
