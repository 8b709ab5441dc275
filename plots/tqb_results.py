"""Reading tqbench result files (HDF5) into plain Python: shared by the plot scripts."""
import h5py
import numpy as np


def load(path):
    """Return (attrs, columns, meta) for a tqbench result file.

    attrs:   dict of the root attributes (spec_text, git_commit, ...).
    columns: dict name -> numpy array (text columns as lists of str), in column order.
    meta:    dict name -> dict(role=..., description=..., direction=...).
    """
    with h5py.File(path, "r") as f:
        if f.attrs.get("tqbench_format") != "tqbench-results/1":
            raise SystemExit(f"{path}: not a tqbench result file (tqbench_format attribute missing or different)")
        attrs = {k: v for k, v in f.attrs.items()}
        points = f["points"]
        order = [c.decode() if isinstance(c, bytes) else c for c in points.attrs["column_order"]]
        columns, meta = {}, {}
        for name in order:
            ds = points[name]
            if h5py.check_string_dtype(ds.dtype):
                columns[name] = [s.decode() if isinstance(s, bytes) else s for s in ds[()]]
            else:
                columns[name] = np.asarray(ds[()])
            meta[name] = {k: ds.attrs.get(k, "") for k in ("role", "description", "direction")}
    return attrs, columns, meta


def ok_rows(columns):
    """Indices of the points that finished without error."""
    return [i for i, s in enumerate(columns["status"]) if s == "ok"]


def summary_rows(columns):
    """Indices of the summary rows of a repeated sweep (spec `repeats: N`): mean of each metric over the
    repeats, with METRIC_std and METRIC_ci95 beside it. Empty for an unrepeated sweep."""
    return [i for i, s in enumerate(columns["status"]) if s == "summary"]


def plotted_rows(columns):
    """The rows a figure draws: a repeated sweep's summary rows (with intervals), else the finished points."""
    return summary_rows(columns) or ok_rows(columns)


def interval(columns, name, i):
    """Half-width of the 95% interval of column `name` at row i (0 when the file has none)."""
    c = columns.get(name + "_ci95")
    if c is None:
        return 0.0
    v = float(c[i])
    return v if v == v else 0.0
