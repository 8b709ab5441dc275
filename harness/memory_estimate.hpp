#pragma once
// How much memory a sweep point will need, estimated from its shape before anything is allocated, so
// that a point that cannot fit (a Haar rotation at d = 65536, a 64d sketch, millions of queries) is
// refused with the figure instead of being killed by the OOM killer, and `run --dry-run` can say what
// the largest point needs.
#include <cstdint>
#include <optional>
#include <string>

#include "harness/spec.hpp"
#include "harness/sweep.hpp"

namespace tqb {

// Peak bytes of one matrix point: the data matrix, its dequantized copy, the quantizer's working state
// (Quantizer::working_bytes), the inner-product metrics' queries and rows x queries products in doubles
// when a listed metric uses them, and kernel timing's activations. nullopt for points whose shape is
// known only after loading (model tensors, whole models).
std::optional<std::uint64_t> estimate_point_bytes(const ExperimentSpec& spec, const SweepPoint& point);

// Empty when the estimate fits in `available` bytes (0 = unknown: never refuse); otherwise the reason a
// point is refused, with both figures and what to reduce.
std::string memory_refusal(const ExperimentSpec& spec, const SweepPoint& point, std::uint64_t available);

}  // namespace tqb
