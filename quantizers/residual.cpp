#include "quantizers/residual.hpp"

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/rng.hpp"
#include "quantizers/weight_groups.hpp"

namespace tqb {
namespace {

class ResidualStack final : public Quantizer {
 public:
  enum class Seeds { different, shared, alternating };

  ResidualStack(std::string family, const ParamSchema& schema, Params params,
                std::vector<std::unique_ptr<Quantizer>> passes, Seeds seeds)
      : Quantizer(std::move(family), schema, std::move(params)), passes_(std::move(passes)), seeds_(seeds) {}

  ShapeProblem check_shape(std::size_t rows, std::size_t cols) const override {
    for (const auto& p : passes_) {
      ShapeProblem problem = p->check_shape(rows, cols);
      if (!problem.message.empty()) return {problem.param, p->name() + ": " + problem.message};
    }
    return {};
  }

  std::vector<const Quantizer*> passes() const override {
    std::vector<const Quantizer*> out;
    for (const auto& p : passes_) out.push_back(p.get());
    return out;
  }

  double nominal_bits(std::size_t cols) const override {
    double b = 0;
    for (const auto& p : passes_) b += p->nominal_bits(cols);
    return b;
  }

  std::uint64_t storage_bytes(std::size_t rows, std::size_t cols) const override {
    std::uint64_t b = 0;
    for (const auto& p : passes_) b += p->storage_bytes(rows, cols);
    return b;
  }

  // The residual and one pass's approximation (float copies), plus every pass's own state.
  std::uint64_t working_bytes(std::size_t rows, std::size_t cols) const override {
    std::uint64_t b = 2 * std::uint64_t{rows} * cols * 4;
    for (const auto& p : passes_) b += p->working_bytes(rows, cols);
    return b;
  }

  QuantizedMatrix quantize(const float* w, std::size_t rows, std::size_t cols, std::uint64_t seed) const override {
    QuantizedMatrix q = new_matrix(rows, cols, seed);
    std::vector<float> residual(w, w + rows * cols), approx(rows * cols);
    for (std::size_t k = 0; k < passes_.size(); ++k) {
      q.passes.push_back(passes_[k]->quantize(residual.data(), rows, cols, pass_seed(seed, k)));
      if (k + 1 == passes_.size()) break;
      passes_[k]->dequantize(q.passes.back(), approx.data());
#pragma omp parallel for schedule(static)
      for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(residual.size()); ++i) residual[i] -= approx[i];
    }
    return q;
  }

  void dequantize(const QuantizedMatrix& q, float* out) const override {
    const std::size_t n = q.rows * q.cols;
    std::vector<float> part(n);
    for (std::size_t k = 0; k < passes_.size(); ++k) {
      passes_[k]->dequantize(q.passes.at(k), k == 0 ? out : part.data());
      if (k == 0) continue;
#pragma omp parallel for schedule(static)
      for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(n); ++i) out[i] += part[i];
    }
  }

 private:
  std::uint64_t pass_seed(std::uint64_t seed, std::size_t k) const {
    if (k == 0 || seeds_ == Seeds::shared) return seed;
    if (seeds_ == Seeds::alternating) return k % 2 == 0 ? seed : derive_seed(seed, "pass 1");
    return derive_seed(seed, fmt::format("pass {}", k));
  }

  std::vector<std::unique_ptr<Quantizer>> passes_;
  Seeds seeds_;
};

// Splits "a+b+c" at '+' outside parentheses.
std::vector<std::string> split_stack(const std::string& text) {
  std::vector<std::string> out{""};
  int depth = 0;
  for (char c : text) {
    if (c == '(') ++depth;
    if (c == ')') --depth;
    if (c == '+' && depth == 0) out.emplace_back();
    else if (c != ' ') out.back() += c;
  }
  return out;
}

