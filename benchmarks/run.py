"""Benchmarks for the book: training recipes side by side at equal time, and the book's execution time.

One command (from the repository root)::

    .venv/bin/python benchmarks/run.py --out book/_benchmarks

Part 1 (``anchors``) trains the 2-D protocol network (``VelocityMLP``: 3 x 64 SELU on ``[x, t]``, batch 512) on
moons, 8 Gaussians and checkerboard (``fmlib.data``) for the same wall-clock budget on one CPU thread with

* ``fmlib``: :func:`fmlib.train.fit_cfm` with the book's recipe (fused AdamW, warm-up + cosine LR, weight EMA),
  ``seconds=BUDGET``;
* ``plain``: a hand-written loop (AdamW lr 1e-3, weight decay 1e-5, constant LR, no averaging), the published
  protocol of Tong et al.;
* ``flow_matching`` (facebookresearch) and ``torchcfm``, when installed (``pip install -e .[bench]``): the same
  plain loop with the library's own path object producing ``x_t`` and the regression target.

Every model is sampled with 100 Euler steps (NFE 100) from the same noise and scored by the exact W2 to 1000 fresh
data points (mean of 3 draws) divided by the data's noise floor (:func:`fmlib.metrics.noise_floor`; for moons the
i.i.d. floor, see the chapter on training in practice). The NFE that an adaptive solver (dopri5, rtol = atol = 1e-5)
needs for the same model is reported too.

Part 2 (``book``) reports every notebook's execution time: from the build's jupyter-cache when it holds a run of
the current notebook (``--cache``), otherwise (with ``--time-missing``) by executing the notebook with nbclient.

Results go to ``--out`` as JSON, Markdown tables and PNG plots; the book's Benchmarks page shows the committed
files and does not run this script.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from fmlib.data import checkerboard, eight_gaussians, moons  # noqa: E402
from fmlib.metrics import noise_floor, wasserstein2  # noqa: E402
from fmlib.nets import VelocityMLP  # noqa: E402
from fmlib.paths import CondOTPath  # noqa: E402
from fmlib.solvers import integrate  # noqa: E402
from fmlib.train import fit_cfm  # noqa: E402

DATASETS = {
    "moons": lambda n, g: moons(n, generator=g),
    "8 Gaussians": lambda n, g: eight_gaussians(n, generator=g),
    "checkerboard": lambda n, g: checkerboard(n, generator=g),
}
FLOOR_SAMPLE = {"moons": lambda n, g: moons(n, generator=g, iid=True)}
BATCH = 512
N_EVAL = 1000
EVAL_DRAWS = 3


# ------------------------------------------------------------------------------------------------ training loops
def _plain_loop(model, sample, seconds, seed, make_pair):
    """AdamW with constant LR, no averaging; ``make_pair(x0, x1, t) -> (x_t, target)``. Returns (steps, wall, cpu)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-5)
    steps, start, cpu0 = 0, time.perf_counter(), time.process_time()
    model.train()
    while time.perf_counter() - start < seconds:
        x1 = sample(BATCH, g)
        x0 = torch.randn(x1.shape, generator=g)
        t = torch.rand(BATCH, generator=g)
        xt, target = make_pair(x0, x1, t)
        loss = ((model(xt, t) - target) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1
    model.eval()
    return steps, time.perf_counter() - start, time.process_time() - cpu0


def _hand_written(x0, x1, t):
    tt = t[:, None]
    return (1 - tt) * x0 + tt * x1, x1 - x0


def _flow_matching_pair():
    from flow_matching.path import AffineProbPath
    from flow_matching.path.scheduler import CondOTScheduler

    path = AffineProbPath(scheduler=CondOTScheduler())

    def pair(x0, x1, t):
        s = path.sample(x_0=x0, x_1=x1, t=t)
        return s.x_t, s.dx_t

    return pair


def _torchcfm_pair():
    from torchcfm.conditional_flow_matching import ConditionalFlowMatcher

    cfm = ConditionalFlowMatcher(sigma=0.0)

    def pair(x0, x1, t):
        _, xt, ut = cfm.sample_location_and_conditional_flow(x0, x1, t=t)
        return xt, ut

    return pair


def _train(method, sample, seconds, seed):
    torch.manual_seed(seed)
    model = VelocityMLP()
    if method == "fmlib":
        cpu0 = time.process_time()
        hist = fit_cfm(model, CondOTPath(), sample, seconds=seconds, batch_size=BATCH, seed=seed, progress=False)
        return model, hist.steps, hist.seconds, time.process_time() - cpu0
    pair = {"plain": lambda: _hand_written, "flow_matching": _flow_matching_pair, "torchcfm": _torchcfm_pair}[method]()
    return (model, *_plain_loop(model, sample, seconds, seed, pair))


def _available(methods):
    out, skipped = [], {}
    for m in methods:
        try:
            if m == "flow_matching":
                import flow_matching  # noqa: F401
                _flow_matching_pair()
            elif m == "torchcfm":
                import torchcfm  # noqa: F401
                _torchcfm_pair()
            out.append(m)
        except Exception as err:  # not installed, or an incompatible version: skip it and say why
            skipped[m] = f"{type(err).__name__}: {err}"
            print(f"[benchmarks] skipping {m}: {skipped[m]}")
    return out, skipped


@torch.no_grad()
def _evaluate(model, sample, seed):
    g = torch.Generator().manual_seed(10_000 + seed)
    w2 = []
    for _ in range(EVAL_DRAWS):
        z = torch.randn(N_EVAL, 2, generator=g)
        x = integrate(model, z, steps=100, method="euler")
        w2.append(wasserstein2(x, sample(N_EVAL, g)))
    z = torch.randn(N_EVAL, 2, generator=g)
    _, nfe = integrate(model, z, method="dopri5", rtol=1e-5, atol=1e-5, return_nfe=True)
    return float(np.mean(w2)), float(np.std(w2)), int(nfe)


def run_anchors(seconds, seeds, methods):
    methods, skipped = _available(methods)
    rows = []
    for name, sample in DATASETS.items():
        floor, floor_std = noise_floor(FLOOR_SAMPLE.get(name, sample), sample, n=N_EVAL, repeats=5, seed=1)
        for method in methods:
            for seed in range(seeds):
                model, steps, wall, cpu = _train(method, sample, seconds, seed)
                w2, w2_std, nfe = _evaluate(model, sample, seed)
                row = dict(dataset=name, method=method, seed=seed, steps=steps, wall_s=wall, cpu_s=cpu,
                           steps_per_s=steps / wall, w2=w2, w2_std=w2_std, floor=floor, floor_std=floor_std,
                           w2_over_floor=w2 / floor, nfe_euler=100, nfe_dopri5=nfe)
                rows.append(row)
                print(f"[benchmarks] {name:13s} {method:14s} seed {seed}: {steps} steps ({steps / wall:.0f}/s), "
                      f"W2 {w2:.3f} (floor {floor:.3f}) -> {w2 / floor:.2f}, dopri5 NFE {nfe}", flush=True)
    return rows, skipped


# ------------------------------------------------------------------------------------------------ book timings
def _toc_notebooks():
    sys.path.insert(0, str(ROOT / "scripts"))
    from execute_notebooks import toc_notebooks

    return toc_notebooks()


def _time_notebook(nb_path, timeout):
    """Execute one notebook with nbclient (kernels import this checkout's fmlib); (seconds, source)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    nb = nbformat.read(nb_path, as_version=4)
    start = time.perf_counter()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(nb_path.parent)}}).execute()
    except CellExecutionError as err:  # report it and go on with the other notebooks
        lines = [ln for ln in str(err).splitlines() if "Error" in ln]
        print(f"[benchmarks] {nb_path.name} failed: {lines[-1] if lines else 'cell error'}", flush=True)
        return None, "nbclient: failed"
    return time.perf_counter() - start, "nbclient"


def run_book(cache_path, time_missing, timeout):
    import nbformat

    cache = None
    if cache_path and Path(cache_path).is_dir():
        from jupyter_cache import get_cache

        cache = get_cache(str(cache_path))
    rows = []
    for nb_path in _toc_notebooks():
        name = str(nb_path.relative_to(ROOT))
        seconds, source = None, "not measured"
        if cache is not None:
            try:
                record = cache.match_cache_notebook(nbformat.read(nb_path, as_version=4))
                seconds, source = float(record.data["execution_seconds"]), "jupyter-cache"
            except KeyError:
                pass
        if seconds is None and time_missing:
            seconds, source = _time_notebook(nb_path, timeout)
        rows.append(dict(notebook=name, seconds=seconds, source=source))
        print(f"[benchmarks] {name}: {seconds if seconds is None else round(seconds, 1)} s ({source})", flush=True)
    return rows


# ------------------------------------------------------------------------------------------------ reports
def _environment():
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for mod in ("flow_matching", "torchcfm", "ot", "torchdiffeq"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            versions[mod] = "not installed"
    return dict(date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                machine=f"{platform.machine()}, {os.cpu_count()} CPU cores ({platform.processor() or 'unknown CPU'})",
                platform=platform.platform(), threads=torch.get_num_threads(), versions=versions)


def _anchor_table(rows):
    lines = ["| dataset | method | steps | steps/s | CPU s | steps per CPU s | W2 | floor | W2 / floor | NFE (Euler) "
             "| NFE (dopri5, 1e-5) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['dataset']} | `{r['method']}` | {r['steps']} | {r['steps_per_s']:.0f} | {r['cpu_s']:.1f} "
                     f"| {r['steps'] / r['cpu_s']:.0f} | {r['w2']:.3f} | {r['floor']:.3f} | {r['w2_over_floor']:.2f} "
                     f"| {r['nfe_euler']} | {r['nfe_dopri5']} |")
    return "\n".join(lines)


def _book_table(rows):
    lines = ["| notebook | seconds | measured by |", "| --- | --- | --- |"]
    total = 0.0
    for r in rows:
        s = "n/a" if r["seconds"] is None else f"{r['seconds']:.1f}"
        total += r["seconds"] or 0.0
        lines.append(f"| `{r['notebook']}` | {s} | {r['source']} |")
    lines.append(f"| **total** | **{total:.0f}** | |")
    return "\n".join(lines)


def _plot_anchors(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    width = 0.8 / len(methods)
    for k, m in enumerate(methods):
        sel = [next(r for r in rows if r["dataset"] == d and r["method"] == m) for d in datasets]
        xs = np.arange(len(datasets)) + k * width
        axes[0].bar(xs, [r["w2_over_floor"] for r in sel], width, label=m)
        axes[1].bar(xs, [r["steps_per_s"] for r in sel], width, label=m)
    for ax, title in zip(axes, ["W2 / noise floor (lower is better, 1 = perfect)", "training steps per second"]):
        ax.set_xticks(np.arange(len(datasets)) + 0.4 - width / 2, datasets)
        ax.set_title(title)
    axes[0].axhline(1.0, color="0.3", lw=0.8, ls="--")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_book(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["seconds"] is not None]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 1.2))
    names = [Path(r["notebook"]).stem for r in rows]
    ax.barh(names[::-1], [r["seconds"] for r in rows][::-1], color="#4477aa")
    ax.axvline(60, color="0.3", ls="--", lw=0.8, label="60 s target")
    ax.set_xlabel("execution time (s)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="book/_benchmarks", help="folder for the results (JSON, Markdown, PNG)")
    ap.add_argument("--seconds", type=float, default=20.0, help="training budget per model (wall clock, 1 thread)")
    ap.add_argument("--seeds", type=int, default=1, help="training seeds per method and dataset")
    ap.add_argument("--methods", default="fmlib,plain,flow_matching,torchcfm")
    ap.add_argument("--parts", default="anchors,book", help="anchors, book or both")
    ap.add_argument("--cache", default=str(ROOT / "_build" / ".jupyter_cache"), help="the build's jupyter-cache")
    ap.add_argument("--time-missing", action="store_true",
                    help="execute (nbclient) the notebooks that the cache holds no current run of")
    ap.add_argument("--timeout", type=int, default=300, help="per-cell timeout of --time-missing (s)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    env = _environment()
    if "anchors" in parts:
        rows, skipped = run_anchors(args.seconds, args.seeds, args.methods.split(","))
        (out / "anchors.json").write_text(json.dumps(dict(environment=env, seconds=args.seconds, batch=BATCH,
                                                          skipped=skipped, rows=rows), indent=1))
        (out / "anchors.md").write_text(_anchor_table(rows) + "\n")
        _plot_anchors(rows, out / "anchors.png")
        print(_anchor_table(rows))
    if "book" in parts:
        rows = run_book(args.cache, args.time_missing, args.timeout)
        (out / "book_times.json").write_text(json.dumps(dict(environment=env, rows=rows), indent=1))
        (out / "book_times.md").write_text(_book_table(rows) + "\n")
        _plot_book(rows, out / "book_times.png")
        print(_book_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
