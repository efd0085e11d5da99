"""Write book/benchmarks.md from the results in book/_benchmarks (run after benchmarks/run.py; the book build does not run either)."""
import json
from pathlib import Path

root = Path(__file__).resolve().parents[1] / "book"
a = json.loads((root / "_benchmarks/anchors.json").read_text())
b = json.loads((root / "_benchmarks/book_times.json").read_text())
env = a["environment"]
v = env["versions"]
anchors_md = (root / "_benchmarks/anchors.md").read_text().strip()
book_md = (root / "_benchmarks/book_times.md").read_text().strip()
rows = a["rows"]
total = sum(r["seconds"] or 0 for r in b["rows"])
sources = sorted({r["source"] for r in b["rows"]})
skipped = a["skipped"]
skip_text = ("All four methods ran." if not skipped else
             "Skipped (not installed or not importable): " + "; ".join(f"`{k}` ({w})" for k, w in skipped.items()) + ".")

page = f"""# Benchmarks

This page shows the results of `benchmarks/run.py`, committed to the repository as JSON, Markdown and PNG files in
`book/_benchmarks/`. Building the book does **not** run the benchmark; the numbers below are from one run on the
date and machine stated. To reproduce them (about ten minutes on 2 cores):

```bash
.venv/bin/python benchmarks/run.py --out book/_benchmarks --cache _build/.jupyter_cache --time-missing
```

The anchor libraries are optional (`pip install -e .[bench]`; the run below used
`pip install --no-deps flow_matching torchcfm`); a library that cannot be imported is skipped with a message.

| | |
| --- | --- |
| date | {env['date']} |
| machine | {env['machine']}, {env['platform']} |
| threads per training run | {env['threads']} |
| Python | {v['python']} |
| PyTorch | {v['torch']} |
| NumPy | {v['numpy']} |
| POT | {v['ot']} |
| torchdiffeq | {v['torchdiffeq']} |
| flow_matching (facebookresearch) | {v['flow_matching']} |
| torchcfm | {v['torchcfm']} |

## Training side by side at equal time

Every method trains the 2-D benchmark network of {{cite:t}}`tong2023improving` (`fmlib.nets.VelocityMLP`: 3 hidden
layers of 64 SELU units on $[x, t]$) with batch {a['batch']} for the same wall-clock budget of {a['seconds']:g} s on one CPU
thread, on the three datasets of `fmlib.data` (moons, 8 Gaussians and checkerboard as the published protocol
defines them). The methods:

- **`fmlib`**: `fmlib.train.fit_cfm(..., seconds=...)`, the book's recipe (fused AdamW with peak learning rate
  $10^{{-3}}$, warm-up and cosine decay over the budget, weight average);
- **`plain`**: a hand-written loop, AdamW at a constant learning rate $10^{{-3}}$ with weight decay $10^{{-5}}$ and no
  weight average (the published protocol);
- **`flow_matching`** and **`torchcfm`**: the same plain loop, with the library's own path object making $x_t$ and
  the regression target (`AffineProbPath(CondOTScheduler())` and `ConditionalFlowMatcher(sigma=0)`).

Each model is sampled with 100 Euler steps (NFE 100) and scored by the exact $W_2$ distance of 1000 samples to 1000
fresh data points (mean of 3 draws), divided by the data's noise floor: the $W_2$ between two independent draws of
the data, except for moons, whose benchmark draws share their arc positions, so that the floor is the $W_2$ of an
i.i.d. sample of the same distribution to a benchmark draw (the chapter on training in practice explains why).
The last column is the NFE the adaptive `dopri5` solver ($r_{{tol}} = a_{{tol}} = 10^{{-5}}$) needs for the same model.
{skip_text}

{anchors_md}

```{{figure}} _benchmarks/anchors.png
:alt: Bar charts of W2 over the noise floor and of training steps per second for each dataset and method.

Left: $W_2$ / noise floor (1 is the best a generative model can score at 1000 points). Right: training steps per
second of wall-clock time.
```

ANCHOR_NOTES

## The book's execution time

Each chapter must run top to bottom in about a minute on a 2-core CPU (hard limit 120 s), and the whole book in at
most 8 minutes. The table gives the execution time of every notebook in the table of contents; the last column
says how it was measured: *jupyter-cache* means the time recorded by the book build's execution cache for a run of
the current version of the notebook (`execution_seconds`), *nbclient* means the benchmark executed the notebook
itself, one at a time, because the cache held no run of its current version. Total: **{total:.0f} s**.

{book_md}

```{{figure}} _benchmarks/book_times.png
:alt: Horizontal bar chart of the execution time of each notebook, with the 60-second target marked.

Execution time per notebook; the dashed line is the 60-second target.
```

BOOK_NOTES
"""
cpu = [r["cpu_s"] for r in rows]
per_cpu = [r["steps"] / r["cpu_s"] for r in rows]
best = {}
for r in rows:
    if r["dataset"] not in best or r["w2_over_floor"] < best[r["dataset"]]["w2_over_floor"]:
        best[r["dataset"]] = r
std_by_ds = {d: max(r["w2_std"] for r in rows if r["dataset"] == d) for d in best}
nfe = sorted({r["nfe_dopri5"] for r in rows})
notes = f"""How to read it:

- **The machine was shared.** Each run had {a['seconds']:g} s of wall-clock time, but the CPU column shows it received
  only {min(cpu):.1f}–{max(cpu):.1f} CPU seconds, because other programs ran on the same two cores. The number of steps
  therefore varies with the load more than with the method. Per CPU second all methods run at about the same speed
  ({min(per_cpu):.0f}–{max(per_cpu):.0f} steps): a step of this network is dominated by its forward and backward pass, and all
  four build the same batch with a few tensor operations.
- **Quality.** Closest to the floor: """ + "; ".join(f"{d}: `{r['method']}` ({r['w2_over_floor']:.2f})" for d, r in best.items()) + f""".
  The three plain loops (`plain`, `flow_matching`, `torchcfm`) compute the same $x_t$ and target and differ only in their
  random numbers and step counts. What the `fmlib` recipe adds over them is the learning-rate decay and the weight
  average; the recipe ablation in the chapter on training in practice measures what each is worth.
- **Noise.** One training seed per entry. The $W_2$ of 1000 points varies between evaluation draws by up to
  {max(std_by_ds.values()):.2f} (standard deviation of the 3 draws; largest for {max(std_by_ds, key=std_by_ds.get)}),
  so differences of about 0.1 in $W_2$ / floor are within the noise.
- **NFE.** All models need {nfe[0]}–{nfe[-1]} evaluations with `dopri5` at $10^{{-5}}$: at this budget the learned fields are
  equally easy to integrate.
"""
page = page.replace("ANCHOR_NOTES", notes)
failed = [Path(r["notebook"]).stem for r in b["rows"] if r["seconds"] is None]
measured = [r for r in b["rows"] if r["seconds"] is not None]
slowest = max(measured, key=lambda r: r["seconds"])
book_notes = f"""The measured notebooks take {total:.0f} s together (one after the other; the build runs one per core), the
slowest being `{Path(slowest['notebook']).stem}` at {slowest['seconds']:.0f} s. """
if failed:
    book_notes += ("Not measured: " + ", ".join(f"`{f}`" for f in failed) + ", which the build's cache held no current run "
                   "of and which stopped at one of their own assertions when the benchmark executed them; their times are "
                   "missing from the total, so the total is a lower bound for the whole book.")
page = page.replace("BOOK_NOTES", book_notes)
(root / "benchmarks.md").write_text(page)
print(f"wrote {root / 'benchmarks.md'}")
