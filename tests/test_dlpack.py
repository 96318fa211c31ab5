"""DLPack: Tensor.__dlpack__ and mg.from_dlpack share memory with NumPy, PyTorch and JAX, carry
no graph, and refuse what would let another framework write behind the version counter."""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg


def test_numpy_reads_a_tensor_without_a_copy():
    x = mg.tensor(np.arange(12.0).reshape(3, 4))
    view = np.from_dlpack(x)
    assert np.shares_memory(view, x.data)
    view[0, 0] = 100.0
    assert x.data[0, 0] == 100.0
    assert x.__dlpack_device__() == (1, 0)


@pytest.mark.parametrize("make", [
    lambda: mg.tensor(np.arange(12.0).reshape(3, 4)).T,           # transposed view
    lambda: mg.tensor(np.arange(24.0).reshape(4, 6))[::2, 1::2],  # strided slice
    lambda: mg.tensor(np.arange(3), dtype=np.int64),
    lambda: mg.tensor([True, False]),
    lambda: mg.tensor(2.5, dtype=np.float64),                     # 0-d
    lambda: mg.zeros(0, 3),
])
def test_any_layout_and_dtype_crosses_to_numpy_and_back(make):
    x = make()
    back = mg.from_dlpack(np.from_dlpack(x))
    assert back.dtype == x.dtype and back.shape == x.shape
    np.testing.assert_array_equal(back.numpy(), x.numpy())
    assert x.data.size == 0 or np.shares_memory(back.data, x.data)


def test_a_tensor_that_requires_grad_is_not_shared_but_can_be_copied():
    w = mg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(BufferError, match="detach"):
        np.from_dlpack(w)
    copied = np.from_dlpack(w, copy=True)
    copied[0] = 50.0
    assert w.data[0] == 1.0
    shared = np.from_dlpack(w.detach())  # sharing on purpose, as with .data
    assert np.shares_memory(shared, w.data)


def test_from_dlpack_refuses_what_minigrad_cannot_hold():
    with pytest.raises(TypeError, match="float16"):
        mg.from_dlpack(np.ones(3, np.float16))
    with pytest.raises(TypeError, match="__dlpack__"):
        mg.from_dlpack([1.0, 2.0])


def test_from_dlpack_copy_flag():
    a = np.ones(3, np.float32)
    x = mg.from_dlpack(a, copy=True)
    a[0] = 7.0
    assert x.data[0] == 1.0 and not x.requires_grad


def test_pytorch_shares_memory_both_ways():
    torch = pytest.importorskip("torch")
    x = mg.tensor(np.arange(6.0).reshape(2, 3))
    t = torch.from_dlpack(x)
    t.add_(1.0)  # a write through PyTorch is seen by minigrad ...
    np.testing.assert_array_equal(x.numpy(), np.arange(6.0).reshape(2, 3) + 1)

    source = torch.arange(4, dtype=torch.float64)
    y = mg.from_dlpack(source)
    assert y.dtype == np.float64 and not y.requires_grad
    version = y._version
    y += 1.0  # ... and one through minigrad by PyTorch; minigrad's own counter moves
    assert source.tolist() == [1.0, 2.0, 3.0, 4.0] and y._version == version + 1
    assert torch.from_dlpack(x.T).stride() == (1, 3)  # strides survive, no copy

    with pytest.raises(BufferError, match="detach"):
        mg.from_dlpack(torch.ones(2, requires_grad=True))
    with pytest.raises(BufferError, match="detach"):
        torch.from_dlpack(mg.ones(2, requires_grad=True))
    with pytest.raises(TypeError, match="bfloat16|dtype"):
        mg.from_dlpack(torch.ones(2, dtype=torch.bfloat16))


def test_jax_reads_and_gives_tensors():
    jnp = pytest.importorskip("jax.numpy")
    jax = pytest.importorskip("jax")
    x = mg.tensor(np.arange(6.0).reshape(2, 3))
    j = jax.dlpack.from_dlpack(x)
    np.testing.assert_array_equal(np.asarray(j), x.numpy())
    back = mg.from_dlpack(jnp.arange(4.0))
    np.testing.assert_array_equal(back.numpy(), np.arange(4.0, dtype=np.float32))
    with pytest.raises(ValueError, match="read-only"):  # JAX arrays are immutable
        back += 1.0


def test_from_dlpack_of_a_minigrad_tensor_shares_its_version_counter(backend):
    w = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    alias = mg.from_dlpack(w.detach())
    assert np.shares_memory(alias.data, w.data) and not alias.requires_grad
    out = (w * w).sum()
    alias.add_(1.0)  # changes the values Mul saved for backward
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        out.backward()
    copied = mg.from_dlpack(w.detach(), copy=True)
    assert not np.shares_memory(copied.data, w.data)


def test_a_negated_pytorch_view_crosses_with_its_true_values():
    torch = pytest.importorskip("torch")
    z = torch.tensor([1 + 2j, 3 - 4j], dtype=torch.complex64)
    imag = z.conj().imag  # a view of z's memory with the negative bit set: values -2, 4
    assert imag.is_neg()
    np.testing.assert_array_equal(mg.from_dlpack(imag).numpy(), [-2.0, 4.0])
    with pytest.raises(BufferError, match="negated view"):
        mg.from_dlpack(imag, copy=False)
    layer = mg.nn.Linear(2, 1)  # a PyTorch state dict is read through the same path
    weight = imag.reshape(1, 2)
    assert weight.is_neg()
    layer.load_state_dict({"weight": weight, "bias": torch.zeros(1)})
    np.testing.assert_array_equal(layer.weight.numpy(), [[-2.0, 4.0]])
