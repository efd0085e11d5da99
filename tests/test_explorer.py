"""Unit tests for fmlib.explorer: the generic live/static explorer."""

from __future__ import annotations

import numpy as np
import pytest

from fmlib.explorer import Explorer, explore


def _draw(fig, a, kind):
    ax = fig.add_subplot(111)
    x = np.linspace(0, 1, 20)
    ax.plot(x, a * x if kind == "lin" else a * x**2)


def test_live_view_redraws_on_every_control():
    e = explore(_draw, {"a": [0.5, 1.0, 2.0], "kind": ["lin", "quad"]}, defaults={"a": 1.0})
    box = e.live()
    assert len(box.children) == 3 and set(e.controls) == {"a", "kind"}
    seen = {e.image.value}
    for a in (0.5, 2.0):
        e.controls["a"].value = a
        seen.add(e.image.value)
    e.controls["kind"].value = "quad"
    seen.add(e.image.value)
    assert len(seen) == 4  # every setting gave a different picture
    assert e.png(a=2.0, kind="quad") == e.image.value  # the image is the cached rendering of the current values


def test_static_view_is_a_self_contained_player_over_one_parameter():
    e = explore(_draw, {"a": [0.5, 1.0, 2.0], "kind": ["lin", "quad"]}, over="a")
    html = e.static().data
    assert "Static view" in html and "<code>a</code> through 3 values" in html and "kind = lin" in html
    assert html.count("data:image/png;base64") == 3
    assert "https://" not in html  # no CDN stylesheet or script


def test_bad_inputs():
    with pytest.raises(TypeError, match="draw must be a function"):
        Explorer(3, {"a": [1]})
    with pytest.raises(TypeError, match="params must be a non-empty mapping"):
        Explorer(_draw, {})
    with pytest.raises(ValueError, match=r"params\['a'\] must be a non-empty sequence"):
        Explorer(_draw, {"a": []})
    with pytest.raises(ValueError, match="is not one of its values"):
        Explorer(_draw, {"a": [1, 2]}, defaults={"a": 3})
    with pytest.raises(ValueError, match="over must name a parameter"):
        Explorer(_draw, {"a": [1, 2]}, over="b")
    e = Explorer(_draw, {"a": [1, 2], "kind": ["lin"]})
    with pytest.raises(ValueError, match="unknown parameter 'b'"):
        e.png(b=1)
    with pytest.raises(ValueError, match="a = 5 is not one of its values"):
        e.png(a=5)
    with pytest.raises(ValueError, match="needs at least 2 values of 'kind'"):
        Explorer(_draw, {"kind": ["lin"]}).static()
