#include "harness/data_source.hpp"

#include <cmath>

#include "common/named_table.hpp"
#include "common/rng.hpp"
#include "harness/model_source.hpp"

namespace tqb {
namespace {

using K = ParamSpec::Kind;

ParamSpec rows_spec() {
  return {.name = "rows", .kind = K::integer, .default_value = std::int64_t{256},
          .description = "rows (output channels, or vectors)", .min = 1, .max = 1 << 24};
}
ParamSpec cols_spec() {
  return {.name = "cols", .kind = K::integer, .default_value = std::int64_t{1024},
          .description = "columns (input channels, or dimension d)", .min = 1, .max = 1 << 24};
}

std::pair<std::size_t, std::size_t> shape_of(const Params& p) {
  return {static_cast<std::size_t>(get_int(p, "rows")), static_cast<std::size_t>(get_int(p, "cols"))};
}

// Each row has its own stream derived from (seed, row), so the matrix is the same whatever the
// thread count and rows can be generated in parallel.
template <class Fill>
Matrix generate(const Params& p, std::uint64_t seed, Fill fill) {
  const auto shape = shape_of(p);
  const std::size_t rows = shape.first, cols = shape.second;  // not a structured binding: OpenMP captures them (clang 14)
  Matrix m(rows, cols);
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t r = 0; r < static_cast<std::ptrdiff_t>(rows); ++r) {
    std::uint64_t st = seed ^ (0x9E3779B97F4A7C15ull * static_cast<std::uint64_t>(r + 1));
    Rng rng(splitmix64(st));
    fill(rng, m.row(r).data(), cols);
  }
  return m;
}

}  // namespace

std::string to_string(DataKind k) { return k == DataKind::model ? "model" : "matrix"; }

Matrix random_unit_rows(std::size_t n, std::size_t d, std::uint64_t seed) {
  Params p{{"rows", static_cast<std::int64_t>(n)}, {"cols", static_cast<std::int64_t>(d)}};
  return generate(p, seed, [](Rng& rng, float* x, std::size_t c) {
    double norm2 = 0;
    std::vector<double> v(c);
    for (std::size_t i = 0; i < c; ++i) {
      v[i] = rng.normal();
      norm2 += v[i] * v[i];
    }
    const double inv = 1.0 / std::sqrt(norm2);
    for (std::size_t i = 0; i < c; ++i) x[i] = static_cast<float>(v[i] * inv);
  });
}

const std::vector<DataSource>& data_sources() {
  // To add a matrix source: a schema, a shape and a generator here. Model data: harness/model_source.cpp.
  static const std::vector<DataSource> sources = [] {
    std::vector<DataSource> all{
      {"gaussian", "i.i.d. N(0, std^2) entries", ParamSchema({rows_spec(), cols_spec(),
        {.name = "std", .kind = K::real, .default_value = 1.0, .description = "standard deviation",
         .min = 1e-30, .max = 1e30}}),
       shape_of,
       [](const Params& p, std::uint64_t seed) {
         const double sd = get_real(p, "std");
         return generate(p, seed, [sd](Rng& rng, float* x, std::size_t c) {
           for (std::size_t i = 0; i < c; ++i) x[i] = static_cast<float>(sd * rng.normal());
         });
       }},
      {"sphere", "rows uniform on the unit sphere S^(cols-1)", ParamSchema({rows_spec(), cols_spec()}), shape_of,
       [](const Params& p, std::uint64_t seed) {
         const auto [rows, cols] = shape_of(p);
         return random_unit_rows(rows, cols, seed);
       }},
      {"student_t", "i.i.d. Student-t entries with nu degrees of freedom (heavy-tailed weights)",
       ParamSchema({rows_spec(), cols_spec(),
                    {.name = "nu", .kind = K::integer, .default_value = std::int64_t{3},
                     .description = "degrees of freedom (smaller = heavier tails)", .min = 1, .max = 1000}}),
       shape_of,
       [](const Params& p, std::uint64_t seed) {
         const double nu = static_cast<double>(get_int(p, "nu"));
         return generate(p, seed, [nu](Rng& rng, float* x, std::size_t c) {
           for (std::size_t i = 0; i < c; ++i) x[i] = static_cast<float>(rng.student_t(nu));
         });
       }},
    };
    all.push_back(model_source());
    return all;
  }();
  return sources;
}

const DataSource* find_data_source(const std::string& name) { return find_named(data_sources(), name); }

std::vector<std::string> data_source_names() { return names_of(data_sources()); }

}  // namespace tqb
