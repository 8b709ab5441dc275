// tqbench._core: the C++ core for Python (the package python/tqbench wraps it). pybind11 rather than nanobind:
// Debian ships it (python3-pybind11), so the README's set-up builds the module from system packages like the rest of
// tqbench, and its numpy support covers what the package exchanges (float32 matrices, uint8 codes).
//
// Errors keep the CLI's text: InputError (bad names, shapes, inputs) becomes ValueError, RunError RuntimeError; arrays
// are checked here and named by their argument. Long calls (quantize, dequantize, metrics, run) release the GIL; a
// quantizer is made per call and only read, so different threads may quantize at once.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/float_format.hpp"
#include "common/rng.hpp"
#include "common/version.hpp"
#include "harness/data_source.hpp"
#include "harness/metrics.hpp"
#include "harness/runner.hpp"
#include "harness/spec.hpp"
#include "harness/store.hpp"
#include "harness/sweep.hpp"
#include "quantizers/bitpack.hpp"
#include "quantizers/registry.hpp"

namespace py = pybind11;
using namespace tqb;

namespace {

// A float32 matrix argument, checked: the dtype, 1 or 2 dimensions, C order, not empty, every value finite. A 1-D
// array is one row. Returns the array itself (no copy): the caller keeps it alive while reading its data.
struct MatrixArg {
  py::array_t<float> a;
  std::size_t rows = 0, cols = 0;
  bool vector = false;
  const float* data() const { return a.data(); }
};

MatrixArg matrix_arg(const py::handle& obj, const char* fn, const char* arg) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(fmt::format("tqbench.{}: {} must be a numpy array (or a tensor with __dlpack__), not {}", fn, arg,
                                     std::string(py::str(obj.get_type().attr("__name__")))));
  const auto arr = py::reinterpret_borrow<py::array>(obj);
  if (!arr.dtype().is(py::dtype::of<float>()))
    throw py::type_error(fmt::format("tqbench.{}: {} must be float32, not {} (convert with .astype(numpy.float32))", fn, arg,
                                     std::string(py::str(arr.dtype()))));
  if (arr.ndim() != 1 && arr.ndim() != 2)
    throw py::value_error(fmt::format("tqbench.{}: {} must be a vector or a matrix (1 or 2 dimensions), not {} dimensions", fn, arg, arr.ndim()));
  if (!(arr.flags() & py::array::c_style))
    throw py::value_error(fmt::format("tqbench.{}: {} is not C-contiguous (a slice or a transpose); pass numpy.ascontiguousarray({})", fn,
                                      arg, arg));
  MatrixArg m;
  m.a = py::reinterpret_borrow<py::array_t<float>>(arr);
  m.vector = arr.ndim() == 1;
  m.rows = m.vector ? 1 : static_cast<std::size_t>(arr.shape(0));
  m.cols = static_cast<std::size_t>(m.vector ? arr.shape(0) : arr.shape(1));
  if (m.rows == 0 || m.cols == 0) throw py::value_error(fmt::format("tqbench.{}: {} is empty ({} x {})", fn, arg, m.rows, m.cols));
  const float* p = m.data();
  for (std::size_t i = 0; i < m.rows * m.cols; ++i)
    if (!std::isfinite(p[i]))
      throw py::value_error(fmt::format("tqbench.{}: {} has a non-finite value ({}) at [{}, {}]", fn, arg, p[i], i / m.cols, i % m.cols));
  return m;
}

py::array_t<float> floats(const std::vector<float>& v) { return py::array_t<float>(static_cast<py::ssize_t>(v.size()), v.data()); }

// One quantized matrix with the quantizer that made it (shared by its passes).
struct Quantized {
  std::shared_ptr<const Quantizer> quantizer;
  std::shared_ptr<const QuantizedMatrix> q;
  const QuantizedMatrix* self = nullptr;  // q itself, or one of its passes
  bool vector = false;                    // quantized from a 1-D array: dequantize() gives one back

