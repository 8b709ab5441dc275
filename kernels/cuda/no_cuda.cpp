// gpu.hpp for a build without nvcc (TQB_CUDA off): every entry point says why there is no GPU code.
// DeviceBuffer is never constructed with bytes here (every path that would throws first).
#include <stdexcept>

#include "kernels/cuda/gpu.hpp"

namespace tqb::gpu {

namespace {
const char* kWhy = "tqbench was built without CUDA (no nvcc at configure time, or -DTQB_CUDA=OFF)";
[[noreturn]] void fail() { throw std::runtime_error(kWhy); }
}  // namespace

std::string unavailable_reason() { return kWhy; }
std::string device_description() { return ""; }

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  if (bytes) fail();
}
DeviceBuffer::~DeviceBuffer() = default;
DeviceBuffer::DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {}
DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&&) noexcept { return *this; }
void DeviceBuffer::upload(const void*, std::size_t) { fail(); }
void DeviceBuffer::upload_at(const void*, std::size_t, std::size_t) { fail(); }
void DeviceBuffer::download(void*, std::size_t) const { fail(); }
void DeviceBuffer::fill_zero() { fail(); }
std::size_t allocated_bytes() { return 0; }
std::size_t peak_bytes() { return 0; }
void reset_peak_bytes() {}
std::size_t free_bytes() { return 0; }

struct LutMmaMatrix::Impl {};
LutMmaMatrix::LutMmaMatrix(const LutMmaLayout&) { fail(); }
LutMmaMatrix::~LutMmaMatrix() = default;
std::size_t LutMmaMatrix::rows() const { fail(); }
std::size_t LutMmaMatrix::cols() const { fail(); }
void LutMmaMatrix::multiply(const std::uint16_t*, std::size_t, float*, void*) const { fail(); }
void LutMmaMatrix::multiply(const std::uint16_t*, std::size_t, float*, std::uint16_t*, bool, void*) const { fail(); }
std::size_t LutMmaMatrix::weight_bytes() const { fail(); }
std::size_t LutMmaMatrix::workspace_bytes() const { fail(); }
std::string LutMmaMatrix::variant(std::size_t) const { fail(); }
LutMmaArith LutMmaMatrix::arith(std::size_t) const { fail(); }
void LutMmaMatrix::set_l2_prefetch(bool) { fail(); }
void LutMmaMatrix::set_small_pre_rotation(int) { fail(); }
void LutMmaMatrix::set_small_cluster_reduce(int) { fail(); }
void LutMmaMatrix::set_trace(bool) { fail(); }
std::vector<std::uint64_t> LutMmaMatrix::last_trace() const { fail(); }
void LutMmaMatrix::set_batch_path(BatchPath) { fail(); }
bool LutMmaMatrix::wgmma_available() const { fail(); }
void LutMmaMatrix::set_wgmma_producer(int) { fail(); }
bool LutMmaMatrix::wgmma_producer_available() const { fail(); }
void LutMmaMatrix::set_wgmma_stream_k(int) { fail(); }

struct CublasBf16Matrix::Impl {};
CublasBf16Matrix::CublasBf16Matrix(const float*, std::size_t, std::size_t) { fail(); }
CublasBf16Matrix::CublasBf16Matrix() { fail(); }
CublasBf16Matrix::~CublasBf16Matrix() = default;
std::unique_ptr<CublasBf16Matrix> CublasBf16Matrix::clone() const { fail(); }
void CublasBf16Matrix::multiply(const std::uint16_t*, std::size_t, std::uint16_t*, void*) const { fail(); }
std::size_t CublasBf16Matrix::weight_bytes() const { fail(); }

std::vector<double> time_calls(const std::function<void(void*)>&, int, bool) { fail(); }
double copy_bandwidth_bytes_per_s() { fail(); }
double launch_floor_us(int) { fail(); }
double read_floor_us(std::size_t, int) { fail(); }
double stream_read_floor_us(std::size_t, const StreamReadPattern&, int) { fail(); }

}  // namespace tqb::gpu
