"""The course's units in teaching order: what each asks, the math it rests on, what it checks.

A unit groups exercises; an exercise is a function of the library marked in its source by a
comment line ``# exercise: <name>`` just above it (above the decorator of a method). The marker
is the only trace of the course in the library's code; ``make`` finds the functions through it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Unit:
    """One unit of the course: a lecture's worth of exercises, graded together.

    ``exercises`` maps each exercise name (as in its marker) to a one-line description;
    ``doc`` points into docs/; ``math`` is the handout's statement of what to compute;
    ``checks`` says in plain words what the grader verifies. ``withheld`` lists modules
    (paths under the package) that solve the unit in another form and have no place for a
    stub; the student copy replaces each with a module that raises when used.
    """

    key: str
    title: str
    exercises: dict[str, str]
    doc: str
    math: str
    checks: str
    withheld: tuple[str, ...] = ()


UNITS: tuple[Unit, ...] = (
    Unit(
        "engine", "The engine: topological backward and gradient accumulation",
        {
            "engine_order": "count, for every node reachable from the root, how many graph "
                            "edges point into it (iteratively: no recursion)",
            "engine_backward": "run each node's backward once all its consumers have passed "
                               "their gradients, summing gradients of tensors used twice",
        },
        "docs/architecture.md, \"One op, down and back\" (Backward)",
        "A node may run its `backward` only when every node that used its output has handed "
        "its gradient back: count each node's uses first (`_consumer_counts`), then process "
        "nodes from the root, decrementing the counts (Kahn's algorithm). Gradients reaching "
        "the same node are added. Leaves receive theirs through `_accumulate_leaf`, and "
        "`_fit` brings a gradient to its input's shape and dtype. Unless `retain_graph`, "
        "release each node's saved arrays (`node.saved = None`) after its backward; a node "
        "whose `saved` is already None must raise through `_raise_released`. The in-place checks "
        "of the library's version (`_check_saved`, `_node_at` for nodes whose inputs changed "
        "after their forward) are optional here: the grader does not test them.",
        "gradients of chains, of a tensor used twice and of a diamond-shaped graph against "
        "the answer key; a chain of thousands of ops (a recursive walk fails); accumulation "
        "into `.grad` over two backward calls; a second backward without `retain_graph` "
        "raises.",
        # the walk with hooks and observers: the same algorithm, written out in full
        withheld=("_observed.py",),
    ),
    Unit(
        "elementwise", "Elementwise backwards with broadcasting",
        {
            "unbroadcast": "sum a gradient back to an input's shape, undoing NumPy "
                           "broadcasting",
            "mul_backward": "gradients of y = a * b",
            "div_backward": "gradients of y = a / b",
            "pow_backward": "gradients of y = a ** b for both operands",
            "exp_backward": "gradient of y = exp(x)",
            "log_backward": "gradient of y = log(x)",
            "sqrt_backward": "gradient of y = sqrt(x)",
            "tanh_backward": "gradient of y = tanh(x)",
            "sigmoid_backward": "gradient of y = sigmoid(x)",
            "relu_backward": "gradient of y = max(x, 0), from the output y (its kernel twin, "
                             "kernels/_activation_twin.py)",
        },
        "docs/architecture.md, \"The layers\"; the class docstrings in ops/elementwise.py",
        "Each backward returns d(loss)/d(input) given `grad` = d(loss)/d(output), one array "
        "per input, in input order (None where `ctx.needs_input_grad` says no gradient is "
        "needed). Broadcasting repeats an input along new leading axes and along axes of "
        "length 1; its adjoint sums the gradient over exactly those axes (`unbroadcast`).",
        "each op's gradients against the answer key for random shapes, with and without "
        "broadcasting; `unbroadcast` on random broadcast pairs; finite differences "
        "(`mg.gradcheck`) on a composite expression.",
    ),
    Unit(
        "linear", "Matrix products and the Linear layer",
        {
            "matmul_backward": "gradients of a @ b with NumPy's batching and 1-D rules",
            "linear_forward": "y = x W^T + b for x of shape (..., in)",
            "linear_backward": "gradients of the linear map for x, W and b",
        },
        "docs/architecture.md, \"Adding an op\"",
        "For y = a @ b: da = g @ b^T and db = a^T @ g; batch dimensions that were broadcast "
        "are summed back (`_sum_to`), and a 1-D operand behaves as a row (for a) or a column "
        "(for b). For y = x W^T + b over leading dims: dx = g W, dW = g^T x with every "
        "leading dim flattened, db = the sum of g over the leading dims. `Linear.forward` "
        "must save what its backward reads.",
        "matmul gradients for 2-D, batched, broadcast and 1-D operands; Linear's output and "
        "gradients with and without bias and with extra leading dims, against the answer "
        "key; finite differences.",
    ),
    Unit(
        "reductions", "Reductions: sum, mean, var, max",
        {
            "spread_gradient": "copy a reduced gradient back over every reduced position "
                               "(optionally scaled)",
            "sum_backward": "gradient of a sum over some axes",
            "mean_backward": "gradient of a mean over some axes",
            "var_backward": "gradient of the variance (any correction)",
            "max_backward": "gradient of max and min: all of it to the first extreme element",
        },
        "docs/architecture.md, \"The layers\"; ops/reduce.py's class docstrings",
        "Sum: every reduced position receives the output gradient (`ctx.kept_shape` is the "
        "output's shape with the reduced axes kept as 1). Mean: the same divided by the "
        "number M of reduced elements. Var with divisor M - correction: dx = g * 2 (x - "
        "mean) / (M - correction). Max and min: the gradient goes to the first extreme "
        "element in C order over the reduced axes (`index`, saved by the forward, counts "
        "positions in that order); every other element gets 0.",
        "each reduction's gradient for random shapes, axes (int, tuple, None) and keepdims "
        "against the answer key; ties in max go to the first element; finite differences.",
    ),
    Unit(
        "softmax", "Softmax, log-softmax and log-sum-exp",
        {
            "softmax_forward": "y = exp(x - max) / sum exp(x - max) along one axis",
            "log_softmax_forward": "y = x - max - log(sum exp(x - max)) along one axis",
            "softmax_backward": "dx from softmax's output y and the upstream gradient",
            "log_softmax_backward": "dx from log_softmax's output y and the upstream "
                                    "gradient",
            "logsumexp_forward": "stable log(sum(exp(x))) over some axes",
            "logsumexp_backward": "gradient of log-sum-exp",
        },
        "docs/architecture.md; the module docstring of kernels/_softmax_twin.py",
        "Subtract the maximum before exponentiating so that large inputs do not overflow "
        "(softmax is unchanged by a shift); accumulate sums in float64 for float32 data. "
        "Softmax backward: dx = y * (g - sum(g * y)); log-softmax backward: dx = g - exp(y) "
        "* sum(g), the sums along the softmax axis. The gradient of log-sum-exp is the "
        "softmax over the reduced axes.",
        "values for random shapes and axes, including inputs offset by 1000 (no overflow), "
        "rows of softmax summing to 1, and gradients, all against the answer key; finite "
        "differences.",
    ),
    Unit(
        "cross_entropy", "Cross-entropy, fused",
        {
            "cross_entropy_forward": "per-row loss and the two parts of the row log-sum-exp "
                                     "(row max, log of the shifted sum) of logits (N, C) "
                                     "against integer targets, with label smoothing and "
                                     "ignore_index",
            "cross_entropy_backward": "gradient of the per-row loss with respect to the "
                                      "logits",
            "cross_entropy_composite": "the same loss from primitive ops (log_softmax and "
                                       "indexing): the fused=False path",
        },
        "docs/architecture.md; the docstring of ops/loss.py's CrossEntropy",
        "Per row i with target t and smoothing ls: loss_i = lse_i - (1 - ls) x[i, t] - ls / "
        "C sum_j x[i, j], lse_i = log sum_j exp(x[i, j]) computed stably; rows whose target "
        "equals ignore_index get loss 0. Backward: dx[i, j] = g_i (softmax(x_i)_j - (1 - ls) "
        "[j == t] - ls / C), zero on ignored rows. The composite builds the same loss from "
        "`reduce.log_softmax`, `_picked_nll` and `_reduce_counted`.",
        "the loss for each reduction, with label smoothing, ignore_index and logits offset "
        "by 1000; the gradient; the composite (fused=False) path; all against the answer "
        "key, and finite differences.",
    ),
    Unit(
        "batchnorm_forward", "BatchNorm forward in training and eval, with running statistics",
        {
            "batchnorm_forward": "y, the batch mean and rstd = 1/sqrt(var + eps); training "
                                 "updates the running buffers in place",
            "batchnorm_composite": "the same forward from primitive ops (the fused=False "
                                   "path), running statistics included",
        },
        "docs/normalization.md, \"Forward formulas\" and \"Running statistics and the "
        "momentum convention\"",
        "Per channel (axis 1) over the M values of N and the spatial axes: mean = sum(x) / "
        "M, var = mean((x - mean)^2) (biased), x_hat = (x - mean) / sqrt(var + eps), y = "
        "gamma x_hat + beta (gamma None means 1, beta None means 0). Training with buffers: "
        "running_mean = running_mean * momentum + mean * (1 - momentum), running_var = "
        "running_var * momentum + var * M / (M - 1) * (1 - momentum) (the unbiased variance), "
        "updated in place. Eval: normalise with the running statistics and change nothing. "
        "Return (y, mean, rstd) with mean and rstd float64 (C,).",
        "outputs for (N, C), (N, C, L) and (N, C, H, W) inputs; the running statistics after "
        "several training steps; eval mode using (and not changing) them; the train/eval "
        "switch of nn.BatchNorm1d; the composite path; all against the answer key.",
    ),
    Unit(
        "batchnorm_backward", "BatchNorm backward: the closed form",
        {
            "batchnorm_backward": "dx, dgamma and dbeta of BatchNorm in one pass of sums, "
                                  "training and eval",
        },
        "docs/normalization.md, \"Deriving the backward closed forms\"",
        "With x_hat = (x - mean) * rstd and sums over the M values of each channel: dbeta = "
        "sum(dy), dgamma = sum(dy * x_hat), and in training dx = gamma * rstd / M * (M * dy "
        "- dbeta - x_hat * dgamma); in eval mode the statistics were constants and dx = "
        "gamma * rstd * dy. dgamma and dbeta have x's dtype (accumulate in float64).",
        "dx, dgamma and dbeta of the kernel for (N, C) and (N, C, H, W) inputs, training and "
        "eval, with and without gamma, against the answer key; finite differences through "
        "F.batch_norm.",
    ),
    Unit(
        "layernorm", "LayerNorm forward and backward",
        {
            "layernorm_forward": "y, mean and rstd per sample over the trailing "
                                 "normalized_ndim axes",
            "layernorm_backward": "dx, dgamma and dbeta of LayerNorm, closed form",
            "layernorm_composite": "the same forward from primitive ops (the fused=False "
                                   "path)",
        },
        "docs/normalization.md, \"Forward formulas\" (LayerNorm) and \"Deriving the backward "
        "closed forms\"",
        "Per sample over its D trailing values: mean, biased var, x_hat = (x - mean) * rstd, "
        "y = gamma x_hat + beta, the same in training and eval. Backward with g = dy * gamma: "
        "dx = rstd / D * (D g - sum(g) - x_hat * sum(g * x_hat)); dgamma = sum over samples "
        "of dy * x_hat, dbeta = sum over samples of dy. mean and rstd are float64 with the "
        "leading shape.",
        "outputs and gradients for several normalized shapes, with and without gamma and "
        "beta, against the answer key; train and eval agree; the composite path; finite "
        "differences.",
    ),
    Unit(
        "optim", "SGD with momentum, and Adam",
        {
            "sgd_step": "one SGD update of every parameter in place: weight decay, momentum "
                        "(with dampening), Nesterov",
            "adam_step": "one Adam / AdamW update in place, with AMSGrad",
            "adam_bias_corrections": "Adam's bias corrections lr / (1 - beta1^t) and "
                                     "sqrt(1 - beta2^t)",
        },
        "the docstrings of optim/sgd.py and optim/adam.py (PyTorch's documented rules)",
        "SGD: d = g + wd p; with momentum b = d on a parameter's first step, else b = mu b + "
        "(1 - dampening) d; d = d + mu b (Nesterov) or d = b; p -= lr d. Adam at step t: d = "
        "g + wd p (AdamW instead scales p by 1 - lr wd first); m = b1 m + (1 - b1) d; v = b2 v "
        "+ (1 - b2) d^2; AMSGrad keeps vmax = max(vmax, v) and uses it below; p -= lr / (1 - "
        "b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). Update params and state arrays in "
        "place.",
        "parameter trajectories over several steps of SGD (plain, momentum, dampening, "
        "Nesterov, weight decay) and Adam (Adam, AdamW, AMSGrad) against the answer key.",
    ),
    Unit(
        "conv2d", "Convolution: conv2d forward and backward",
        {
            "conv2d_windows": "the windows of the padded input under every output position "
                              "(a strided view, no copy)",
            "conv2d_forward": "y = conv2d(x, w) + b with stride, padding, dilation, groups",
            "conv2d_backward": "dx, dw and db of conv2d",
        },
        "docs/convolution.md, \"The math\" and \"The algorithm\"",
        "y[n, o, p, q] = b[o] + sum_{c, i, j} w[o, c, i, j] x_pad[n, c, p sh + i dh, q sw + j "
        "dw], c over the input channels of o's group. dw sums dy times the same windows over "
        "n, p, q; dx scatters w^T dy back through them (then crops the padding); db = sum of "
        "dy over n, p, q. `numpy.lib.stride_tricks.sliding_window_view` and `np.einsum` are "
        "the tools the reference uses.",
        "outputs and gradients for several strides, paddings, dilations and group counts, "
        "and a 1-D convolution, against the answer key; finite differences.",
    ),
)


def unit(key: str) -> Unit:
    """The unit named ``key``; ValueError listing the known keys otherwise."""
    for u in UNITS:
        if u.key == key:
            return u
    raise ValueError(f"unknown unit {key!r}; the units are: {', '.join(u.key for u in UNITS)}")


def unit_of(exercise: str) -> Unit:
    """The unit an exercise belongs to."""
    for u in UNITS:
        if exercise in u.exercises:
            return u
    raise ValueError(f"exercise {exercise!r} belongs to no unit")
