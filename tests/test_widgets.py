"""Tests for fmlib.widgets: the scene, still frames, the static animation and the live explorer (Agg backend)."""

from __future__ import annotations

import base64
import re

import matplotlib

matplotlib.use("Agg", force=True)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from matplotlib.quiver import Quiver  # noqa: E402

from fmlib import widgets  # noqa: E402
from fmlib.paths import CondOTPath, VPPath  # noqa: E402
from fmlib.solvers import integrate  # noqa: E402
from fmlib.targets import GaussianMixture, marginal_velocity  # noqa: E402

F64 = torch.float64


@pytest.fixture(scope="module")
def mixture():
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0]], dtype=F64)
    return GaussianMixture(means, torch.tensor([0.5, 0.3], dtype=F64), torch.tensor([0.7, 0.3], dtype=F64))


@pytest.fixture(scope="module")
def scene(mixture):
    return widgets.prepare_scene(CondOTPath(), mixture, n_particles=40, steps=20, lims=(-4.0, 4.0), seed=3)


def test_prepare_scene_moves_particles_with_the_exact_field(mixture, scene):
    assert scene.t_max == 1.0  # a mixture target has a density at t = 1
    assert scene.x0.shape == (40, 2) and scene.trajectory.shape == (21, 40, 2)
    assert scene.times[0] == 0 and scene.times[-1] == 1
    # the default x1 is the mean of the heaviest component
    torch.testing.assert_close(scene.x1, mixture.means[:1])
    # same seed, same noise; the stored trajectory is the RK4 solution of the exact marginal field
    g = torch.Generator().manual_seed(3)
    torch.testing.assert_close(scene.x0, torch.randn(40, 2, generator=g, dtype=F64))
    expected = integrate(lambda x, t: marginal_velocity(CondOTPath(), mixture, x, t), scene.x0, 0.0, 1.0,
                         steps=20, method="rk4", trajectory=True)
    torch.testing.assert_close(scene.trajectory, expected)
    assert scene.speed_clip > 0


def test_empirical_target_stops_before_t_1():
    data = torch.tensor([[0.0, 1.0], [1.0, -1.0], [-1.0, 0.5]], dtype=F64)
    sc = widgets.prepare_scene(CondOTPath(), data, n_particles=10, steps=10)
    assert sc.t_max == pytest.approx(0.98)
    torch.testing.assert_close(sc.x1, data[:1])
    # with sigma_min > 0 the marginal has a density at t = 1
    assert widgets.prepare_scene(CondOTPath(sigma_min=0.05), data, n_particles=5, steps=5).t_max == 1.0


def test_render_frame_draws_both_panels(scene):
    fig = widgets.render_frame(scene, 0.5, density_res=30, quiver_res=9)
    try:
        ax_m, ax_c = fig.axes[:2]
        assert any(isinstance(a, AxesImage) for a in ax_m.get_children())  # heat map of p_t
        assert sum(isinstance(a, Quiver) for a in ax_m.get_children()) == 1  # marginal field
        assert sum(isinstance(a, Quiver) for a in ax_c.get_children()) == 2  # conditional and marginal fields
        assert "t = 0.50" in ax_m.get_title()
        # the heat map is the exact marginal density on the grid
        img = next(a for a in ax_m.get_children() if isinstance(a, AxesImage))
        assert img.get_array().shape == (30, 30) and float(img.get_array().max()) > 0
        # particles at t = 0.5 are the trajectory's middle state
        offsets = ax_m.collections[-1].get_offsets()
        np.testing.assert_allclose(offsets, scene.trajectory[10].numpy())
        # conditional particles follow x_t = alpha_t x1 + sigma_t x0 (= 0.5 x1 + 0.5 x0 for CondOT)
        cond = [c for c in ax_c.collections if c.get_offsets().shape == (40, 2)][0].get_offsets()
        np.testing.assert_allclose(cond, 0.5 * scene.x1.numpy() + 0.5 * scene.x0.numpy())
    finally:
        plt.close(fig)


def test_render_frame_at_t_1_has_no_conditional_field(scene):
    fig = widgets.render_frame(scene, 1.0, density_res=20, quiver_res=5)
    try:
        ax_c = fig.axes[1]
        assert not any(isinstance(a, Quiver) for a in ax_c.get_children())
        assert any("delta" in t.get_text() for t in ax_c.texts)
    finally:
        plt.close(fig)


