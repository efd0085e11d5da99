"""Tests of the continuity-equation exercise checkers: correct answers pass, typical mistakes get precise messages."""

from __future__ import annotations

import pytest
import torch

from fmlib.data import eight_gaussians_mixture
from fmlib.exercises.continuity import check_density_preserving_field, check_gaussian_velocity
from fmlib.targets import GaussianMixture

J = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)


# ------------------------------------------------------------------------------------ check_gaussian_velocity
def correct(x, mu, dmu, s, ds):
    return dmu + ds / s * (x - mu)


def test_correct_velocity_passes():
    fb = check_gaussian_velocity(correct)
    assert fb and fb.passed
    assert "vanishes" in fb.message and "note" not in fb.message


def test_velocity_plus_rotation_passes_with_a_note():
    def with_rotation(x, mu, dmu, s, ds):
        extra = 0.7 * (x - mu) @ J.T if x.shape[1] == 2 else 0.0
        return correct(x, mu, dmu, s, ds) + extra

    fb = check_gaussian_velocity(with_rotation)
    assert fb
    assert "density-preserving" in fb.message and "case 3" in fb.message


@pytest.mark.parametrize(
    "wrong, phrase",
    [
        (lambda x, mu, dmu, s, ds: dmu - ds / s * (x - mu), "sign of the stretching term"),
        (lambda x, mu, dmu, s, ds: dmu + s / ds * (x - mu), "ratio is upside down"),
        (lambda x, mu, dmu, s, ds: dmu + ds / s * x, "centring is missing"),
        (lambda x, mu, dmu, s, ds: dmu + ds * (x - mu), "division by s is missing"),
        (lambda x, mu, dmu, s, ds: ds / s * (x - mu), "mean velocity mu' is missing"),
        (lambda x, mu, dmu, s, ds: mu + ds / s * (x - mu), "mu instead of mu'"),
        (lambda x, mu, dmu, s, ds: -(dmu + ds / s * (x - mu)), "wrong sign"),
    ],
)
def test_typical_mistakes_are_named(wrong, phrase):
    fb = check_gaussian_velocity(wrong)
    assert not fb
    assert phrase in fb.message
    assert "continuity residual" in fb.message and "case 1" in fb.message


def test_unknown_mistake_reports_which_term():
    fb = check_gaussian_velocity(lambda x, mu, dmu, s, ds: dmu + ds / s * (x - mu) ** 3)
    assert not fb and "stretching term is wrong" in fb.message
    fb = check_gaussian_velocity(lambda x, mu, dmu, s, ds: 2 * dmu + ds / s * (x - mu))
    assert not fb and "particle at the centre moves with the centre" in fb.message


def test_gaussian_checker_handles_bad_answers():
    fb = check_gaussian_velocity("dmu + ds/s (x - mu)")
    assert not fb and "must be a function" in fb.message
    fb = check_gaussian_velocity(lambda x, mu, dmu, s, ds: (dmu + ds / s * (x - mu)).squeeze())
    assert not fb and "(11, 1)" in fb.message and "squeeze" in fb.message

    def raises(x, mu, dmu, s, ds):
        raise NotImplementedError("todo")

    fb = check_gaussian_velocity(raises)
    assert not fb and "NotImplementedError" in fb.message
    fb = check_gaussian_velocity(lambda x, mu, dmu, s, ds: [0.0])
    assert not fb and "must return a torch.Tensor" in fb.message
    fb = check_gaussian_velocity(lambda x, mu, dmu, s, ds: x / 0.0)
    assert not fb and "NaN or inf" in fb.message


# ------------------------------------------------------------------------------ check_density_preserving_field
def test_rotation_preserves_standard_normal():
    fb = check_density_preserving_field(lambda x: x @ J.T)
    assert fb and "div(p w) = 0" in fb.message


def test_rotated_score_preserves_a_mixture():
    q = eight_gaussians_mixture()
    assert check_density_preserving_field(lambda x: q.score(x) @ J.T, q)
    # ... while the plain rotation does not: it crosses the contour lines
    fb = check_density_preserving_field(lambda x: x @ J.T, q)
    assert not fb and "crosses the contour lines" in fb.message and "w . grad log p" in fb.message


def test_density_preserving_failures():
    fb = check_density_preserving_field(lambda x: torch.zeros_like(x))
    assert not fb and "zero everywhere" in fb.message
    fb = check_density_preserving_field(lambda x: (x @ J.T) * x[:, :1])  # tangent but not divergence-free
    assert not fb and "not divergence-free" in fb.message
    fb = check_density_preserving_field(lambda x: x + torch.tensor([1.0, 0.0], dtype=x.dtype))
    assert not fb and "both terms are non-zero" in fb.message
    fb = check_density_preserving_field(lambda x: x[:, 0])
    assert not fb and "must return the shape of x" in fb.message
    assert not check_density_preserving_field(42)


def test_density_preserving_bad_arguments():
    with pytest.raises(TypeError, match="target must be a GaussianMixture or None"):
        check_density_preserving_field(lambda x: x @ J.T, target="N(0, I)")
    with pytest.raises(ValueError, match="target must be a 2-D mixture"):
        check_density_preserving_field(lambda x: x, target=GaussianMixture(torch.zeros(1, 3), 1.0))
    with pytest.raises(ValueError, match="n_points must be a positive int"):
        check_density_preserving_field(lambda x: x @ J.T, n_points=0)
