#pragma once
// The kernel registry: every way to compute Y = X Ŵᵀ from a QuantizedMatrix, with a capability check
// per format. "auto" takes the first kernel that supports the format, in the table's order, which is
// fastest first as measured on the development CPU (docs/PERF.md: fused_i16, then the reference;
// fused_lut, which saves memory but not time, last). The choice is a fixed function of the format, never of a timing taken at run time, so
// that a rerun of a spec uses the same kernel and gives the same perplexity on any machine with the
// same SIMD level. A spec can name a kernel for ablations; GPU kernels are only ever named.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kernels/device_timing.hpp"
#include "kernels/linear.hpp"

namespace tqb {

struct LinearKernel {
  std::string name;
  bool needs_gpu = false;  // runs on a CUDA GPU; auto never takes it (a rerun must not depend on the machine having one)
  std::string description;
  std::function<std::string(const Quantizer&)> supports;  // empty when supported, else why not
  std::function<std::unique_ptr<Linear>(const Quantizer&, const QuantizedMatrix&)> make;
  // Coarser arithmetic than the reference's tolerance (fused_i8's int8 activations): its perplexity differs
  // from the exact one by a measured ΔPPL (docs/PERF.md), so auto never takes it; a spec names it.
  bool approximate = false;
  // GPU kernels: times the kernel and its dense baseline on the device (a matrix spec's timing.device cuda;
  // harness/kernel_timing.cpp picks the kernel by name). Throws InputError when it cannot run.
  std::function<KernelTiming(const Quantizer&, const QuantizedMatrix&, const Matrix& w, const DeviceTimingRequest&)> time_on_device;
};

const std::vector<LinearKernel>& linear_kernels();
std::vector<std::string> linear_kernel_names();  // with "auto" first

// Throws InputError naming the kernel and the format when it cannot run it, or listing the valid names.
std::unique_ptr<Linear> make_linear(const std::string& kernel, const Quantizer& quantizer, const QuantizedMatrix& q);

}  // namespace tqb