def test_path_animation_returns_self_contained_html(mixture):
    html = widgets.path_animation(CondOTPath(), mixture, frames=3, n_particles=20, steps=6, density_res=20,
                                  quiver_res=5, figsize=(4.0, 2.0), dpi=40)
    from IPython.display import HTML

    assert isinstance(html, HTML)
    text = html.data
    assert "<script" in text and "animation" in text.lower()
    frames = re.findall(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", text)
    assert len(frames) == 3
    assert base64.b64decode(frames[0])[:2] == b"\xff\xd8"  # JPEG magic number
    assert "http://" not in text and "https://" not in text  # nothing to fetch from the network
    assert 'class="fa ' not in text and "&#9654;" in text  # Font Awesome icons replaced by Unicode symbols
    assert len(text) < 200_000
    png = widgets.path_animation(CondOTPath(), mixture, frames=2, n_particles=5, steps=4, density_res=10,
                                 quiver_res=4, figsize=(3.0, 1.5), dpi=30, frame_format="png")
    assert len(re.findall(r"data:image/png;base64,", png.data)) == 2
    assert not plt.get_fignums()  # the animation's figure was closed


def test_path_explorer_builds_a_slider_and_an_image(mixture):
    pytest.importorskip("ipywidgets")
    ui = widgets.path_explorer(VPPath(), mixture, n_particles=10, steps=10, density_res=15, quiver_res=4,
                               figsize=(3.0, 1.5), dpi=30)
    slider, image = ui.children
    # one slider position per solver time: 0, 0.1, ..., 1 (the generic explorer's SelectionSlider)
    np.testing.assert_allclose(slider.options, np.linspace(0.0, 1.0, 11))
    first = image.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    slider.value = 0.5  # moving the slider re-renders the image
    assert image.value != first and image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.get_fignums()


def test_scene_explorer_is_an_explorer_over_t(scene):
    from fmlib.explorer import Explorer

    ex = widgets.scene_explorer(scene, frames=3, density_res=15, quiver_res=4, figsize=(3.0, 1.5), dpi=30)
    assert isinstance(ex, Explorer) and ex.params == {"t": [0.0, 0.5, 1.0]}
    first, middle = ex.png(t=0.0), ex.png(t=0.5)
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and first != middle  # the picture moves with t
    # default: one value per solver time of the scene (20 steps -> 21 times)
    assert len(widgets.scene_explorer(scene).params["t"]) == 21
    assert not plt.get_fignums()
    with pytest.raises(ValueError, match="frames must be >= 2"):
        widgets.scene_explorer(scene, frames=1)
    with pytest.raises(TypeError, match="scene must be a PathScene"):
        widgets.scene_explorer("scene")


def test_bad_inputs(mixture, scene):
    with pytest.raises(TypeError, match="path must be an fmlib.paths.AffinePath"):
        widgets.prepare_scene("condot", mixture)
    with pytest.raises(TypeError, match="q must be a GaussianMixture or a data tensor"):
        widgets.prepare_scene(CondOTPath(), [[0.0, 1.0]])
    with pytest.raises(ValueError, match="dim = 2"):
        widgets.prepare_scene(CondOTPath(), torch.zeros(5, 3, dtype=F64))
    with pytest.raises(ValueError, match="dim = 2"):
        widgets.prepare_scene(CondOTPath(), GaussianMixture(torch.zeros(1, 3, dtype=F64), 1.0))
    with pytest.raises(ValueError, match="n_particles must be a positive int"):
        widgets.prepare_scene(CondOTPath(), mixture, n_particles=0)
    with pytest.raises(ValueError, match="lims must be a pair"):
        widgets.prepare_scene(CondOTPath(), mixture, lims=(2.0, -2.0))
    with pytest.raises(ValueError, match="t_max must lie in"):
        widgets.prepare_scene(CondOTPath(), mixture, t_max=1.5)
    with pytest.raises(ValueError, match="x1 must have shape"):
        widgets.prepare_scene(CondOTPath(), mixture, x1=torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        widgets.prepare_scene(CondOTPath(), mixture, seed=-1)
    with pytest.raises(TypeError, match="scene must be a PathScene"):
        widgets.render_frame(mixture, 0.5)
    with pytest.raises(ValueError, match=r"t must lie in \[0, t_max"):
        widgets.render_frame(scene, 1.2)
    with pytest.raises(ValueError, match="quiver_res must be >= 2"):
        widgets.render_frame(scene, 0.5, quiver_res=1)
    with pytest.raises(ValueError, match="frames must be >= 2"):
        widgets.path_animation(CondOTPath(), mixture, frames=1)
    with pytest.raises(ValueError, match="frame_format must be"):
        widgets.path_animation(CondOTPath(), mixture, frame_format="gif")
    assert not plt.get_fignums()
