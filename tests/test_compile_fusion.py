"""mg.compile's fused replay of a BatchNorm whose output only a ReLU reads: one kernel call
each way, the same bits as eager training; not fused when anything else reads the
BatchNorm's output (another op, the return value)."""

import numpy as np
from test_compile import assert_same_state, batches, cnn, compare_training, mlp

import minigrad as mg
import minigrad.functional as F
from minigrad import nn, optim


def forward_lines(source: str, name: str) -> int:
    return sum(line.endswith(f"# {name}") for line in source.splitlines())


def test_batchnorm_relu_pairs_of_an_mlp_are_fused(backend):
    compiled = compare_training(mlp, lambda m: optim.Adam(m.parameters(), lr=1e-2),
                                batches((16, 64)))
    source = compiled.source(*batches((16, 64), n=1)[0])
    assert forward_lines(source, "BatchNormReLU") == 2
    assert forward_lines(source, "ReLU") == 0 and forward_lines(source, "BatchNorm") == 0
    assert "# ReLU backward" not in source and source.count("# BatchNormReLU backward") == 2


def test_batchnorm2d_relu_pairs_of_a_cnn_are_fused(backend):
    compiled = compare_training(cnn, lambda m: optim.Adam(m.parameters(), lr=1e-2),
                                batches((8, 1, 8, 8)))
    assert forward_lines(compiled.source(*batches((8, 1, 8, 8), n=1)[0]), "BatchNormReLU") == 2


def special_mlp():
    """gamma 0 and beta -0.0 in some channels: BatchNorm outputs -0.0, which ReLU makes +0.0;
    the gradients there are exactly 0."""
    model = mlp()
    for bn in (model[1], model[4]):
        bn.weight.data[:8] = 0.0
        bn.bias.data[:8] = -0.0
    return model


def test_signed_zeros_and_dead_channels_like_eager(backend):
    compare_training(special_mlp, lambda m: optim.SGD(m.parameters(), lr=0.1, momentum=0.9),
                     batches((16, 64)))


class BothReadTheNorm(nn.Module):
    """The BatchNorm's output is read by the ReLU and by a sum: no fusion."""

    def __init__(self):
        super().__init__()
        mg.manual_seed(0)
        self.lin, self.bn, self.out = nn.Linear(16, 32), nn.BatchNorm1d(32), nn.Linear(32, 10)

    def forward(self, x):
        h = self.bn(self.lin(x))
        return self.out(F.relu(h) + h * 0.5)


def test_norm_output_read_twice_is_not_fused(backend):
    compiled = compare_training(BothReadTheNorm, lambda m: optim.Adam(m.parameters(), lr=1e-2),
                                batches((8, 16)))
    source = compiled.source(*batches((8, 16), n=1)[0])
    assert forward_lines(source, "BatchNormReLU") == 0
    assert forward_lines(source, "BatchNorm") == 1 and forward_lines(source, "ReLU") == 1


def test_returned_norm_output_is_not_fused_nor_overwritten(backend):
    results = []
    for compile_it in (False, True):
        mg.manual_seed(0)
        lin, bn = nn.Linear(16, 32), nn.BatchNorm1d(32)
        opt = optim.SGD([*lin.parameters(), *bn.parameters()], lr=0.1)

        def step(x, lin=lin, bn=bn, opt=opt):
            opt.zero_grad()
            h = bn(lin(x))
            F.relu(h).sum().backward()
            opt.step()
            return h.detach(), F.relu(h.detach())

        step = mg.compile(step) if compile_it else step
        results.append([tuple(t.data.copy() for t in step(x)) for x, _ in batches((8, 16))])
        if compile_it:
            source = step.source(batches((8, 16), n=1)[0][0])
            assert forward_lines(source, "BatchNormReLU") == 0
    for eager, replayed in zip(*results, strict=True):
        for a, b in zip(eager, replayed, strict=True):
            assert np.array_equal(a, b)


