#include "quantizers/rotated.hpp"

#include <fmt/format.h>

#include "common/error.hpp"
#include "quantizers/weight_groups.hpp"

namespace tqb {
namespace {

class Rotated final : public Quantizer {
 public:
  Rotated(const ParamSchema& schema, const Params& p, std::unique_ptr<Quantizer> inner)
      : Quantizer("rotated", schema, p),
        inner_(std::move(inner)),
        rotation_(parse_rotation_kind(get_str(p, "rotation"))),
        group_(inner_->decode_form().front().group) {}

  ShapeProblem check_shape(std::size_t rows, std::size_t cols) const override { return inner_->check_shape(rows, cols); }
  double nominal_bits(std::size_t cols) const override { return inner_->nominal_bits(cols); }
  std::unique_ptr<Quantizer> without_rotation() const override {
    return rotation_ == RotationKind::none ? nullptr : parse_quantizer(inner_->name());
  }
  // The rotations follow from the seed: nothing stored beyond the inner quantizer's.
  std::uint64_t storage_bytes(std::size_t rows, std::size_t cols) const override { return inner_->storage_bytes(rows, cols); }
  bool uses_seed() const override { return rotation_ != RotationKind::none || inner_->uses_seed(); }

  // The rotated copy of the matrix, Haar's g × g rotations and their QR, and Q's own state.
  std::uint64_t working_bytes(std::size_t rows, std::size_t cols) const override {
    const std::uint64_t g = group_width(group_, cols), groups = cols / g;
    std::uint64_t b = inner_->working_bytes(rows, cols) + std::uint64_t{rows} * cols * 4;
    if (rotation_ == RotationKind::haar) b += groups * g * g * 4 + 3 * g * g * 8 + std::uint64_t{rows} * cols * 4;
    return b;
  }

  QuantizedMatrix quantize(const float* w, std::size_t rows, std::size_t cols, std::uint64_t seed) const override {
    std::vector<float> x(w, w + rows * cols);
    rotate_groups(rotations(cols, seed), x.data(), rows, cols, /*inverse=*/false);
    QuantizedMatrix q = inner_->quantize(x.data(), rows, cols, seed);
    q.format = name();
    q.seed = seed;
    return q;
  }

  void dequantize(const QuantizedMatrix& q, float* out) const override {
    inner_->dequantize(q, out);
    rotate_groups(rotations(q.cols, q.seed), out, q.rows, q.cols, /*inverse=*/true);
  }

  std::vector<PassForm> decode_form() const override {
    auto form = inner_->decode_form();
    for (auto& f : form) f.transform = group_transform_of(rotation_);
    return form;
  }

  void describe_decode(const QuantizedMatrix& q, std::vector<DecodePass>& out) const override {
    const std::size_t first = out.size();
    inner_->describe_decode(q, out);
    const auto rot = rotations(q.cols, q.seed);
    for (std::size_t k = first; k < out.size(); ++k) {
      out[k].transform = group_transform_of(rotation_);
      if (rotation_ != RotationKind::none) out[k].rotations = rot;
    }
  }

 private:
  std::vector<std::shared_ptr<const Rotation>> rotations(std::size_t cols, std::uint64_t seed) const {
    const std::size_t g = group_width(group_, cols);
    return group_rotations(rotation_, g, cols / g, seed);
  }

  std::unique_ptr<Quantizer> inner_;
  RotationKind rotation_;
  std::int64_t group_;  // the inner quantizer's group (0 = the whole row): one rotation per group
};

}  // namespace

QuantizerFamily rotated_family() {
  using K = ParamSpec::Kind;
  const ParamSchema schema({
      {.name = "quantizer", .kind = K::text, .default_value = std::string("rtn"),
       .description = "the quantizer applied to the rotated weights (a one-line name; may be given first without "
                      "its key: rotated(rtn(bits=4,group=128)))"},
      {.name = "rotation", .kind = K::choice, .default_value = std::string("hadamard"),
       .description = "random rotation per group of the inner quantizer: hadamard (random signs + Walsh-Hadamard), "
                      "haar (QR of a Gaussian), none",
       .choices = rotation_kind_names()},
  });
  return {"rotated", "a random rotation per group before any quantizer (TurboQuant §3's stage on its own: rotated(rtn(...)))",
          schema, [schema](const Params& given) -> std::unique_ptr<Quantizer> {
            Params p = given;
            auto inner = parse_quantizer(get_str(p, "quantizer"));
            const auto form = inner->decode_form();
            bool plain = !form.empty();
            for (const auto& f : form) plain &= f.transform == GroupTransform::identity && f.group == form.front().group;
            if (!plain)
              throw InputError(fmt::format(
                  "rotated({}): rotated wraps a quantizer whose passes share one group width and have no transform of "
                  "their own (rtn, or a residual stack of rtn passes); {}", inner->name(),
                  form.empty() ? inner->family() + " has no per-group decode description"
                               : inner->family() + " rotates or projects its groups itself, or its passes differ in group width"));
            p["quantizer"] = inner->name();  // canonical, so that name() parses back to equal params
            return std::make_unique<Rotated>(schema, p, std::move(inner));
          }};
}

}  // namespace tqb
