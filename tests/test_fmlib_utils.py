"""Unit tests for fmlib.utils: seeding, generators and device selection."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from fmlib.utils import best_time, flat_grad, get_device, make_generator, seed_everything


def _draw():
    return random.random(), float(np.random.rand()), torch.rand(3)


def test_seed_everything_makes_all_rngs_reproducible():
    seed_everything(123)
    a = _draw()
    seed_everything(123)
    b = _draw()
    assert a[0] == b[0]
    assert a[1] == b[1]
    assert torch.equal(a[2], b[2])
    seed_everything(124)
    c = _draw()
    assert a[0] != c[0] and a[1] != c[1] and not torch.equal(a[2], c[2])


def test_seed_everything_matches_the_individual_seeders():
    seed_everything(7)
    got = _draw()
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    want = _draw()
    assert got[0] == want[0] and got[1] == want[1] and torch.equal(got[2], want[2])


def test_seed_everything_returns_a_seeded_generator():
    g = seed_everything(5)
    assert isinstance(g, torch.Generator)
    assert g.initial_seed() == 5
    ref = torch.Generator().manual_seed(5)
    assert torch.equal(torch.randn(4, generator=g), torch.randn(4, generator=ref))


def test_seed_everything_large_seed_reduced_for_numpy():
    g = seed_everything(2**40 + 3)  # NumPy only takes 32-bit seeds: it gets seed % 2**32
    x = float(np.random.rand())
    np.random.seed(3)
    assert x == float(np.random.rand())
    assert g.initial_seed() == 2**40 + 3


@pytest.mark.parametrize("seed", ["1", 1.0, None, True, [1]])
def test_seed_everything_rejects_non_int(seed):
    with pytest.raises(TypeError, match="seed"):
        seed_everything(seed)


def test_seed_everything_rejects_negative():
    with pytest.raises(ValueError, match="seed must be >= 0"):
        seed_everything(-1)


def test_make_generator_from_seed_is_fresh_and_reproducible():
    g1, g2 = make_generator(11), make_generator(11)
    assert g1 is not g2
    assert g1.initial_seed() == 11
    assert torch.equal(torch.rand(5, generator=g1), torch.rand(5, generator=g2))
    assert not torch.equal(torch.rand(5, generator=make_generator(11)), torch.rand(5, generator=make_generator(12)))


def test_make_generator_passes_generator_through():
    g = torch.Generator()
    assert make_generator(generator=g) is g
    assert make_generator(None, g) is g


def test_make_generator_default_is_global_and_follows_seed_everything():
    assert make_generator() is torch.default_generator
    seed_everything(3)
    a = torch.rand(4, generator=make_generator())
    seed_everything(3)
    b = torch.rand(4)
    assert torch.equal(a, b)


def test_make_generator_errors():
    with pytest.raises(ValueError, match="either seed or generator"):
        make_generator(1, torch.Generator())
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        make_generator(generator="not a generator")
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(ValueError, match="seed must be a non-negative int"):
            make_generator(bad)


def test_get_device_auto_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_device() == torch.device("cpu")
    assert get_device("auto") == torch.device("cpu")


def test_get_device_auto_picks_cuda_when_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    dev = get_device("auto")
    assert isinstance(dev, torch.device) and dev.type == "cuda"


def test_get_device_explicit_values(monkeypatch):
    assert get_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert get_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="only 2 CUDA device"):
        get_device("cuda:2")
    d = torch.device("cpu")
    assert get_device(d) is d


def test_get_device_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="PyTorch sees no CUDA GPU"):
        get_device("cuda")


@pytest.mark.parametrize("bad", ["gpu", "cuda:x", "", "auto2"])
def test_get_device_bad_string(bad):
    with pytest.raises(ValueError, match="device must be"):
        get_device(bad)


@pytest.mark.parametrize("bad", [0, None, 1.0])
def test_get_device_bad_type(bad):
    with pytest.raises(TypeError, match="device must be"):
        get_device(bad)


def test_best_time_wall_clock_measures_a_sleep():
    import time

    seconds = best_time(lambda: time.sleep(0.02), repeats=2, warmup=0)
    assert 0.02 <= seconds < 0.5


def test_best_time_cpu_clock_ignores_sleep_and_runs_warmup():
    import time

    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.02)

    assert best_time(fn, repeats=3, warmup=2, clock="cpu") < 0.015  # sleeping uses no CPU time
    assert len(calls) == 5


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"repeats": 0}, ValueError, "repeats must be an integer >= 1"),
        ({"warmup": -1}, ValueError, "warmup must be an integer >= 0"),
        ({"clock": "gpu"}, ValueError, "clock must be one of"),
    ],
)
def test_best_time_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        best_time(lambda: None, **kwargs)
    with pytest.raises(TypeError, match="fn must be a function"):
        best_time(3)


def test_flat_grad_matches_hand_gradient_in_parameter_order():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    loss = (net(x) ** 2).sum()
    y = net(x)  # d loss / dW = 2 y^T x, d loss / db = 2 sum_i y_i
    expected = torch.cat([(2 * y.T @ x).flatten(), (2 * y.sum(0))]).detach()
    torch.testing.assert_close(flat_grad(loss, net, retain_graph=True), expected)
    torch.testing.assert_close(flat_grad(loss, [net.weight, net.bias]), expected)


def test_flat_grad_unused_parameter_gives_zeros_and_bad_inputs_raise():
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    unused = torch.zeros(3, requires_grad=True)
    torch.testing.assert_close(flat_grad((a**2).sum(), [a, unused]), torch.tensor([2.0, 4.0, 0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match=r"loss must be a scalar tensor; got \(2,\)"):
        flat_grad(a**2, [a])
    with pytest.raises(TypeError, match="parameters must be"):
        flat_grad((a**2).sum(), [])
