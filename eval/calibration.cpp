#include "eval/calibration.hpp"

#include <fmt/format.h>

#include <cmath>
#include <memory>

#include "common/error.hpp"
#include "models/llama.hpp"
#include "models/name_pattern.hpp"

namespace tqb {
namespace {

// A dense layer that adds its inputs' statistics to a LayerStatistics as it computes.
class RecordingLinear final : public Linear {
 public:
  RecordingLinear(std::unique_ptr<Linear> inner, LayerStatistics* stats) : inner_(std::move(inner)), stats_(stats) {
    const auto in = static_cast<Eigen::Index>(inner_->in());
    stats_->hessian = Eigen::MatrixXd::Zero(in, in);
    stats_->mean_abs = Eigen::VectorXd::Zero(in);
  }
  std::size_t in() const override { return inner_->in(); }
  std::size_t out() const override { return inner_->out(); }
  void forward(const float* x, std::size_t n, float* y) const override {
    const Eigen::Map<const Matrix> X(x, static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(in()));
    const Eigen::MatrixXd Xd = X.cast<double>();
    stats_->hessian.noalias() += Xd.transpose() * Xd;
    stats_->mean_abs += Xd.cwiseAbs().colwise().sum().transpose();  // a sum until the end
    stats_->samples += n;
    inner_->forward(x, n, y);
  }
  std::size_t weight_bytes() const override { return inner_->weight_bytes(); }
  std::string kernel() const override { return inner_->kernel(); }

 private:
  std::unique_ptr<Linear> inner_;
  LayerStatistics* stats_;
};

}  // namespace

std::map<std::string, LayerStatistics> collect_layer_statistics(const Checkpoint& ck, const std::vector<int>& tokens, std::size_t ctx,
                                                                 const std::string& include) {
  if (ctx == 0 || tokens.empty() || tokens.size() % ctx != 0)
    throw InputError(fmt::format("calibration: {} tokens do not make whole chunks of {}", tokens.size(), ctx));
  const NamePattern pattern(include);
  std::map<std::string, LayerStatistics> stats;
  const LlamaModel model(ck, [&](const std::string& name, const Matrix& w) -> std::unique_ptr<Linear> {
    if (!pattern.full_match(name)) return make_dense_linear(w);
    return std::make_unique<RecordingLinear>(make_dense_linear(w), &stats[name]);
  });
  if (stats.empty()) throw InputError(fmt::format("calibration: include '{}' selects no linear layer", include));
  for (std::size_t c = 0; c < tokens.size(); c += ctx) {
    KvCache cache = model.new_cache(ctx);
    model.forward({tokens.begin() + static_cast<std::ptrdiff_t>(c), tokens.begin() + static_cast<std::ptrdiff_t>(c + ctx)}, cache, 1);
  }
  for (auto& [name, s] : stats)
    if (s.samples) s.mean_abs /= static_cast<double>(s.samples);
  return stats;
}

}  // namespace tqb