// The quantizer of one pass of a residual stack, and its canonical text in the stack.
std::pair<std::unique_ptr<Quantizer>, std::string> make_pass(const std::string& item, const Params& p,
                                                             const std::string& stack) {
  const std::string where = "residual stack '" + stack + "'";
  if (item.empty()) throw InputError(where + ": empty pass; expected passes like 4+2, 3+1-qjl or rtn(bits=2)+4");
  if (item.find('(') != std::string::npos) {
    auto q = parse_quantizer(item);
    std::string canonical = q->name();
    return {std::move(q), canonical};
  }
  if (item == "qjl" || item == "1-qjl")
    return {make_quantizer("qjl", {{"group", p.at("group")}, {"norm", p.at("norm")}}), "1-qjl"};
  if (item.find_first_not_of("0123456789") == std::string::npos && item.size() <= 2) {
    const int bits = std::stoi(item);
    if (bits < 1 || bits > 8) throw InputError(fmt::format("{}: pass '{}' needs 1 to 8 bits", where, item));
    return {make_quantizer("turboquant", {{"bits", std::int64_t{bits}},
                                          {"codebook", p.at("codebook")},
                                          {"rotation", p.at("rotation")},
                                          {"group", p.at("group")},
                                          {"norm", p.at("norm")}}),
            item};
  }
  throw InputError(fmt::format("{}: pass '{}' is not valid; expected bits (1-8, a turboquant pass), 1-qjl, or a "
                               "quantizer name such as rtn(bits=2)",
                               where, item));
}

ResidualStack::Seeds parse_seeds(const std::string& s) {
  if (s == "shared") return ResidualStack::Seeds::shared;
  if (s == "alternating") return ResidualStack::Seeds::alternating;
  return ResidualStack::Seeds::different;
}

std::vector<ParamSpec> shared_turboquant_params() {
  return {codebook_param(), rotation_param(), group_param(128), norm_param()};
}

}  // namespace

QuantizerFamily residual_family() {
  using K = ParamSpec::Kind;
  std::vector<ParamSpec> specs{
      {.name = "stack", .kind = K::text, .default_value = std::string("4+4"),
       .description = "passes joined by '+': bits of a turboquant pass, 1-qjl, or a quantizer name"}};
  for (auto& s : shared_turboquant_params()) specs.push_back(s);
  specs.push_back({.name = "seeds", .kind = K::choice, .default_value = std::string("different"),
                   .description = "rotation seeds across passes", .choices = {"different", "shared", "alternating"}});
  const ParamSchema schema(std::move(specs));
  return {"residual", "a stack of quantizers applied to successive residuals (4+4, 4+2, 3+2, 3+1-qjl, ...)",
          schema, [schema](const Params& given) -> std::unique_ptr<Quantizer> {
            Params p = given;
            const std::string stack = get_str(p, "stack");
            std::vector<std::unique_ptr<Quantizer>> passes;
            std::string canonical;
            for (const auto& item : split_stack(stack)) {
              auto [q, text] = make_pass(item, p, stack);
              passes.push_back(std::move(q));
              canonical += (canonical.empty() ? "" : "+") + text;
            }
            p["stack"] = canonical;  // so that name() is canonical and parses back to equal params
            return std::make_unique<ResidualStack>("residual", schema, p, std::move(passes), parse_seeds(get_str(p, "seeds")));
          }};
}

QuantizerFamily turboquant_prod_family() {
  using K = ParamSpec::Kind;
  std::vector<ParamSpec> specs{{.name = "bits", .kind = K::integer, .default_value = std::int64_t{4},
                                .description = "bits per coordinate: b-1 for the MSE stage, 1 for QJL",
                                .min = 1, .max = 9}};
  for (auto& s : shared_turboquant_params()) specs.push_back(s);
  specs[3].default_value = std::int64_t{0};  // group: the whole row, as Algorithm 2
  const ParamSchema schema(std::move(specs));
  return {"turboquant_prod", "TurboQuant_prod (Algorithm 2): (b-1)-bit turboquant + 1-bit QJL of the residual",
          schema, [schema](const Params& p) -> std::unique_ptr<Quantizer> {
            const std::int64_t bits = get_int(p, "bits");
            std::vector<std::unique_ptr<Quantizer>> passes;
            if (bits >= 2)
              passes.push_back(make_quantizer("turboquant", {{"bits", bits - 1},
                                                             {"codebook", p.at("codebook")},
                                                             {"rotation", p.at("rotation")},
                                                             {"group", p.at("group")},
                                                             {"norm", p.at("norm")}}));
            passes.push_back(make_quantizer("qjl", {{"group", p.at("group")}, {"norm", p.at("norm")}}));
            return std::make_unique<ResidualStack>("turboquant_prod", schema, p, std::move(passes),
                                                   ResidualStack::Seeds::different);
          }};
}

}  // namespace tqb
