"""fmlib: the small PyTorch teaching library behind *Flow Matching, Interactively*.

Conventions used everywhere in the library (and the book):

* time runs from noise to data: ``t = 0`` is the source ``p`` (usually ``N(0, I)``), ``t = 1`` the data ``q``;
* ``x0 ~ p`` is noise, ``x1 ~ q`` is data, and affine Gaussian paths interpolate
  ``x_t = alpha_t * x1 + sigma_t * x0``;
* points are tensors of shape ``(batch, dim)``; a time ``t`` is a float or a tensor of shape ``(batch,)``.

Submodules are imported lazily by the user (``from fmlib.paths import CondOTPath``) so that importing
``fmlib`` itself stays cheap.
"""

__version__ = "0.1.0"
