"""Layers, losses and containers: the stateful, PyTorch-shaped API."""

from . import init
from .activation import GELU, Flatten, LeakyReLU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, Tanh
from .dropout import Dropout
from .linear import Identity, Linear
from .module import Module, ModuleList, Parameter, Sequential
