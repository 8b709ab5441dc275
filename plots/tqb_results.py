"""Reading tqbench result files into plain Python for the plot scripts, through the tqbench package's loader (the
same reader as `tqbench show`: journal rows of an unfinished run included)."""
import os
import re
import sys
from pathlib import Path

import numpy as np


def _package():
    """The tqbench package: installed, or the build tree's (scripts/setup.sh builds it into build/python-package)."""
    try:
        import tqbench
        return tqbench
    except ImportError:
        pass
    for candidate in (os.environ.get("TQB_PYTHON_PACKAGE"), Path(__file__).resolve().parents[1] / "build" / "python-package"):
        if candidate and (Path(candidate) / "tqbench").is_dir():
            sys.path.insert(0, str(candidate))
            try:
                import tqbench
                return tqbench
            except ImportError as e:
                raise SystemExit(f"the tqbench Python package in {candidate} does not load ({e}); run scripts/setup.sh")
    raise SystemExit("the tqbench Python package is not built: run scripts/setup.sh (it builds build/python-package)")


def load(path):
    """Return (attrs, columns, meta) for a tqbench result file.

    attrs:   dict of the root attributes (spec_text, git_commit, ...).
    columns: dict name -> numpy array (text columns as lists of str), in column order.
    meta:    dict name -> dict(role=..., description=..., direction=...).
    """
    try:
        df = _package().load(path)
    except ValueError as e:
        raise SystemExit(str(e))
    described = df.attrs["columns"]
    attrs = {k: v for k, v in df.attrs.items() if k not in ("columns", "path")}
    columns = {name: list(df[name]) if m["type"] == "text" else df[name].to_numpy() for name, m in described.items()}
    meta = {name: {k: m[k] for k in ("role", "description", "direction")} for name, m in described.items()}
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


_OPS = ("!=", "<=", ">=", "=", "<", ">", "~")


def where(columns, rows, condition):
    """The rows of `rows` satisfying COLUMN OP VALUE, OP one of = != < <= > >= ~ (contains), as `tqbench show
    --where` reads it (harness/row_query.hpp): numbers compare as numbers, text as text; a missing value (NaN, -1
    in an integer column, "") matches only !=. Raises ValueError saying what is wrong."""
    found = [(condition.find(op), -len(op), op) for op in _OPS if condition.find(op) > 0]
    if not found:
        raise ValueError(f"--where {condition}: expected COLUMN OP VALUE with OP one of = != < <= > >= ~ (contains)")
    at, _, op = min(found)
    name, value = condition[:at].strip(), condition[at + len(op):].strip()
    if name not in columns:
        raise ValueError(f"--where {condition}: no column '{name}'; columns: {', '.join(columns)}")
    col = columns[name]
    text = isinstance(col, list)
    if op == "~":
        return [i for i in rows if value in (col[i] if text else f"{col[i]:g}")]
    if text:
        if op not in ("=", "!="):
            raise ValueError(f"--where {condition}: '{name}' is a text column: = != ~ compare text")
        return [i for i in rows if col[i] == value] if op == "=" else [i for i in rows if col[i] != value]
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"--where {condition}: '{name}' is a numeric column; expected a number")
    integer = np.issubdtype(col.dtype, np.integer)

    def missing(v):
        return (integer and v == -1) or (not integer and v != v)

    test = {"=": lambda v: v == number, "!=": lambda v: v != number, "<": lambda v: v < number, "<=": lambda v: v <= number,
            ">": lambda v: v > number, ">=": lambda v: v >= number}[op]
    return [i for i in rows if (op == "!=" if missing(col[i]) else test(col[i]))]


def family_kind(family):
    """llama.cpp's formats (q4_0 ... q8_0, q2_K ... q6_K, iq4_nl: named after ggml types) as one kind; any other
    family as itself."""
    return "llama.cpp formats" if re.match(r"^(q\d_|iq\d)", family) else family