  const QuantizedMatrix& m() const { return *self; }
  py::array_t<float> dequantize() const {
    if (self != q.get())
      throw py::value_error("tqbench: a residual pass alone has no dequantizer of its own; dequantize the whole result");
    py::array_t<float> out(vector ? std::vector<py::ssize_t>{static_cast<py::ssize_t>(q->cols)}
                                  : std::vector<py::ssize_t>{static_cast<py::ssize_t>(q->rows), static_cast<py::ssize_t>(q->cols)});
    float* dst = out.mutable_data();
    {
      py::gil_scoped_release unlocked;
      quantizer->dequantize(*q, dst);
    }
    return out;
  }
  // The decode description (quantizers/decode.hpp): per pass, codes unpacked to rows × groups × m, a (scale) and b
  // (offset) per group, the lookup table.
  py::list decode() const {
    if (self != q.get()) throw py::value_error("tqbench: decode() describes the whole result, not one pass");
    std::vector<DecodePass> passes;
    try {
      quantizer->describe_decode(*q, passes);
    } catch (const std::invalid_argument&) {
      throw py::value_error(fmt::format("tqbench: {} has no decode description (llama.cpp's block formats are read by their own "
                                        "dequantizer); use packed_codes and dequantize()",
                                        q->format));
    }
    py::list out;
    for (const DecodePass& p : passes) {
      py::array_t<std::uint8_t> codes({static_cast<py::ssize_t>(p.rows), static_cast<py::ssize_t>(p.groups), static_cast<py::ssize_t>(p.m)});
      unpack_codes(p.codes, p.rows * p.groups * p.m, p.bits, codes.mutable_data());
      py::dict d;
      d["rows"] = p.rows;
      d["cols"] = p.cols;
      d["group"] = p.g;
      d["groups"] = p.groups;
      d["codes_per_group"] = p.m;
      d["bits"] = p.bits;
      d["transform"] = to_string(p.transform);
      d["codes"] = codes;
      d["scale"] = floats(p.a).reshape({static_cast<py::ssize_t>(p.rows), static_cast<py::ssize_t>(p.groups)});
      d["offset"] = p.b.empty() ? py::object(py::none())
                                : py::object(floats(p.b).reshape({static_cast<py::ssize_t>(p.rows), static_cast<py::ssize_t>(p.groups)}));
      d["lut"] = floats(p.lut);
      out.append(d);
    }
    return out;
  }
  py::list passes() const {
    py::list out;
    for (const QuantizedMatrix& p : m().passes) out.append(Quantized{quantizer, q, &p, vector});
    return out;
  }
};

Quantized quantize(const py::handle& array, const std::string& name, std::uint64_t seed) {
  std::shared_ptr<const Quantizer> q = parse_quantizer(name);
  const MatrixArg w = matrix_arg(array, "quantize", "array");
  const ShapeProblem p = q->check_shape(w.rows, w.cols);
  if (!p.message.empty())
    throw py::value_error(fmt::format("tqbench.quantize: {} cannot quantize a {} x {} array{}: {}", q->name(), w.rows, w.cols,
                                      p.param.empty() ? "" : " (parameter " + p.param + ")", p.message));
  auto result = std::make_shared<QuantizedMatrix>();
  {
    py::gil_scoped_release unlocked;
    *result = q->quantize(w.data(), w.rows, w.cols, seed);
  }
  return Quantized{q, result, result.get(), w.vector};
}

py::dict schema_dict(const ParamSchema& schema) {
  py::dict params;
  for (const auto& s : schema.specs()) {
    py::dict d;
    d["default"] = s.format(s.default_value);
    d["description"] = s.description;
    d["valid"] = s.valid_text();
    params[py::str(s.name)] = d;
  }
  return params;
}

// The metrics that read only W, Ŵ and the queries: they apply to any method's Ŵ (the others need tqbench's quantized
// result: its bits, its quantizer's bounds).
bool array_metric(const Metric& m) {
  static const std::vector<std::string> names{"weight_mse", "weight_nmse", "worst_row_rel_err", "ip_bias", "ip_var", "ip_rmse",
                                              "ip_bias_ci95", "ip_slope", "ip_slope_ci95", "d_mse", "d_prod"};
  return std::find(names.begin(), names.end(), m.name) != names.end();
}

