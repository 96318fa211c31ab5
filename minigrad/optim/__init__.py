"""Optimizers (SGD, Adam, AdamW, RMSprop) and learning-rate schedulers.

Each optimizer updates all parameters of a group in one fused kernel call (see optimizer.py).
"""

from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "Optimizer", "lr_scheduler"]
