#include "kernels/registry.hpp"

#include <fmt/format.h>

#include "common/named_table.hpp"
#include "common/error.hpp"
#include "common/suggest.hpp"
#include "kernels/cpu/fused_i16.hpp"
#include "kernels/cpu/fused_i8.hpp"
#include "kernels/cpu/fused_lut.hpp"
#include "kernels/cuda/lut_mma_layout.hpp"
#include "kernels/cuda/lut_mma_linear.hpp"
#include "kernels/cuda/lut_mma_timing.hpp"

namespace tqb {

const std::vector<LinearKernel>& linear_kernels() {
  // To add a kernel: an entry here, placed by measured speed, and a parity test in tests/test_kernels.cpp.
  // fused_lut comes after the reference: it holds 1/8 of the bytes but is no faster at 4-bit GEMV and
  // several times slower at other code widths (docs/PERF.md), so auto never takes it; name it to get it.
  static const std::vector<LinearKernel> kernels{
      {"fused_i16", false, "4-bit rtn/turboquant codes and their stacks: 14-bit integer activations, pmaddwd / AVX-512 VNNI, any batch (fused_i16.hpp)",
       [](const Quantizer& quantizer) { return fused_i16_supports(quantizer); },
       [](const Quantizer& quantizer, const QuantizedMatrix& q) { return make_fused_i16_linear(quantizer, q); }},
      {"fused_i8", false,
       "4-bit rtn/turboquant codes and their stacks: int8 activations and table, AVX-512 VNNI vpdpbusd, for prefill; "
       "approximate (fused_i8.hpp)",
       [](const Quantizer& quantizer) { return fused_i8_supports(quantizer); },
       [](const Quantizer& quantizer, const QuantizedMatrix& q) { return make_fused_i8_linear(quantizer, q); }, true},
      {"dequantized_dense", false, "the reference: dequantize once, then a dense fp32 GEMM/GEMV (OpenBLAS)",
       [](const Quantizer&) { return std::string(); },
       [](const Quantizer& quantizer, const QuantizedMatrix& q) { return make_dequantized_linear(quantizer, q); }},
      {"fused_lut", false, "any rtn/turboquant/qjl code width: per-group float lookup tables, activation-side rotations (fused_lut.hpp)",
       [](const Quantizer& quantizer) { return fused_lut_supports(quantizer); },
       [](const Quantizer& quantizer, const QuantizedMatrix& q) { return make_fused_lut_linear(quantizer, q); }},
      {"cuda_lut_mma", true,
       "CUDA: 2/3/4-bit rtn/turboquant codes and stacks of two, pair-table decode into bf16 mma.sync, Hadamard fused (kernels/cuda/lut_mma/)",
       [](const Quantizer& quantizer) { return lut_mma_supports(quantizer); },
       [](const Quantizer& quantizer, const QuantizedMatrix& q) { return make_lut_mma_linear(quantizer, q); }, false,
       [](const Quantizer& quantizer, const QuantizedMatrix& q, const Matrix& w, const DeviceTimingRequest& r) {
         return time_lut_mma(quantizer, q, w, r);
       }},
  };
  return kernels;
}

std::vector<std::string> linear_kernel_names() {
  std::vector<std::string> out{"auto"};
  for (auto& name : names_of(linear_kernels())) out.push_back(std::move(name));
  return out;
}

std::unique_ptr<Linear> make_linear(const std::string& kernel, const Quantizer& quantizer, const QuantizedMatrix& q) {
  for (const auto& k : linear_kernels()) {
    if (kernel != "auto" && k.name != kernel) continue;
    if (kernel == "auto" && (k.needs_gpu || k.approximate)) continue;
    const std::string why = k.supports(quantizer);
    if (why.empty()) return k.make(quantizer, q);
    if (kernel != "auto") throw InputError(fmt::format("kernel '{}' cannot run {}: {}", kernel, quantizer.name(), why));
  }
  if (kernel == "auto") throw InputError(fmt::format("no kernel can run {}", quantizer.name()));
  throw InputError(fmt::format("unknown kernel '{}'{}; valid: {}", kernel, did_you_mean(kernel, linear_kernel_names()),
                               join(linear_kernel_names())));
}

}  // namespace tqb
