"""One generic explorer for every chapter: a drawing function plus named parameters.

``explore(draw, params)`` wraps a function ``draw(fig, **values)`` that draws a matplotlib figure for one
choice of the parameters. The same object gives two views:

* **live** (:meth:`Explorer.live`): an ``ipywidgets`` control per parameter (a slider for numbers, toggle
  buttons for words) above the rendered image; each change re-renders it. Rendered images are cached, so going
  back to a setting is instant.
* **static** (:meth:`Explorer.static`): a self-contained JavaScript player over one parameter with the others
  at their defaults (frames embedded as images, no kernel and no network), which is what the HTML book shows.

Displaying an :class:`Explorer` in a notebook shows both, each labelled, so a reader always knows which view
they are looking at: the static player works in the book, the live controls in a running Jupyter kernel.
"""

from __future__ import annotations

import importlib.util
import io
import numbers
from typing import Any, Callable, Mapping, Optional, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ._checks import positive_int
from .plotting import animate

__all__ = ["Explorer", "explore"]

DrawFn = Callable[..., None]
"""``draw(fig, **values)`` draws into the empty figure ``fig`` for one value of each parameter."""


class Explorer:
    """A drawing function with named parameters, viewable live (ipywidgets) or as a static player.

    Parameters
    ----------
    draw:
        ``draw(fig, **values)``: draws into the empty :class:`~matplotlib.figure.Figure` ``fig``; ``values`` holds
        one value for every parameter.
    params:
        Parameter name -> the sequence of values the reader can pick (at least one each; numbers or strings).
    defaults:
        Starting value of some parameters (each must be one of its values); the others start at their first value.
    over:
        The parameter the static player steps through (default: the first one).
    figsize, dpi:
        Size (inches) and resolution of the rendered images.
    title:
        A one-line description shown above both views.
    """

    def __init__(
        self,
        draw: DrawFn,
        params: Mapping[str, Sequence[Any]],
        *,
        defaults: Optional[Mapping[str, Any]] = None,
        over: Optional[str] = None,
        figsize: tuple[float, float] = (7.0, 3.5),
        dpi: int = 72,
        title: str = "",
    ) -> None:
        if not callable(draw):
            raise TypeError(f"draw must be a function draw(fig, **values); got {type(draw).__name__}")
        if not isinstance(params, Mapping) or not params:
            raise TypeError("params must be a non-empty mapping name -> sequence of values")
        self.params: dict[str, list] = {}
        for name, values in params.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"parameter names must be identifiers; got {name!r}")
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
                raise ValueError(f"params[{name!r}] must be a non-empty sequence of values; got {values!r:.60}")
            self.params[name] = list(values)
        self.defaults = {name: values[0] for name, values in self.params.items()}
        for name, value in (defaults or {}).items():
            if name not in self.params:
                raise ValueError(f"defaults names an unknown parameter {name!r}; parameters: {list(self.params)}")
            if value not in self.params[name]:
                raise ValueError(f"defaults[{name!r}] = {value!r} is not one of its values {self.params[name]}")
            self.defaults[name] = value
        self.over = next(iter(self.params)) if over is None else over
        if self.over not in self.params:
            raise ValueError(f"over must name a parameter {list(self.params)}; got {over!r}")
        self.draw = draw
        self.figsize = (float(figsize[0]), float(figsize[1]))
        self.dpi = positive_int(dpi, "dpi")
        self.title = str(title)
        self._cache: dict[tuple, bytes] = {}

    # -- rendering -----------------------------------------------------------------------------------------
    def _values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        full = dict(self.defaults)
        for name, value in values.items():
            if name not in self.params:
                raise ValueError(f"unknown parameter {name!r}; parameters: {list(self.params)}")
            if value not in self.params[name]:
                raise ValueError(f"{name} = {value!r} is not one of its values {self.params[name]}")
            full[name] = value
        return full

    def figure(self, **values: Any) -> Figure:
        """A new figure drawn for ``values`` (defaults for the parameters not given); the caller closes it."""
        full = self._values(values)
        fig = plt.figure(figsize=self.figsize, dpi=self.dpi)
        self.draw(fig, **full)
        return fig

    def png(self, **values: Any) -> bytes:
        """The PNG image for ``values`` (cached)."""
        full = self._values(values)
        key = tuple(full[name] for name in self.params)
        if key not in self._cache:
            fig = self.figure(**full)
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=self.dpi)
            plt.close(fig)
            self._cache[key] = buf.getvalue()
        return self._cache[key]

    # -- the two views -------------------------------------------------------------------------------------
    def live(self):
        """The live view: one control per parameter above the image (needs ``ipywidgets`` and a kernel).

        Returns an ``ipywidgets.VBox`` whose children are the controls followed by the image; the controls are
        also in :attr:`controls` (name -> widget), so a test can set ``controls[name].value``.
        """
        import ipywidgets as widgets

        self.controls: dict[str, Any] = {}
        for name, values in self.params.items():
            if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
                control = widgets.SelectionSlider(options=values, value=self.defaults[name], description=name,
                                                  continuous_update=True, layout=widgets.Layout(width="60%"))
            else:
                control = widgets.ToggleButtons(options=[(str(v), v) for v in values], value=self.defaults[name],
                                                description=name)
            self.controls[name] = control
        self.image = widgets.Image(format="png", value=self.png())

        def redraw(_change: Any = None) -> None:
            self.image.value = self.png(**{name: c.value for name, c in self.controls.items()})

        for control in self.controls.values():
            control.observe(redraw, names="value")
        return widgets.VBox([*self.controls.values(), self.image])

    def static(self, *, interval: int = 400, frame_format: str = "png"):
        """The static view: a JavaScript player stepping :attr:`over` through its values (others at defaults).

        Returns an ``IPython.display.HTML`` whose ``.data`` is self-contained (no network access).
        """
        from IPython.display import HTML

        if frame_format not in ("jpeg", "png"):
            raise ValueError(f"frame_format must be 'jpeg' or 'png'; got {frame_format!r}")
        values = self.params[self.over]
        if len(values) < 2:
            raise ValueError(f"the static player needs at least 2 values of {self.over!r}; got {values}")
        with mpl.rc_context({"animation.frame_format": frame_format, "savefig.dpi": self.dpi}):
            fig = plt.figure(figsize=self.figsize, dpi=self.dpi)

            def update(i: int):
                fig.clear()
                self.draw(fig, **{**self.defaults, self.over: values[i]})
                return fig.axes

            player = animate(fig, update, len(values), interval=positive_int(interval, "interval"))
        others = ", ".join(f"{k} = {v}" for k, v in self.defaults.items() if k != self.over)
        caption = (f"<p><b>Static view</b> (works without a kernel): the player steps <code>{self.over}</code> through "
                   f"{len(values)} values" + (f", with {others}" if others else "") + ". Run the notebook for the live "
                   "controls of every parameter.</p>")
        return HTML(caption + player.data)

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        if self.title:
            display(HTML(f"<p><b>Explorer:</b> {self.title}</p>"))
        if len(self.params[self.over]) >= 2:
            display(self.static())
        if importlib.util.find_spec("ipywidgets") is None:  # pragma: no cover - a dependency of the book
            return
        display(HTML("<p><b>Live view</b> (in a running Jupyter kernel; empty in the static book):</p>"))
        display(self.live())


def explore(draw: DrawFn, params: Mapping[str, Sequence[Any]], **options: Any) -> Explorer:
    """Make an :class:`Explorer` (``options`` as there); display it to get the static player and the live view."""
    return Explorer(draw, params, **options)
