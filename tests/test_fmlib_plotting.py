"""Unit tests for fmlib.plotting (Agg backend, no display)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=True)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PathCollection, QuadMesh  # noqa: E402
from matplotlib.quiver import Quiver  # noqa: E402

from fmlib import plotting  # noqa: E402

F64 = torch.float64


@pytest.fixture
def ax():
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def test_use_style_sets_rcparams():
    with matplotlib.rc_context():
        plotting.use_style()
        assert matplotlib.rcParams["axes.grid"] is True
        assert tuple(matplotlib.rcParams["figure.figsize"]) == (6.0, 4.0)
        assert matplotlib.rcParams["animation.embed_limit"] == 40.0
        assert matplotlib.rcParams["axes.spines.top"] is False


def test_grid_points_shapes_and_ordering():
    X, Y, pts = plotting.grid_points((-1.0, 1.0), (0.0, 2.0), n=5, dtype=F64)
    xs, ys = np.linspace(-1, 1, 5), np.linspace(0, 2, 5)
    assert X.shape == Y.shape == (5, 5) and pts.shape == (25, 2) and pts.dtype == F64
    np.testing.assert_array_equal(X, np.tile(xs, (5, 1)))  # meshgrid order: X[i, j] = xs[j]
    np.testing.assert_array_equal(Y, np.tile(ys[:, None], (1, 5)))  # Y[i, j] = ys[i]
    for i in range(5):
        for j in range(5):
            assert tuple(pts[i * 5 + j].tolist()) == (xs[j], ys[i])
    np.testing.assert_array_equal(pts[:, 0].numpy().reshape(5, 5), X)
    # ylim defaults to xlim; dtype defaults to float32
    X2, Y2, p2 = plotting.grid_points((-3.0, 3.0), n=4)
    np.testing.assert_array_equal(X2, Y2.T)
    assert p2.dtype == torch.float32 and p2.shape == (16, 2)


def test_grid_points_errors():
    with pytest.raises(ValueError, match="n must be a positive int"):
        plotting.grid_points(n=0)
    with pytest.raises(TypeError, match="n must be a positive int"):
        plotting.grid_points(n=2.5)


def test_plot_samples_returns_scatter_with_the_points(ax):
    x = torch.randn(30, 2, dtype=F64)
    art = plotting.plot_samples(ax, x, label="data", lims=(-5, 5))
    assert isinstance(art, PathCollection)
    np.testing.assert_allclose(art.get_offsets(), x.numpy())
    assert art.get_label() == "data"
    assert ax.get_xlim() == (-5, 5) and ax.get_ylim() == (-5, 5)
    # float32 and grad-tracking tensors are accepted
    art2 = plotting.plot_samples(ax, x.float().requires_grad_(True))
    np.testing.assert_allclose(art2.get_offsets(), x.float().numpy())


def test_plot_samples_errors(ax):
    with pytest.raises(ValueError, match="x must have dim = 2 columns"):
        plotting.plot_samples(ax, torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, dim\)"):
        plotting.plot_samples(ax, torch.zeros(5))


def _gauss_log_prob(x):
    return -0.5 * (x**2).sum(1) - np.log(2 * np.pi)


@pytest.mark.parametrize("log", [False, True])
def test_plot_density_values(ax, log):
    art = plotting.plot_density(ax, _gauss_log_prob, lims=(-2.0, 2.0), n=9, log=log)
    assert isinstance(art, QuadMesh)
    X, Y, pts = plotting.grid_points((-2.0, 2.0), n=9, dtype=F64)
    z = _gauss_log_prob(pts).numpy().reshape(9, 9)
    got = np.asarray(art.get_array()).reshape(9, 9)
    np.testing.assert_allclose(got, z if log else np.exp(z), rtol=1e-12)
    assert float(np.exp(z).max()) == pytest.approx(1 / (2 * np.pi))  # the centre (0, 0) is on the grid


def test_plot_density_errors(ax):
    with pytest.raises(ValueError, match=r"log_prob must map points \(m, 2\) to a tensor of shape \(m,\)"):
        plotting.plot_density(ax, lambda x: x, n=5)
    with pytest.raises(ValueError, match="log_prob must map points"):
        plotting.plot_density(ax, lambda x: x.sum(1).numpy(), n=5)


def test_plot_field_values_and_time(ax):
    seen = {}

    def velocity(x, t):
        seen["t"] = t
        return torch.stack([-x[:, 1], x[:, 0]], 1) * t[:, None]

    art = plotting.plot_field(ax, velocity, 0.5, lims=(-1.0, 1.0), n=5)
    assert isinstance(art, Quiver)
    assert seen["t"].shape == (25,) and bool((seen["t"] == 0.5).all())
    X, Y, _ = plotting.grid_points((-1.0, 1.0), n=5)
    np.testing.assert_allclose(np.asarray(art.U).reshape(5, 5), -0.5 * Y, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.asarray(art.V).reshape(5, 5), 0.5 * X, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(art.X, X.ravel())


def test_plot_field_errors(ax):
    with pytest.raises(ValueError, match=r"velocity must return shape \(25, 2\)"):
        plotting.plot_field(ax, lambda x, t: x[:, :1], 0.5, n=5)
    with pytest.raises(ValueError, match="velocity must return shape"):
        plotting.plot_field(ax, lambda x, t: x.numpy(), 0.5, n=5)


def test_plot_trajectories(ax):
    traj = torch.randn(11, 50, 2, dtype=F64)
    out = plotting.plot_trajectories(ax, traj, n_show=20)
    assert out is None
    assert len(ax.lines) == 20
    np.testing.assert_allclose(ax.lines[3].get_xydata(), traj[:, 3].numpy())
    starts, ends = ax.collections[-2], ax.collections[-1]
    np.testing.assert_allclose(starts.get_offsets(), traj[0, :20].numpy())
    np.testing.assert_allclose(ends.get_offsets(), traj[-1, :20].numpy())
    assert starts.get_label() == "t = 0" and ends.get_label() == "t = 1"


def test_plot_trajectories_errors(ax):
    for bad in (torch.zeros(5, 2), torch.zeros(5, 3, 3), np.zeros((5, 3, 2))):
        with pytest.raises(ValueError, match=r"trajectory must be a tensor of shape \(steps \+ 1, batch, 2\)"):
            plotting.plot_trajectories(ax, bad)


def test_animate_returns_html_player_and_closes_figure():
    from IPython.display import HTML

    fig, ax = plt.subplots(figsize=(2, 2), dpi=30)
    (line,) = ax.plot([], [])
    calls = []

    def update(i):
        calls.append(i)
        line.set_data([0, i], [0, i])
        return (line,)

    html = plotting.animate(fig, update, frames=3, interval=50)
    assert isinstance(html, HTML)
    assert "<script" in html.data
    assert set(range(3)) <= set(calls)
    assert not plt.fignum_exists(fig.number)


def test_animate_keep_open_and_errors():
    fig, ax = plt.subplots(figsize=(2, 2), dpi=30)
    try:
        html = plotting.animate(fig, lambda i: (), frames=1, close=False)
        assert "<script" in html.data
        assert plt.fignum_exists(fig.number)
        with pytest.raises(ValueError, match="frames must be a positive int"):
            plotting.animate(fig, lambda i: (), frames=0)
    finally:
        plt.close(fig)


def test_animate_player_is_offline():
    """The to_jshtml player must not link the Font Awesome stylesheet from a CDN (the book works offline)."""
    from fmlib.plotting import animate, offline_player

    fig, ax = plt.subplots()
    (line,) = ax.plot([0, 1], [0, 1])
    html = animate(fig, lambda i: (line,), 2).data
    assert "http://" not in html and "https://" not in html
    assert "<i class=\"fa" not in html and "&#9654;" in html  # play button as a Unicode triangle
    with pytest.raises(TypeError, match="html"):
        offline_player(None)
