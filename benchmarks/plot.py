"""Plot time to N workers per contender from benchmarks/results/slurm.json.

    build/bench-venv/bin/python benchmarks/plot.py slurm.json out.png

Bars are medians, whiskers min and max, dots the single runs. Needs only
matplotlib (bench_slurm.py installs it into build/bench-venv).
"""

import json
import pathlib
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

CONTENDERS = [
    ("floor", "floor (bare sbatch --array + worker)", "#9e9e9e"),
    ("jqref-local", "jqref local", "#1f77b4"),
    ("jqref-noarray", "jqref local, one sbatch per job", "#9467bd"),
    ("jqref-nocheck", "jqref local without version check (experiment)", "#aec7e8"),
    ("jqref-ssh", "jqref SSH (via bastion)", "#17becf"),
    ("djq", "dask-jobqueue", "#ff7f0e"),
]


def main(src, png):
    data = json.loads(pathlib.Path(src).read_text())
    ms = [m for m in data["workers"] if m["ok"]]
    ns = sorted({m["n"] for m in data["workers"]})
    jobs = {m["n"]: m["jobs"] for m in data["workers"]}
    present = {m["contender"] for m in ms}
    contenders = [c for c in CONTENDERS if c[0] in present]
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=120)
    width = 0.8 / len(contenders)
    for i, (key, label, color) in enumerate(contenders):
        for j, n in enumerate(ns):
            values = [m["time_to_workers_s"] for m in ms if m["contender"] == key and m["n"] == n]
            if not values:
                continue
            x = j + (i - (len(contenders) - 1) / 2) * width
            med = statistics.median(values)
            ax.bar(
                x,
                med,
                width * 0.9,
                color=color,
                label=label if j == 0 else None,
                yerr=[[med - min(values)], [max(values) - med]],
                capsize=3,
                ecolor="#333333",
            )
            ax.scatter([x] * len(values), values, s=6, color="black", zorder=3)
    ax.set_xticks(
        range(len(ns)), [f"N={n} worker{'s' if n > 1 else ''}\n({jobs[n]} job{'s' if jobs[n] > 1 else ''})" for n in ns]
    )
    ax.set_ylabel("seconds from scale(jobs=…) to N workers connected")
    mach = data["machine"]
    nodes = "2 nodes advertising 32 CPUs each (SCALE=1)" if data["config"].get("scale") else "2 compute nodes x 2 CPUs"
    ax.set_title(
        f"SLURM testbed ({nodes}), {data['config']['rounds']} round{'s' if data['config']['rounds'] > 1 else ''}"
        f"{' (a smoke run: these figures are not results)' if data['config'].get('smoke') else ''}\n"
        f"{mach['date']}, {mach['cpu']}: bars = median, whiskers = min/max",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png)


if __name__ == "__main__":
    main(*sys.argv[1:3])