py::dict evaluate(const py::handle& w_obj, const py::handle& w_hat_obj, const std::vector<std::string>& names, std::size_t queries,
                  std::uint64_t seed, const Quantized* quantized) {
  const MatrixArg w = matrix_arg(w_obj, "evaluate", "w"), w_hat = matrix_arg(w_hat_obj, "evaluate", "w_hat");
  if (w.rows != w_hat.rows || w.cols != w_hat.cols)
    throw py::value_error(fmt::format("tqbench.evaluate: w is {} x {} and w_hat {} x {}: they must have one shape", w.rows, w.cols,
                                      w_hat.rows, w_hat.cols));
  std::vector<const Metric*> chosen;
  for (const auto& name : names) {
    const Metric* m = find_metric(name);
    if (!m || !m->compute) {
      std::vector<std::string> valid;
      for (const auto& x : metrics())
        if (x.compute && !x.timing) valid.push_back(x.name);
      throw py::value_error(fmt::format("tqbench.evaluate: '{}' is not a matrix metric; metrics: {}", name, fmt::join(valid, ", ")));
    }
    if (m->timing) throw py::value_error(fmt::format("tqbench.evaluate: '{}' times a kernel; run a spec for latencies", name));
    if (!quantized && !array_metric(*m))
      throw py::value_error(fmt::format("tqbench.evaluate: '{}' needs the quantized result (quantized=tqbench.quantize(...)): it reads "
                                        "its bits or its quantizer",
                                        name));
    chosen.push_back(m);
  }
  if (quantized && (quantized->m().rows != w.rows || quantized->m().cols != w.cols))
    throw py::value_error("tqbench.evaluate: quantized is of another shape than w");
  if (queries == 0) throw py::value_error("tqbench.evaluate: queries must be at least 1");
  // Row-major Eigen views would copy; the metrics read Matrix, so the arrays are copied once (two matrices).
  Matrix W = Eigen::Map<const Matrix>(w.data(), static_cast<Eigen::Index>(w.rows), static_cast<Eigen::Index>(w.cols));
  Matrix Wh = Eigen::Map<const Matrix>(w_hat.data(), static_cast<Eigen::Index>(w.rows), static_cast<Eigen::Index>(w.cols));
  std::unique_ptr<Quantizer> none;
  QuantizedMatrix empty;
  const Quantizer* qz = quantized ? quantized->quantizer.get() : (none = parse_quantizer("none")).get();
  const QuantizedMatrix& qm = quantized ? quantized->m() : empty;
  std::vector<double> values(chosen.size());
  {
    py::gil_scoped_release unlocked;
    EvalContext ctx(W, Wh, qm, *qz, [&] { return random_unit_rows(queries, W.cols(), seed); });
    for (std::size_t i = 0; i < chosen.size(); ++i) values[i] = chosen[i]->compute(ctx);
  }
  py::dict out;
  for (std::size_t i = 0; i < chosen.size(); ++i) out[py::str(chosen[i]->name)] = values[i];
  return out;
}

py::object cell_object(const Cell& c) {
  if (const auto* i = std::get_if<std::int64_t>(&c)) return py::int_(*i);
  if (const auto* d = std::get_if<double>(&c)) return py::float_(*d);
  return py::str(std::get<std::string>(c));
}

// A result file (journal rows folded in, as `show` reads it): columns with their roles, the values by column, the
// root attributes (provenance).
py::dict read_table(const std::string& path) {
  ResultTable t;
  {
    py::gil_scoped_release unlocked;
    t = read_result_file(path);
  }
  py::list columns;
  py::dict data;
  for (std::size_t j = 0; j < t.columns.size(); ++j) {
    const Column& c = t.columns[j];
    py::dict d;
    d["name"] = c.name;
    d["type"] = column_type_name(c.type);
    d["role"] = c.role;
    d["description"] = c.description;
    d["direction"] = c.direction;
    columns.append(d);
    py::list values;
    for (const auto& row : t.rows) values.append(cell_object(row[j]));
    data[py::str(c.name)] = values;
  }
  py::dict attrs;
  for (const auto& [k, v] : t.attributes) attrs[py::str(k)] = cell_object(v);
  py::dict out;
  out["columns"] = columns;
  out["data"] = data;
  out["attributes"] = attrs;
  return out;
}

