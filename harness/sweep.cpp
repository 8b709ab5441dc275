#include "harness/sweep.hpp"

#include <fmt/format.h>

#include <set>

#include "common/error.hpp"
#include "common/memory.hpp"
#include "common/rng.hpp"
#include "harness/data_source.hpp"
#include "models/name_pattern.hpp"
#include "quantizers/registry.hpp"

namespace tqb {
namespace {

// Every combination of a grid's axis values, first axis slowest.
std::vector<Params> product(const ParamGrid& g) {
  std::vector<Params> out{Params{}};
  for (const auto& axis : g.axes) {
    std::vector<Params> next;
    for (const auto& base : out)
      for (const auto& v : axis.values) {
        Params p = base;
        p[axis.key] = v;
        next.push_back(std::move(p));
      }
    out = std::move(next);
  }
  return out;
}

const SourceLocation& where_of(const ParamGrid& g, const std::string& key) {
  for (const auto& a : g.axes)
    if (a.key == key) return a.where;
  return g.where;
}

}  // namespace

std::vector<SweepPoint> expand_sweep(const ExperimentSpec& spec, std::uint64_t max_points) {
  // Size first, in doubles (exact to 2^53, and a product past that is over any limit anyway).
  auto grid_size = [](const std::vector<ParamGrid>& grids) {
    double total = 0;
    for (const auto& g : grids) {
      double n = 1;
      for (const auto& axis : g.axes) n *= static_cast<double>(axis.values.size());
      total += n;
    }
    return total;
  };
  const double size = grid_size(spec.data) * grid_size(spec.quantizers) *
                     static_cast<double>(spec.timing.kernels.size() * spec.timing.batches.size());
  if (size > static_cast<double>(max_points))
    throw InputError(fmt::format("{}: error: the sweep has {:.4g} points (data × quantizer grids), more than the limit of {}; "
                                 "shrink the axes, or raise the limit with tqbench run --max-points N",
                                 spec.path, size, max_points));
  // A raised limit still meets memory: every point is listed before the first runs (its parameters, key and
  // name: about a kilobyte). Refused here instead of a bad_alloc partway through the listing (issue 28).
  constexpr double kBytesPerPoint = 1024;
  if (const double available = static_cast<double>(available_memory_bytes()); available > 0 && size * kBytesPerPoint > available / 2)
    throw InputError(fmt::format("{}: error: the sweep has {:.4g} points; listing them needs about {:.3g} GB, more than half of the "
                                 "{:.3g} GB of memory available; shrink the axes or split the spec into several",
                                 spec.path, size, size * kBytesPerPoint / 1e9, available / 1e9));
  std::vector<std::shared_ptr<const DataPoint>> data;
  std::vector<const ParamGrid*> data_grid;
  for (const auto& g : spec.data) {
    const DataSource* src = find_data_source(g.family);
    for (const auto& given : product(g)) {
      Params p;
      try {
        p = src->schema.complete(given, g.path);
      } catch (const InputError& e) {
        throw InputError(located_message(g.where, g.path, e.what()));
      }
      if (src->check)  // beyond the schema (a model's regular expressions, KV quantizer names), located here
        if (const ShapeProblem problem = src->check(p); !problem.message.empty())
          throw InputError(located_message(where_of(g, problem.param), g.path + "." + problem.param, problem.message));
      if (src->shape) {
        const auto [rows, cols] = src->shape(p);
        if (rows * cols > kMaxDataElements)
          throw InputError(located_message(g.where, g.path,
                                           fmt::format("{} x {} is too large; at most {} elements", rows, cols, kMaxDataElements)));
      }
      const std::string name = g.family + "(" + src->schema.format(p) + ")";
      // Seeds come from what is quantized, not from how it is evaluated.
      Params identity;
      for (const auto& [k, v] : p)
        if (!src->schema.find(k)->evaluation_only) identity[k] = v;
      const std::string seed_name = g.family + "(" + src->schema.format(identity) + ")";
      data.push_back(std::make_shared<DataPoint>(
          DataPoint{g.family, p, name, derive_seed(spec.seed, "data " + seed_name) >> 1, seed_name}));
      data_grid.push_back(&g);
    }
  }

  std::vector<std::pair<std::shared_ptr<const Quantizer>, const ParamGrid*>> quantizers;
  for (const auto& g : spec.quantizers) {
    for (const auto& given : product(g)) {
      try {
        quantizers.emplace_back(make_quantizer(g.family, given), &g);
      } catch (const InputError& e) {
        throw InputError(located_message(g.where, g.path, e.what()));
      }
    }
  }

  std::vector<SweepPoint> points;
  std::set<std::string> seen;
  // Timing axes (matrix data): every (data, quantizer, repeat) under each kernel and batch, innermost, so that
  // the evaluator quantizes once and times each. A model names its kernel as a data parameter instead.
  const bool swept = timing_axes(spec);
  const std::vector<std::string> timing_kernels = swept ? spec.timing.kernels : std::vector<std::string>{spec.timing.kernel};
  const std::vector<std::int64_t> timing_batches = swept ? spec.timing.batches : std::vector<std::int64_t>{spec.timing.batch};
  for (const auto& d : data) {
    const DataSource* src = find_data_source(d->source);
    const auto [rows, cols] = src->shape ? src->shape(d->params) : std::pair<std::size_t, std::size_t>{0, 0};
    for (const auto& [q, g] : quantizers) {
      const ShapeProblem problem = rows == 0 ? ShapeProblem{} : q->check_shape(rows, cols);
      if (!problem.message.empty())
        throw InputError(located_message(where_of(*g, problem.param), g->path + (problem.param.empty() ? "" : "." + problem.param),
                                         fmt::format("{} on data {}: {}", q->name(), d->name, problem.message)));
    }
    for (std::int64_t r = 0; r < spec.repeats; ++r) {
      // Repeat r > 0 draws its data and its quantizer randomness from seeds of its own.
      const std::string repeat_label = r == 0 ? "" : fmt::format(" repeat {}", r);
      auto dr = r == 0 ? d : std::make_shared<const DataPoint>(DataPoint{d->source, d->params, d->name,
                                                                        derive_seed(spec.seed, "data " + d->seed_name + repeat_label) >> 1,
                                                                        d->seed_name});
      for (const auto& [q, g] : quantizers)
        for (const auto& kernel : timing_kernels)
          for (const std::int64_t batch : timing_batches) {
            const bool seeded = q->uses_seed() || !src->seeded || src->seeded(d->params);
            if (r > 0 && !seeded) continue;  // would repeat repeat 0 bit for bit
            const std::string group = d->name + " | " + q->name() + (swept ? timing_label(kernel, batch) : "");
            const std::string key = spec.repeats > 1 ? fmt::format("{} | repeat {}", group, r) : group;
            if (!seen.insert(key).second) continue;
            // Every quantizer on the same data draws the same random rotations and projections (common
            // random numbers): differences between quantizers are not rotation noise, and a rotation that
            // takes seconds to build (Haar at d = 4096) is built once per data point. Seeds are kept below
            // 2^63 so that they fit the int64 columns of the result file.
            SweepPoint p;
            p.index = points.size();
            p.data = dr;
            p.quantizer = q;
            p.key = key;
            p.group = group;
            p.repeat = static_cast<int>(r);
            p.repeats = seeded ? static_cast<int>(spec.repeats) : 1;
            p.seed = derive_seed(spec.seed, "quantizer " + d->seed_name + repeat_label) >> 1;
            p.timing_kernel = kernel;
            p.timing_batch = batch;
            points.push_back(std::move(p));
          }
    }
  }
  return points;
}

bool timing_axes(const ExperimentSpec& spec) { return spec.timing.swept() && data_kind(spec) == DataKind::matrix; }

std::string timing_label(const std::string& kernel, std::int64_t batch) {
  return fmt::format(" | timing(kernel={},batch={})", kernel, batch);
}

}  // namespace tqb
