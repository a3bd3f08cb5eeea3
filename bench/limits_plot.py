"""The plot of bench/limits.sh: the worker against the limits, from limits.json.

    python3 bench/limits_plot.py bench/results/limits.json bench/results/limits.png

Each bar is a percentage of the database floor measured in the same pass (log scale: the
network ceiling of large reports is many times the floor). Needs gnuplot.
"""
import json
import os
import subprocess
import sys
import tempfile


def main():
    source, png = sys.argv[1], sys.argv[2]
    with open(source) as f:
        rows = json.load(f)["throughput"]
    sizes = []
    for t in rows:
        if t["size"] not in sizes:
            sizes.append(t["size"])
    with tempfile.TemporaryDirectory() as d:
        dat = os.path.join(d, "plot.dat")
        with open(dat, "w") as f:
            for size in sizes:
                by = {t["workers"]: t for t in rows if t["size"] == size}
                one = by[1]
                f.write('"%s" 100 %.1f %.1f %.1f %.1f\n' % (
                    size, 100 * one["read_write_floor_per_s"] / one["floor_per_s"],
                    100 * one["ceiling_per_s"] / one["floor_per_s"], 100 * one["ratio"],
                    100 * by[2]["ratio"] if 2 in by else 0))
        script = """
set terminal pngcairo size 1000,560 noenhanced font ",11"
set output "%s"
set title "Migration to the sink against the limits (%d CPUs; bench/limits.sh)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set logscale y
set yrange [10:3000]
set ylabel "reports/s as %% of the database floor (log scale)"
set xlabel "report size"
set key top left
set grid ytics
plot "%s" using 2:xtic(1) title "database floor (COPY ... TO /dev/null)", \\
     '' using 3 title "read+write floor (COPY + UPDATE + INSERT)", '' using 4 title "network ceiling (curl -Z)", \\
     '' using 5 title "worker, 1", '' using 6 title "workers, 2"
""" % (png, os.cpu_count(), dat)
        subprocess.run(["gnuplot"], input=script, text=True, check=True)


if __name__ == "__main__":
    main()