// `tqbench run` in this process: the spec as text (path names where its errors are located); returns the exit code
// and what run printed.
py::tuple run_spec(const std::string& text, const std::string& path, const std::string& output, bool force) {
  const ExperimentSpec spec = parse_spec(text, path);
  const auto points = expand_sweep(spec);
  RunOptions o;
  o.output = output;
  o.existing = force ? ExistingFile::overwrite : ExistingFile::resume;
  o.command_line = "tqbench.run (Python)";
  std::ostringstream log;
  int code = 0;
  {
    py::gil_scoped_release unlocked;
    code = run_sweep(spec, points, o, log);
  }
  return py::make_tuple(code, log.str());
}

// A spec's sweep points as run would evaluate them: the quantizer, its seed, the data and (matrix data) the seed and
// count of the inner-product queries, so that a point can be reproduced through the package.
py::list sweep_points(const std::string& text, const std::string& path) {
  const ExperimentSpec spec = parse_spec(text, path);
  py::list out;
  for (const SweepPoint& p : expand_sweep(spec)) {
    py::dict d;
    d["index"] = p.index;
    d["quantizer"] = p.quantizer->name();
    d["seed"] = p.seed;
    d["repeat"] = p.repeat;
    d["data"] = p.data->name;
    d["data_source"] = p.data->source;
    d["data_seed"] = p.data->seed;
    d["kind"] = data_kind(spec) == DataKind::matrix ? "matrix" : "model";
    d["queries"] = spec.queries;
    d["query_seed"] = derive_seed(spec.seed, fmt::format("queries {} {}", p.data->name, spec.queries));
    out.append(d);
  }
  return out;
}

// The matrix of one matrix point (the data source's, with the point's seed).
py::array_t<float> point_matrix(const std::string& text, const std::string& path, std::size_t index) {
  const ExperimentSpec spec = parse_spec(text, path);
  if (data_kind(spec) != DataKind::matrix) throw py::value_error("tqbench.point_matrix: the spec's data is a model, not a matrix");
  const auto points = expand_sweep(spec);
  if (index >= points.size())
    throw py::value_error(fmt::format("tqbench.point_matrix: point {} of a sweep of {} points", index, points.size()));
  const SweepPoint& p = points[index];
  Matrix w;
  {
    py::gil_scoped_release unlocked;
    w = find_data_source(p.data->source)->make(p.data->params, p.data->seed);
  }
  py::array_t<float> out({static_cast<py::ssize_t>(w.rows()), static_cast<py::ssize_t>(w.cols())});
  std::copy(w.data(), w.data() + w.size(), out.mutable_data());
  return out;
}

