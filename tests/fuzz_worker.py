"""Fuzz minigrad's compiled kernels and public ops; run by tests/test_fuzz.py in a child process.

Usage: ``python tests/fuzz_worker.py GROUP [MAX_EXAMPLES]`` with GROUP one of ``reduce``,
``softmax``, ``norm``, ``optim``, ``garbage``, ``ops``, ``pool``, ``conv``,
``activation``. Every case must
either agree with the NumPy twin (and, for valid inputs, a float64 NumPy reference) or raise an
ordinary Python exception on both backends. A crash in a kernel kills this process with a
signal, which the parent test reports with the signal's name; any disagreement exits with
status 1 and a traceback. Hypothesis is derandomized, so a run is reproducible.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fuzz_conv import run_conv  # noqa: E402
from fuzz_embed import run_embed  # noqa: E402
from fuzz_garbage import run_garbage  # noqa: E402
from fuzz_kernels import run_activation, run_norm, run_reduce, run_softmax  # noqa: E402
from fuzz_ops import run_ops  # noqa: E402
from fuzz_optim import run_optim  # noqa: E402
from fuzz_pool import run_pool  # noqa: E402

GROUPS = {"reduce": run_reduce, "softmax": run_softmax, "norm": run_norm, "optim": run_optim,
          "garbage": run_garbage, "ops": run_ops, "pool": run_pool,
          "conv": run_conv, "embed": run_embed, "activation": run_activation}


if __name__ == "__main__":
    group = sys.argv[1]
    examples = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    GROUPS[group](examples)
    print(f"fuzz group {group}: {examples} examples passed")
