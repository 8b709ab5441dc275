// Without nvcc: the GPU backend's entry points say why there is none.
#include "common/error.hpp"
#include "models/cuda/cuda_forward.hpp"

namespace tqb {

std::string cuda_forward_unavailable() { return "this tqbench was built without CUDA (no nvcc at configure time)"; }

std::unique_ptr<ForwardOps> make_cuda_forward_ops(bool) { throw InputError("--device cuda: " + cuda_forward_unavailable()); }

std::unique_ptr<Linear> make_cuda_dense_linear(const Matrix&, bool) { throw InputError("--device cuda: " + cuda_forward_unavailable()); }

Matrix cuda_cache_rows(const KvCache&, int, bool, std::size_t) { throw InputError("--device cuda: " + cuda_forward_unavailable()); }
Matrix cuda_decode_attention(const KvCache&, const ModelConfig&, int, const Matrix&, std::size_t) {
  throw InputError("--device cuda: " + cuda_forward_unavailable());
}

std::unique_ptr<Linear> make_cuda_lut_mma_device_linear(const Quantizer&, const QuantizedMatrix&) {
  throw InputError("--device cuda: " + cuda_forward_unavailable());
}

}  // namespace tqb