def test_evaluation_under_no_grad_is_fused(backend):
    train, evaluated = mlp(), mlp()
    for model in (train, evaluated):
        model.eval()
    compiled = mg.compile(lambda x: evaluated(x))
    for x, _ in batches((16, 64)):
        with mg.no_grad():
            expected, got = train(x), compiled(x)
        assert np.array_equal(expected.data, got.data)
    assert compiled.replays == len(batches((16, 64))) - 1
    with mg.no_grad():
        source = compiled.source(batches((16, 64), n=1)[0][0])
    assert forward_lines(source, "BatchNormReLU") == 2


def test_frozen_norm_parameters_like_eager(backend):
    """The BatchNorm's weight and bias do not require grad: the fused backward returns only
    the gradient of its input."""
    def make():
        model = mlp()
        for bn in (model[1], model[4]):
            bn.weight.requires_grad = False
            bn.bias.requires_grad = False
        return model

    def make_opt(m):
        return optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-2)

    eager_model, compiled_model = make(), make()
    eager_opt, compiled_opt = make_opt(eager_model), make_opt(compiled_model)

    def step_of(model, opt):
        def step(x, y):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss
        return step

    eager, compiled = step_of(eager_model, eager_opt), mg.compile(step_of(compiled_model,
                                                                            compiled_opt))
    for x, y in batches((16, 64)):
        assert np.array_equal(eager(x, y).data, compiled(x, y).data)
        assert_same_state(eager_model, None, compiled_model, None)
    assert compiled.replays == len(batches((16, 64))) - 1


# ----------------------------------------------------------------------------- cross-entropy
def loss_step(model, opt, loss_fn):
    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


def compare_losses(loss_fn, fused, dtype=np.float32):
    """Eager and compiled training with ``loss_fn`` agree bit for bit; the replay fuses the
    cross-entropy (``fused``) or not."""
    rng = np.random.default_rng(3)
    data = [(mg.tensor(rng.standard_normal((16, 64)), dtype=dtype), rng.integers(0, 10, 16))
            for _ in range(4)]
    for _, y in data:
        y[::5] = 3  # the class ignored by some of the losses below
    models = [mlp(), mlp()]
    if dtype == np.float64:
        models = [m.double() for m in models]
    opts = [optim.Adam(m.parameters(), lr=1e-2) for m in models]
    eager = loss_step(models[0], opts[0], loss_fn)
    compiled = mg.compile(loss_step(models[1], opts[1], loss_fn))
    for x, y in data:
        assert np.array_equal(eager(x, y).data, compiled(x, y).data)
        assert_same_state(models[0], opts[0], models[1], opts[1])
    assert compiled.replays == len(data) - 1
    source = compiled.source(*data[0])
    assert (forward_lines(source, "CrossEntropyMean") == 1) == fused


def test_mean_cross_entropy_is_fused(backend):
    compare_losses(F.cross_entropy, fused=True)


def test_label_smoothing_and_ignored_rows_like_eager(backend):
    compare_losses(lambda z, y: F.cross_entropy(z, y, label_smoothing=0.1, ignore_index=3),
                   fused=True)


def test_float64_cross_entropy_like_eager(backend):
    compare_losses(F.cross_entropy, fused=True, dtype=np.float64)


def test_summed_cross_entropy_is_not_fused(backend):
    compare_losses(lambda z, y: F.cross_entropy(z, y, reduction="sum"), fused=False)


def test_cross_entropy_inside_a_larger_loss_is_not_fused(backend):
    """The backward of the cross-entropy receives 0.5 from the sum, not the seed."""
    compare_losses(lambda z, y: F.cross_entropy(z, y) * 0.5 + (z * z).mean(), fused=False)


def test_layernorm_relu_pairs_are_fused(backend):
    compiled = compare_training(lambda: mlp("layernorm"),
                                lambda m: optim.AdamW(m.parameters(), lr=1e-2), batches((16, 64)))
    source = compiled.source(*batches((16, 64), n=1)[0])
    assert forward_lines(source, "LayerNormReLU") == 2 and forward_lines(source, "ReLU") == 0
