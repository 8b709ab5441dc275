"""tqbench from Python: quantize arrays with any registered quantizer, measure them with the harness's matrix
metrics, read result files as pandas DataFrames and run experiment specs. The same C++ core as the CLI (tqbench._core).

    import numpy as np, tqbench
    w = np.random.default_rng(0).standard_normal((256, 512), dtype=np.float32)
    q = tqbench.quantize(w, "turboquant(bits=4,group=128)", seed=0)
    print(q.bits_per_weight, tqbench.evaluate(w, q.dequantize(), ["weight_nmse"]))

Errors are Python exceptions with the CLI's messages: ValueError for a bad name, shape or input (naming the
argument), TypeError for a wrong type or dtype, RuntimeError when a run cannot write its results.
"""
import os

import numpy as np

from . import _core
from ._core import Quantized, canonical_name

__version__ = _core.__version__
__all__ = ["quantize", "Quantized", "canonical_name", "quantizers", "metrics", "evaluate", "load", "run", "points", "point_matrix"]


def _host_array(x, arg):
    """A numpy array of x: numpy as it is, a tensor through DLPack (zero-copy, CPU memory only)."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "__dlpack__"):
        device = getattr(x, "device", None)
        if device is not None and getattr(device, "type", "cpu") != "cpu":
            raise ValueError(f"tqbench: {arg} is on {device}; tqbench quantizes host arrays (use .cpu())")
        if getattr(x, "requires_grad", False):
            x = x.detach()
        return np.from_dlpack(x)
    raise TypeError(f"tqbench: {arg} must be a numpy array or a tensor with __dlpack__, not {type(x).__name__}")


def quantize(array, quantizer, seed=0):
    """Quantizes a float32 matrix (rows = output channels) or vector with a one-line quantizer name
    (`tqbench.quantizers()` lists them). Returns a Quantized: dequantize(), bits_per_weight, packed_codes, scales,
    zeros, codebook, passes, and decode() (codes, scale, offset and lookup table per pass). The array is read in
    place; the GIL is released while it is quantized."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"tqbench.quantize: seed must be a non-negative integer, not {seed!r}")
    return _core.quantize(_host_array(array, "array"), quantizer, int(seed))


def quantizers():
    """The registered quantizer families: name, description, parameters (default, description, valid values)."""
    return _core.quantizers()


def metrics():
    """The metric registry: name, description, direction, whether it applies to matrices and to models, and whether
    it needs tqbench's quantized result (its bits) rather than any Ŵ."""
    return _core.metrics()


def evaluate(w, w_hat, metrics=("weight_nmse", "d_mse", "ip_bias", "ip_rmse", "d_prod"), queries=256, seed=0, quantized=None):
    """The harness's matrix metrics of an approximation w_hat of w (both float32, same shape): any method's w_hat for
    the error metrics; pass quantized= (a tqbench.Quantized) for the ones that read the stored bits or the quantizer's
    bounds. Inner-product metrics use `queries` seeded random unit queries. Returns {metric: value}."""
    if isinstance(metrics, str):
        metrics = [metrics]
    if quantized is not None and not isinstance(quantized, Quantized):
        raise TypeError(f"tqbench.evaluate: quantized must be what tqbench.quantize returned, not {type(quantized).__name__}")
    return _core.evaluate(_host_array(w, "w"), _host_array(w_hat, "w_hat"), list(metrics), int(queries), int(seed), quantized)


def load(path):
    """A result file as a pandas DataFrame: one row per sweep point (rows still in the journal of an unfinished run
    included; a repeated sweep's summary rows have status 'summary', see df['is_summary']), one column per spec axis
    and metric. df.attrs holds the provenance (spec text, commit, machine, ...) and df.attrs['columns'] each column's
    role, description and direction."""
    import pandas as pd
    t = _core.read_table(os.fspath(path))
    df = pd.DataFrame({c["name"]: t["data"][c["name"]] for c in t["columns"]}, columns=[c["name"] for c in t["columns"]])
    for c in t["columns"]:
        if c["type"] == "real":
            df[c["name"]] = df[c["name"]].astype("float64")
        elif c["type"] == "integer":
            df[c["name"]] = df[c["name"]].astype("int64")
    df["is_summary"] = df["status"].eq("summary") if "status" in df.columns else False
    df.attrs.update(t["attributes"])
    df.attrs["columns"] = {c["name"]: {k: c[k] for k in ("type", "role", "description", "direction")} for c in t["columns"]}
    df.attrs["path"] = os.fspath(path)
    return df


def _spec_text(spec, fn):
    spec = os.fspath(spec) if isinstance(spec, os.PathLike) else spec
    if isinstance(spec, str) and "\n" not in spec and os.path.isfile(spec):
        with open(spec, encoding="utf-8") as f:
            return f.read(), spec
    if isinstance(spec, str):
        return spec, "<spec text>"
    raise TypeError(f"tqbench.{fn}: spec must be YAML text or a path, not {type(spec).__name__}")


def points(spec):
    """The sweep points of a spec (YAML text or a path), as `tqbench run` evaluates them: index, quantizer (canonical
    name), seed (the quantizer's), data (canonical name), data_seed, and for matrix data the inner-product queries'
    count and seed, so that tqbench.quantize(tqbench.point_matrix(spec, i), p['quantizer'], p['seed']) and
    tqbench.evaluate(..., queries=p['queries'], seed=p['query_seed']) reproduce a row."""
    text, where = _spec_text(spec, "points")
    return _core.sweep_points(text, where)


def point_matrix(spec, index):
    """The matrix a matrix spec's point `index` quantizes (its data source with the point's seed), float32."""
    text, where = _spec_text(spec, "point_matrix")
    return _core.point_matrix(text, where, int(index))


def run(spec, output, force=False):
    """Runs an experiment spec (YAML text, or a path to one) into `output` (an HDF5 result file), as `tqbench run`
    does: resumes a file of the same spec unless force. Returns the exit code (0: every point succeeded, 1: some
    failed) and prints run's report; raises ValueError for a bad spec."""
    text, where = _spec_text(spec, "run")
    code, log = _core.run_spec(text, where, os.fspath(output), bool(force))
    print(log, end="")
    return code
