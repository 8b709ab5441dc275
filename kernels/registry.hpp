#pragma once
// The kernel registry: every way to compute Y = X Ŵᵀ from a QuantizedMatrix, with a capability check
// per format. "auto" takes the first kernel that supports the format, in the table's order, which is
// fastest first as measured on the development CPU (docs/PERF.md): today dequantize-then-dense, since
// the fused kernel is not yet faster; `fused_lut` holds the weights at their stored size.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/linear.hpp"

namespace tqb {

struct LinearKernel {
  std::string name;
  std::string description;
  std::function<std::string(const Quantizer&)> supports;  // empty when supported, else why not
  std::function<std::unique_ptr<Linear>(const Quantizer&, const QuantizedMatrix&)> make;
};

const std::vector<LinearKernel>& linear_kernels();
std::vector<std::string> linear_kernel_names();  // with "auto" first

// Throws InputError naming the kernel and the format when it cannot run it, or listing the valid names.
std::unique_ptr<Linear> make_linear(const std::string& kernel, const Quantizer& quantizer, const QuantizedMatrix& q);

}  // namespace tqb
