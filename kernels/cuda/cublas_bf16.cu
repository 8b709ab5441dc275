// The dense baseline every lut_mma figure is compared with, in the same binary and run: W in bf16,
// Y = X Wᵀ by cublasGemmEx (bf16 inputs and output, fp32 accumulation, cuBLAS's default algorithm
// choice, tensor cores allowed).
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <string>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/gpu.hpp"

namespace tqb::gpu {

namespace {
void cublas_check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error(std::string("cuBLAS error in ") + what + ": " + cublasGetStatusString(s));
}
}  // namespace

struct CublasBf16Matrix::Impl {
  cublasHandle_t handle = nullptr;
  DeviceBuffer w;
  std::size_t rows = 0, cols = 0;
  ~Impl() {
    if (handle) cublasDestroy(handle);
  }
};

CublasBf16Matrix::CublasBf16Matrix(const float* w, std::size_t rows, std::size_t cols) : impl_(std::make_unique<Impl>()) {
  if (auto why = unavailable_reason(); !why.empty()) throw std::runtime_error("cuBLAS baseline needs a CUDA GPU: " + why);
  impl_->rows = rows;
  impl_->cols = cols;
  std::vector<std::uint16_t> wb(rows * cols);
  for (std::size_t i = 0; i < wb.size(); ++i) wb[i] = to_bf16_bits(w[i]);
  impl_->w = DeviceBuffer(wb.size() * 2);
  impl_->w.upload(wb.data(), wb.size() * 2);
  cublas_check(cublasCreate(&impl_->handle), "cublasCreate");
}

CublasBf16Matrix::CublasBf16Matrix() : impl_(std::make_unique<Impl>()) {}
CublasBf16Matrix::~CublasBf16Matrix() = default;

std::unique_ptr<CublasBf16Matrix> CublasBf16Matrix::clone() const {
  std::unique_ptr<CublasBf16Matrix> c(new CublasBf16Matrix());
  c->impl_->rows = impl_->rows;
  c->impl_->cols = impl_->cols;
  c->impl_->w = DeviceBuffer(impl_->w.size());
  TQB_CUDA_CHECK(cudaMemcpy(c->impl_->w.get(), impl_->w.get(), impl_->w.size(), cudaMemcpyDeviceToDevice));
  cublas_check(cublasCreate(&c->impl_->handle), "cublasCreate");
  return c;
}

std::size_t CublasBf16Matrix::weight_bytes() const { return impl_->w.size(); }

void CublasBf16Matrix::multiply(const std::uint16_t* x, std::size_t n, std::uint16_t* y, void* stream) const {
  Impl& I = *impl_;
  cublas_check(cublasSetStream(I.handle, static_cast<cudaStream_t>(stream)), "cublasSetStream");
  const float alpha = 1.0f, beta = 0.0f;
  // Column-major view: Yᵀ (rows × n) = W (rows × cols; W row-major is Wᵀ column-major, hence OP_T) · Xᵀ.
  cublas_check(cublasGemmEx(I.handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(I.rows), static_cast<int>(n), static_cast<int>(I.cols), &alpha,
                            I.w.get(), CUDA_R_16BF, static_cast<int>(I.cols), x, CUDA_R_16BF, static_cast<int>(I.cols), &beta, y, CUDA_R_16BF,
                            static_cast<int>(I.rows), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx");
}

}  // namespace tqb::gpu