// The median seconds of `reps` quantize calls in C++ alone (no Python between them): bench/python_overhead.py's
// baseline for the cost of a call through the package.
double quantize_seconds(const py::handle& array, const std::string& name, std::uint64_t seed, int reps) {
  const std::unique_ptr<Quantizer> q = parse_quantizer(name);
  const MatrixArg w = matrix_arg(array, "quantize_seconds", "array");
  std::vector<double> t;
  py::gil_scoped_release unlocked;
  for (int i = 0; i < std::max(1, reps); ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const QuantizedMatrix r = q->quantize(w.data(), w.rows, w.cols, seed);
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "tqbench's C++ core (quantizers, matrix metrics, result files); use the tqbench package";
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const InputError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const RunError& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    }
  });
  m.attr("__version__") = version();
  m.attr("git_commit") = git_commit();

  py::class_<Quantized>(m, "Quantized", "A quantized matrix: what tqbench.quantize returns")
      .def("dequantize", &Quantized::dequantize, "The reference dequantizer: a float32 array of the input's shape")
      .def("decode", &Quantized::decode, "The decode description kernels read: per pass, codes, scale, offset, lookup table")
      .def_property_readonly("format", [](const Quantized& q) { return q.m().format; }, "the canonical quantizer name")
      .def_property_readonly("seed", [](const Quantized& q) { return q.m().seed; })
      .def_property_readonly("shape", [](const Quantized& q) { return py::make_tuple(q.m().rows, q.m().cols); })
      .def_property_readonly("code_bits", [](const Quantized& q) { return q.m().code_bits; })
      .def_property_readonly("bits_per_weight", [](const Quantized& q) { return q.m().bits_per_weight(); },
                             "stored bits per weight: codes, scales, zero points, norms, codebooks")
      .def_property_readonly("storage_bytes", [](const Quantized& q) { return q.m().storage_bytes(); })
      .def_property_readonly("packed_codes",
                             [](const Quantized& q) {
                               const auto& c = q.m().codes;
                               return py::array_t<std::uint8_t>(static_cast<py::ssize_t>(c.size()), c.data());
                             },
                             "the code stream as stored (bit-packed; llama.cpp's blocks for its formats)")
      .def_property_readonly("scales", [](const Quantized& q) { return floats(load_floats(q.m().side_format, q.m().scales)); },
                             "per-group scales or norms as stored, widened to float32 ([rows][groups])")
      .def_property_readonly("zeros", [](const Quantized& q) { return floats(load_floats(q.m().side_format, q.m().zeros)); })
      .def_property_readonly("side_format", [](const Quantized& q) { return to_string(q.m().side_format); })
      .def_property_readonly("codebook", [](const Quantized& q) { return floats(q.m().codebook); })
      .def_property_readonly("passes", &Quantized::passes, "a residual stack's passes, in order (empty for one pass)")
      .def("__repr__", [](const Quantized& q) {
        return fmt::format("<tqbench.Quantized {} {} x {}, {:.4g} bits per weight>", q.m().format, q.m().rows, q.m().cols,
                           q.m().bits_per_weight());
      });

  m.def("quantize", &quantize, py::arg("array"), py::arg("quantizer"), py::arg("seed") = 0);
  m.def("canonical_name", [](const std::string& name) { return parse_quantizer(name)->name(); }, py::arg("quantizer"));
  m.def("quantizers", [] {
    py::list out;
    for (const auto& f : quantizer_families()) {
      py::dict d;
      d["family"] = f.name;
      d["description"] = f.description;
      d["default_name"] = make_quantizer(f.name, {})->name();
      d["params"] = schema_dict(f.schema);
      out.append(d);
    }
    return out;
  });
  m.def("metrics", [] {
    py::list out;
    for (const auto& x : metrics()) {
      py::dict d;
      d["name"] = x.name;
      d["description"] = x.description;
      d["direction"] = to_string(x.direction);
      d["matrix"] = static_cast<bool>(x.compute);
      d["model"] = static_cast<bool>(x.measure);
      d["needs_quantized"] = static_cast<bool>(x.compute) && !array_metric(x);
      out.append(d);
    }
    return out;
  });
  m.def("evaluate", &evaluate, py::arg("w"), py::arg("w_hat"), py::arg("metrics"), py::arg("queries"), py::arg("seed"),
        py::arg("quantized").none(true));
  m.def("read_table", &read_table, py::arg("path"));
  m.def("sweep_points", &sweep_points, py::arg("text"), py::arg("path"));
  m.def("point_matrix", &point_matrix, py::arg("text"), py::arg("path"), py::arg("index"));
  m.def("quantize_seconds", &quantize_seconds, py::arg("array"), py::arg("quantizer"), py::arg("seed"), py::arg("reps"));
  m.def("run_spec", &run_spec, py::arg("text"), py::arg("path"), py::arg("output"), py::arg("force"));
}
