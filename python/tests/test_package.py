"""The Python package against the CLI and against bad input (issue 29). Run by ctest (`python_package`) with the
package of the build tree on PYTHONPATH; TQB_SOURCE_DIR and TQBENCH_BINARY name the repository and the CLI."""
import math
import os
import re
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

import tqbench

ROOT = Path(os.environ.get("TQB_SOURCE_DIR", Path(__file__).resolve().parents[2]))
CLI = os.environ.get("TQBENCH_BINARY", str(ROOT / "build" / "tqbench"))

MATRIX_SPEC = """experiment: python-parity
seed: 5
data: {source: gaussian, rows: 48, cols: 256}
queries: 32
quantizers:
  - family: turboquant
    bits: [2, 4]
    group: 64
  - family: rtn
    bits: 3
    group: 32
    mode: asym
metrics: [weight_nmse, d_mse, d_prod, ip_bias, ip_rmse, bits_per_weight, storage_bytes]
"""


def matrix(rows=64, cols=256, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, cols), dtype=np.float32)


def readme_blocks():
    """The ```python blocks of the README's Python section, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_examples_run(tmp_path, monkeypatch, capsys):
    blocks = readme_blocks()
    assert len(blocks) >= 2, "the README's Python section has its two examples"
    # The first: NMSE of turboquant and rtn on a random matrix, printed.
    exec(compile(blocks[0], "README.md (Python example 1)", "exec"), {})
    out = capsys.readouterr().out
    nmse = [float(x) for x in re.findall(r"nmse[^0-9]*([0-9.e-]+)", out, re.I)]
    assert len(nmse) == 2 and all(0 < x < 0.1 for x in nmse), out
    # The second, from a folder where the repository's relative paths hold: run a model sweep, load it, plot.
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    (tmp_path / "README.md").symlink_to(ROOT / "README.md")
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[1], "README.md (Python example 2)", "exec"), {})
    assert (tmp_path / "delta_ppl.png").stat().st_size > 1000


def test_same_point_through_the_cli_and_the_package(tmp_path):
    spec = tmp_path / "parity.yaml"
    spec.write_text(MATRIX_SPEC)
    out = tmp_path / "cli.h5"
    subprocess.run([CLI, "run", str(spec), "-o", str(out)], check=True, capture_output=True)
    rows = tqbench.load(out)
    points = tqbench.points(spec)
    assert len(points) == len(rows) == 3
    for p in points:
        row = rows[rows.point == p["index"]].iloc[0]
        assert row.quantizer == p["quantizer"]
        w = tqbench.point_matrix(spec, p["index"])
        q = tqbench.quantize(w, p["quantizer"], seed=p["seed"])
        m = tqbench.evaluate(w, q.dequantize(), ["weight_nmse", "d_mse", "d_prod", "ip_bias", "ip_rmse", "bits_per_weight",
                                                 "storage_bytes"], queries=p["queries"], seed=p["query_seed"], quantized=q)
        for name, value in m.items():
            assert value == row[name], (p["quantizer"], name, value, row[name])  # identical, not close
    # tqbench.run writes the same rows.
    again = tmp_path / "python.h5"
    assert tqbench.run(spec, again) == 0
    df = tqbench.load(again)
    assert df.weight_nmse.tolist() == rows.weight_nmse.tolist()
    assert df.attrs["experiment"] == "python-parity" and "spec_text" in df.attrs and "git_commit" in df.attrs
    assert df.attrs["columns"]["weight_nmse"]["role"] == "metric" and not df.is_summary.any()


def test_repeats_and_journal_rows_are_read(tmp_path):
    spec = tmp_path / "rep.yaml"
    spec.write_text(MATRIX_SPEC.replace("seed: 5\n", "seed: 5\nrepeats: 3\n"))
    out = tmp_path / "rep.h5"
    subprocess.run([CLI, "run", str(spec), "-o", str(out)], check=True, capture_output=True)
    df = tqbench.load(out)
    assert df.is_summary.sum() == 3 and (~df.is_summary).sum() == 9
    # A row still in the journal (a run stopped before it folded) is read as `show` reads it.
    journal = Path(str(out) + ".journal")
    if journal.exists():
        assert len(tqbench.load(out)) == len(df)


def test_decode_description_rebuilds_the_dequantized_matrix():
    w = matrix()
    q = tqbench.quantize(w, "rtn(bits=4,group=64,mode=asym)", seed=1)
    (p,) = q.decode()
    assert p["codes"].shape == (64, 4, 64) and p["codes"].dtype == np.uint8 and p["lut"].shape == (16,)
    values = p["lut"][p["codes"]] * p["scale"][..., None] + p["offset"][..., None]
    np.testing.assert_allclose(values.reshape(64, 256), q.dequantize(), rtol=1e-6, atol=1e-6)
    assert q.bits_per_weight == 8 * q.storage_bytes / w.size
    assert tqbench.canonical_name("rtn(bits=4,group=64,mode=asym)") == q.format
    r = tqbench.quantize(w, "residual(stack=4+2,group=64)", seed=3)
    assert len(r.passes) == 2 and r.dequantize().shape == w.shape
    with pytest.raises(ValueError, match="no decode description"):
        tqbench.quantize(w, "q4_K").decode()


def test_vectors_and_tensors_through_dlpack():
    v = matrix(1, 256)[0]
    q = tqbench.quantize(v, "turboquant(bits=3)", seed=2)
    assert q.dequantize().shape == (256,)

    class Tensor:  # what a CPU torch tensor offers: the DLPack protocol
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, **kw):
            return self.a.__dlpack__(**kw)

        def __dlpack_device__(self):
            return self.a.__dlpack_device__()

    w = matrix()
    a = tqbench.quantize(Tensor(w), "rtn(bits=4,group=128)").dequantize()
    np.testing.assert_array_equal(a, tqbench.quantize(w, "rtn(bits=4,group=128)").dequantize())
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(w)
    np.testing.assert_array_equal(tqbench.quantize(t, "rtn(bits=4,group=128)").dequantize(), a)


def test_bad_inputs_are_python_errors_naming_the_argument():
    w = matrix()
    with pytest.raises(TypeError, match="array must be float32, not float64"):
        tqbench.quantize(w.astype(np.float64), "rtn")
    with pytest.raises(ValueError, match="array is not C-contiguous"):
        tqbench.quantize(w.T, "rtn")
    bad = w.copy()
    bad[3, 7] = np.nan
    with pytest.raises(ValueError, match=r"array has a non-finite value \(nan\) at \[3, 7\]"):
        tqbench.quantize(bad, "rtn")
    with pytest.raises(ValueError, match="1 or 2 dimensions"):
        tqbench.quantize(w.reshape(4, 16, 256), "rtn")
    with pytest.raises(ValueError, match="array is empty"):
        tqbench.quantize(np.zeros((0, 8), np.float32), "rtn")
    with pytest.raises(TypeError, match="numpy array"):
        tqbench.quantize([[1.0, 2.0]], "rtn")
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        tqbench.quantize(w, "rtn", seed=-1)
    with pytest.raises(ValueError, match="group"):
        tqbench.quantize(matrix(8, 100), "turboquant(bits=4,group=128)")
    with pytest.raises(TypeError, match="w_hat must be float32"):
        tqbench.evaluate(w, w.astype(np.float64))
    with pytest.raises(ValueError, match="one shape"):
        tqbench.evaluate(w, w[:10].copy())
    with pytest.raises(ValueError, match="needs the quantized result"):
        tqbench.evaluate(w, w, ["bits_per_weight"])
    with pytest.raises(ValueError, match="not a matrix metric"):
        tqbench.evaluate(w, w, ["perplexity"])
    with pytest.raises(ValueError, match="README.md: error: not an HDF5 file"):
        tqbench.load(ROOT / "README.md")


def test_names_fail_as_the_cli_fails(tmp_path):
    for name in ["rtn(bits=99)", "turboquant(bitz=4)", "nosuch(bits=4)", "rtn(bits=4"]:
        with pytest.raises(ValueError) as e:
            tqbench.canonical_name(name)
        spec = tmp_path / "s.yaml"
        spec.write_text(f"experiment: e\ndata: {{source: gaussian, rows: 4, cols: 64}}\nquantizers: ['{name}']\n")
        cli = subprocess.run([CLI, "run", str(spec), "--dry-run"], capture_output=True, text=True)
        assert cli.returncode == 2
        assert str(e.value) in cli.stderr, (name, str(e.value), cli.stderr)


def test_registries():
    families = {f["family"]: f for f in tqbench.quantizers()}
    assert {"turboquant", "rtn", "qjl", "residual", "q4_K"} <= set(families)
    assert families["rtn"]["params"]["bits"]["valid"]
    names = {m["name"]: m for m in tqbench.metrics()}
    assert names["weight_nmse"]["matrix"] and not names["weight_nmse"]["needs_quantized"]
    assert names["perplexity"]["model"] and names["bits_per_weight"]["needs_quantized"]


def test_threads_quantize_at_once_and_match_one_at_a_time():
    w = matrix(128, 512)
    names = ["turboquant(bits=4,group=128)", "rtn(bits=3,group=64)", "qjl(group=128)", "turboquant_prod(bits=3,group=128)"]
    serial = [tqbench.quantize(w, n, seed=7).dequantize() for n in names]
    results = [None] * len(names)

    def work(i):
        results[i] = tqbench.quantize(w, names[i], seed=7).dequantize()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(names))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(serial, results):
        np.testing.assert_array_equal(a, b)


def test_errors_of_any_method_are_measured():
    w = matrix()
    w_hat = w + np.float32(0.01) * matrix(seed=1)  # someone's own method
    m = tqbench.evaluate(w, w_hat, ["weight_nmse", "d_mse"])
    assert math.isclose(m["weight_nmse"], float(((w - w_hat) ** 2).sum() / (w ** 2).sum()), rel_tol=1e-6)
