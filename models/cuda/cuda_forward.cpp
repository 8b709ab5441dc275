// The GPU backend of the forward (cuda_forward.hpp): the ops over device buffers, cuBLAS projections. Every
// buffer goes through gpu::DeviceBuffer, so that gpu::peak_bytes() is the run's peak of tqbench's own device memory.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <functional>
#include <map>
#include <vector>

#include "common/error.hpp"
#include "common/float_format.hpp"
#include "kernels/cuda/gpu.hpp"
#include "kernels/cuda/lut_mma_layout.hpp"
#include "models/cuda/cuda_forward.hpp"
#include "models/cuda/decode_kernels.hpp"
#include "models/cuda/flash_attention.hpp"
#include "models/cuda/kv_codec_kernels.hpp"
#include "models/kv_codec.hpp"
#include "models/kv_quant.hpp"
#include "models/cuda/forward_kernels.hpp"

namespace tqb {
namespace {

using namespace cuda_forward;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw RunError(fmt::format("CUDA error in {}: {}", what, cudaGetErrorString(e)));
}
void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw RunError(fmt::format("cuBLAS error {} in {}", static_cast<int>(s), what));
}
void launched(const char* what) { check(cudaGetLastError(), what); }

// Every launch of the forward goes to the per-thread default stream (CUDA_API_PER_THREAD_DEFAULT_STREAM, set for every
// target that links the CUDA kernels), which, unlike the legacy one, can be captured as a graph (greedy_decode); cuBLAS
// is told so, and given its workspace up front, since a captured GEMM may not allocate one.
cublasHandle_t cublas() {
  static cublasHandle_t h = [] {
    cublasHandle_t handle;
    check(cublasCreate(&handle), "cublasCreate");
    check(cublasSetStream(handle, cudaStreamPerThread), "cublasSetStream");
    static gpu::DeviceBuffer workspace(std::size_t{32} << 20);  // cuBLAS's recommendation for Hopper
    check(cublasSetWorkspace(handle, workspace.get(), workspace.size()), "cublasSetWorkspace");
    return handle;
  }();
  return h;
}

// Activations rounded to bf16 for a GEMM's input: one growing buffer per thread of the caller.
std::uint16_t* bf16_scratch(std::size_t n) {
  thread_local gpu::DeviceBuffer buffer;
  if (buffer.size() < n * 2) buffer = gpu::DeviceBuffer(n * 2);
  return buffer.as<std::uint16_t>();
}

// bf16 bits of n floats, in parallel (an 8B model's weights are 8 G values).
std::vector<std::uint16_t> to_bf16_host(const float* x, std::size_t n) {
  std::vector<std::uint16_t> b(n);
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(n); ++i) b[i] = bf16_bits(x[i]);
  return b;
}

// A projection whose weights live on the device and which reads bf16 activations: the GPU backend hands it the
// bf16 copy it keeps of an activation (CudaForwardOps::bf16_of), so no projection rounds its own input.
class DeviceLinear : public Linear {
 public:
  // x: n × in() bf16 bits; y: n × out(), fp32 or (y_bf16) bf16 bits: y = x Wᵀ, or (accumulate, fp32 only) y += x Wᵀ.
  virtual void forward_bf16(const std::uint16_t* x, std::size_t n, void* y, bool y_bf16, bool accumulate) const = 0;
};

class CudaDenseLinear final : public DeviceLinear {
 public:
  CudaDenseLinear(const Matrix& w, bool fp32)
      : out_(static_cast<std::size_t>(w.rows())), in_(static_cast<std::size_t>(w.cols())), fp32_(fp32) {
    if (fp32_) {
      w_ = gpu::DeviceBuffer(out_ * in_ * 4);
      w_.upload(w.data(), out_ * in_ * 4);
      return;
    }
    w_ = gpu::DeviceBuffer(out_ * in_ * 2);
    w_.upload(to_bf16_host(w.data(), out_ * in_).data(), out_ * in_ * 2);
  }
  std::size_t in() const override { return in_; }
  std::size_t out() const override { return out_; }
  void forward(const float* x, std::size_t n, float* y) const override {
    const void* xin = x;
    cudaDataType_t type = CUDA_R_32F;
    if (!fp32_) {
      std::uint16_t* xb = bf16_scratch(n * in_);
      launch_to_bf16(x, xb, n * in_);
      launched("to_bf16");
      xin = xb;
      type = CUDA_R_16BF;
    }
    gemm(xin, type, n, y, CUDA_R_32F, false);
  }
  void forward_bf16(const std::uint16_t* x, std::size_t n, void* y, bool y_bf16, bool accumulate) const override {
    if (fp32_) throw RunError("an fp32 projection was given bf16 activations");
    if (y_bf16 && accumulate) throw RunError("a bf16 output is not accumulated into");
    gemm(x, CUDA_R_16BF, n, y, y_bf16 ? CUDA_R_16BF : CUDA_R_32F, accumulate);
  }
  std::size_t weight_bytes() const override { return w_.size(); }
  std::string kernel() const override { return fp32_ ? "cublas_fp32" : "cublas_bf16"; }

 private:
  // Row-major Y (n × out) = X Wᵀ (+ Y) is column-major Yᵀ (out × n) = W Xᵀ: A = W as column-major in × out,
  // transposed. The residual's add rides in the GEMM as beta = 1.
  void gemm(const void* x, cudaDataType_t type, std::size_t n, void* y, cudaDataType_t y_type, bool accumulate) const {
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    check(cublasGemmEx(cublas(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out_), static_cast<int>(n), static_cast<int>(in_), &one,
                       w_.get(), type, static_cast<int>(in_), x, type, static_cast<int>(in_), &beta, y, y_type,
                       static_cast<int>(out_), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx");
  }

  std::size_t out_, in_;
  bool fp32_;
  gpu::DeviceBuffer w_;
};

class CudaLutMmaLinear final : public DeviceLinear {
 public:
  explicit CudaLutMmaLinear(const LutMmaLayout& layout) : m_(layout) {}
  std::size_t in() const override { return m_.cols(); }
  std::size_t out() const override { return m_.rows(); }
  void forward(const float* x, std::size_t n, float* y) const override {
    std::uint16_t* xb = bf16_scratch(n * in());
    launch_to_bf16(x, xb, n * in());
    launched("to_bf16");
    m_.multiply(xb, n, y, nullptr);
  }
  void forward_bf16(const std::uint16_t* x, std::size_t n, void* y, bool y_bf16, bool accumulate) const override {
    if (y_bf16 && accumulate) throw RunError("a bf16 output is not accumulated into");
    // Rounded to bf16 or added to y in the kernel's epilogue.
    m_.multiply(x, n, y_bf16 ? nullptr : static_cast<float*>(y), y_bf16 ? static_cast<std::uint16_t*>(y) : nullptr, accumulate, nullptr);
  }
  std::size_t weight_bytes() const override { return m_.weight_bytes(); }
  std::string kernel() const override { return "cuda_lut_mma"; }

 private:
  gpu::LutMmaMatrix m_;
};

KvStreamParams stream_params(const KvStreamCodec& s) {
  KvStreamParams p;
  p.bits = s.bits;
  p.norm_format = s.norm == FloatFormat::fp16 ? 1 : s.norm == FloatFormat::bf16 ? 2 : 0;
  p.rotated = s.rotated ? 1 : 0;
  p.scale = s.scale;
  std::copy(s.lut.begin(), s.lut.end(), p.lut);
  std::copy(s.boundaries.begin(), s.boundaries.end(), p.bounds);
  return p;
}

struct DeviceKv {
  bool bf16 = false;                    // bf16 for the tensor-core attention, fp32 for the exact one
  std::vector<gpu::DeviceBuffer> k, v;  // per layer: sequences × capacity rows of kv_heads · head_dim (empty: coded)
  // The layers coded on the device (models/kv_codec.hpp; kv_codec_kernels.hpp's layout): per layer the codes and norms
  // of keys and values, every layer's rotation signs, and one dense pair (capacity rows, bf16 or fp32) that a
  // prefill's attention decodes the layer into.
  std::shared_ptr<const KvCodec> codec;
  KvStreamParams key, value;
  std::vector<gpu::DeviceBuffer> k_codes, v_codes, k_norms, v_norms;
  gpu::DeviceBuffer k_signs, v_signs, k_dense, v_dense;
  bool coded(int l) const { return codec && codec->coded[static_cast<std::size_t>(l)]; }
  CodedKvLayer layer(int l) const {
    const std::size_t at = static_cast<std::size_t>(l) * codec->kv_heads * codec->head_dim;
    return {k_codes[l].as<std::uint8_t>(), v_codes[l].as<std::uint8_t>(), k_norms[l].as<float>(), v_norms[l].as<float>(),
            k_signs.as<float>() + at, v_signs.as<float>() + at, key, value};
  }
};

// TQB_PROFILE_OPS=1: where a forward's time goes, op by op; the totals go to stderr when the backend is destroyed.
// Eager ops are synchronized and timed by the host clock (the synchronization itself slows the run a little). A
// decode step captured as a CUDA graph is timed inside the graph: each op's scope records a pair of events as
// external event nodes (cudaEventRecordExternal), read after every replay, so the figures are those of the replayed
// kernels with the graph's own launch gaps between scopes left out (the step's total is reported beside them).
class OpProfile {
 public:
  OpProfile() : on_(std::getenv("TQB_PROFILE_OPS") != nullptr) {}
  bool on() const { return on_; }
  ~OpProfile() {
    if (!on_) return;
    drop_markers();
    report("GPU forward ops (TQB_PROFILE_OPS, synchronized eager ops)", seconds_);
    report("GPU decode step ops (TQB_PROFILE_OPS, timed inside the CUDA graph)", graph_seconds_);
  }
  // While a decode step is captured, scopes record event nodes instead of synchronizing. A new capture drops the
  // markers of an earlier one (another greedy_decode call), whose events would otherwise be read again.
  void capturing(bool on) {
    if (on) drop_markers();
    capturing_ = on;
  }
  // Leave-one-out: the captured step replayed with each kind's nodes switched off in turn (cudaGraphNodeSetEnabled on
  // the kernel, memset and memcpy nodes between the kind's markers), each from the same saved state (replay_ms restores
  // it and times one replay). What the step saves without a kind is that kind's cost in place, the graph's launch gaps
  // included and the markers' own cost in both terms; the results of these replays are not used.
  void leave_one_out(cudaGraph_t graph, cudaGraphExec_t exec, const std::function<double()>& replay_ms) {
    std::size_t count = 0, edges = 0;
    if (cudaGraphGetNodes(graph, nullptr, &count) != cudaSuccess || cudaGraphGetEdges(graph, nullptr, nullptr, nullptr, &edges) != cudaSuccess)
      return;
    std::vector<cudaGraphNode_t> nodes(count), from(edges), to(edges);
    std::vector<cudaGraphEdgeData> edge_data(edges);  // asked for: a programmatic edge (lut_mma's PDL) is not a default one
    cudaGraphGetNodes(graph, nodes.data(), &count);
    cudaGraphGetEdges(graph, from.data(), to.data(), edge_data.data(), &edges);
    // The nodes in capture order (Kahn's order of the dependencies: a chain for one captured stream).
    std::map<cudaGraphNode_t, int> indegree;
    std::map<cudaGraphNode_t, std::vector<cudaGraphNode_t>> next;
    for (auto n : nodes) indegree[n] = 0;
    for (std::size_t e = 0; e < edges; ++e) {
      ++indegree[to[e]];
      next[from[e]].push_back(to[e]);
    }
    std::vector<cudaGraphNode_t> order;
    for (auto n : nodes)
      if (indegree[n] == 0) order.push_back(n);
    for (std::size_t i = 0; i < order.size(); ++i)
      for (auto m : next[order[i]])
        if (--indegree[m] == 0) order.push_back(m);
    std::map<cudaEvent_t, std::pair<std::size_t, bool>> marker;  // event → (scope, begins)
    for (std::size_t i = 0; i < graph_.size(); ++i) {
      marker[graph_[i].begin] = {i, true};
      marker[graph_[i].end] = {i, false};
    }
    std::map<std::string, std::vector<cudaGraphNode_t>> by_kind;
    std::vector<std::size_t> open;
    for (auto n : order) {
      cudaGraphNodeType type{};
      cudaGraphNodeGetType(n, &type);
      if (type == cudaGraphNodeTypeEventRecord) {
        cudaEvent_t e = nullptr;
        cudaGraphEventRecordNodeGetEvent(n, &e);
        if (auto it = marker.find(e); it != marker.end()) {
          if (it->second.second)
            open.push_back(it->second.first);
          else if (!open.empty())
            open.pop_back();
        }
      } else if (type == cudaGraphNodeTypeKernel || type == cudaGraphNodeTypeMemset || type == cudaGraphNodeTypeMemcpy) {
        by_kind[open.empty() ? std::string("outside any op") : graph_[open.back()].kind].push_back(n);
      }
    }
    auto median = [&] {
      std::vector<double> t;
      for (int r = 0; r < 15; ++r) t.push_back(replay_ms());
      std::sort(t.begin(), t.end());
      return t[t.size() / 2];
    };
    const double all = median();
    std::vector<std::pair<double, std::string>> saved;
    for (const auto& [kind, list] : by_kind) {
      for (auto n : list) cudaGraphNodeSetEnabled(exec, n, 0);
      saved.emplace_back(all - median(), fmt::format("{} ({} nodes)", kind, list.size()));
      for (auto n : list) cudaGraphNodeSetEnabled(exec, n, 1);
    }
    std::sort(saved.rbegin(), saved.rend());
    std::string line = fmt::format("GPU decode step, leave-one-out (TQB_PROFILE_OPS): {:.3f} ms with every op (markers included); each op kind's "
                                   "cost in place, ms per step:", all);
    for (const auto& [ms, kind] : saved) line += fmt::format(" {} {:.3f};", kind, ms);
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  // After a replay has finished: adds each captured scope's time.
  void add_replay() {
    for (const auto& e : graph_) {
      float ms = 0;
      if (cudaEventElapsedTime(&ms, e.begin, e.end) != cudaSuccess) continue;
      auto& t = graph_seconds_[e.kind];
      t.first += ms / 1e3;
      ++t.second;
    }
  }
  struct Scope {
    OpProfile& p;
    std::string kind;
    std::chrono::steady_clock::time_point t0;
    std::size_t mark = 0;
    Scope(OpProfile& p, std::string kind) : p(p), kind(std::move(kind)) {
      if (!p.on_) return;
      if (p.capturing_) {
        Mark m{this->kind, nullptr, nullptr};
        cudaEventCreate(&m.begin);
        cudaEventCreate(&m.end);
        cudaEventRecordWithFlags(m.begin, cudaStreamPerThread, cudaEventRecordExternal);
        mark = p.graph_.size();
        p.graph_.push_back(m);
        return;
      }
      cudaDeviceSynchronize();
      t0 = std::chrono::steady_clock::now();
    }
    ~Scope() {
      if (!p.on_) return;
      if (p.capturing_) {
        cudaEventRecordWithFlags(p.graph_[mark].end, cudaStreamPerThread, cudaEventRecordExternal);
        return;
      }
      cudaDeviceSynchronize();
      auto& e = p.seconds_[kind];
      e.first += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      ++e.second;
    }
  };

 private:
  using Totals = std::map<std::string, std::pair<double, long>>;
  void drop_markers() {
    for (const auto& e : graph_) {
      cudaEventDestroy(e.begin);
      cudaEventDestroy(e.end);
    }
    graph_.clear();
  }
  static void report(const char* title, const Totals& totals) {
    if (totals.empty()) return;
    double total = 0;
    for (const auto& [k, v] : totals) total += v.first;
    std::string line = fmt::format("{}, {:.4f} s in all:", title, total);
    for (const auto& [k, v] : totals) line += fmt::format(" {} {:.4f} s ({} calls, {:.1f}%);", k, v.first, v.second, 100 * v.first / total);
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  struct Mark {
    std::string kind;
    cudaEvent_t begin, end;
  };
  bool on_, capturing_ = false;
  Totals seconds_, graph_seconds_;
  std::vector<Mark> graph_;
};

// Calibration's input statistics on the device: the Hessian Σ xᵀx by cuBLAS's DSYRK on the inputs widened to double
// (a slab of rows at a time, so the double copy stays bounded), Σ |x| per column by a kernel; downloaded by finish().
class DeviceInputStatistics final : public InputStatisticsAccumulator {
 public:
  explicit DeviceInputStatistics(std::size_t d) : d_(d), h_(d * d * 8), abs_(d * 8) {
    h_.fill_zero();
    abs_.fill_zero();
  }
  void add(const float* x, std::size_t n) override {
    const std::size_t slab = std::max<std::size_t>(1, std::min<std::size_t>(n, (std::size_t{256} << 20) / (d_ * 8)));
    if (xd_.size() < slab * d_ * 8) xd_ = gpu::DeviceBuffer(slab * d_ * 8);
    const double one = 1.0;
    for (std::size_t r = 0; r < n; r += slab) {
      const std::size_t m = std::min(slab, n - r);
      launch_to_double(x + r * d_, xd_.as<double>(), m * d_);
      launched("calibration: to double");
      // Row-major x (m × d) is column-major d × m with leading dimension d: C (d × d, column-major, lower) += A Aᵀ.
      check(cublasDsyrk(cublas(), CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, static_cast<int>(d_), static_cast<int>(m), &one,
                        xd_.as<const double>(), static_cast<int>(d_), &one, h_.as<double>(), static_cast<int>(d_)),
            "cublasDsyrk");
    }
    launch_column_abs_sums(x, n, d_, abs_.as<double>());
    launched("calibration: column sums");
    samples_ += n;
  }
  InputStatistics finish() override {
    const auto d = static_cast<Eigen::Index>(d_);
    InputStatistics s{Eigen::MatrixXd(d, d), Eigen::VectorXd(d), samples_};
    h_.download(s.hessian.data(), d_ * d_ * 8);  // column-major, the lower triangle written
    abs_.download(s.mean_abs.data(), d_ * 8);
    s.hessian.triangularView<Eigen::StrictlyUpper>() = s.hessian.transpose();
    if (samples_) s.mean_abs /= static_cast<double>(samples_);
    h_.fill_zero();
    abs_.fill_zero();
    samples_ = 0;
    return s;
  }

 private:
  std::size_t d_, samples_ = 0;
  gpu::DeviceBuffer h_, abs_, xd_;
};

// The profile's name of a projection: its shape (out x in) and kernel, so that a decode profile tells the layers apart.
std::string linear_kind(const Linear& f) { return fmt::format("linear {}x{}", f.out(), f.in()); }

class CudaForwardOps final : public ForwardOps {
 public:
  explicit CudaForwardOps(bool fp32) : fp32_(fp32) {}
  const char* device() const override { return "cuda"; }
  Acts alloc(std::size_t rows, std::size_t cols) override {
    forget();  // a new buffer may take a freed one's address
    auto buffer = std::make_shared<gpu::DeviceBuffer>(std::max<std::size_t>(1, rows * cols) * 4);
    if (decode_) decode_->kept.push_back(buffer);  // a captured step's buffers live as long as its graph
    return {buffer->as<float>(), rows, cols, buffer};
  }
  const float* param(const Matrix& host) override {
    auto it = params_.find(host.data());
    if (it == params_.end()) {
      gpu::DeviceBuffer b(std::max<Eigen::Index>(1, host.size()) * 4);
      b.upload(host.data(), host.size() * 4);
      it = params_.emplace(host.data(), std::move(b)).first;
    }
    return it->second.as<const float>();
  }
  // A quantizer whose codes the GPU writes (kv_codec_unsupported) gets coded layers; any other is written on the host
  // into dense layers (write_quantized_kv).
  KvCache new_cache(const ModelConfig& c, std::size_t capacity, std::size_t sequences, const KvQuantizer* quantizer) override {
    auto kv = std::make_shared<DeviceKv>();
    kv->bf16 = !fp32_ && flash_attention_supports(c.head_dim);
    const std::size_t row = static_cast<std::size_t>(c.n_kv_heads) * c.head_dim, dense = sequences * capacity * row * (kv->bf16 ? 2 : 4);
    KvCache cache;
    if (quantizer && sequences == 1 && kv_codec_unsupported(*quantizer).empty()) {
      kv->codec = std::make_shared<const KvCodec>(make_kv_codec(*quantizer));
      kv->key = stream_params(kv->codec->key);
      kv->value = stream_params(kv->codec->value);
      kv->k_signs = gpu::DeviceBuffer(kv->codec->key.signs.size() * 4);
      kv->k_signs.upload(kv->codec->key.signs.data(), kv->codec->key.signs.size() * 4);
      kv->v_signs = gpu::DeviceBuffer(kv->codec->value.signs.size() * 4);
      kv->v_signs.upload(kv->codec->value.signs.data(), kv->codec->value.signs.size() * 4);
      kv->k_dense = gpu::DeviceBuffer(dense);
      kv->v_dense = gpu::DeviceBuffer(dense);
      cache.coded_on_device = true;
    }
    double per_token = 0;
    for (int l = 0; l < c.n_layers; ++l) {
      if (kv->coded(l)) {
        const std::size_t norms = static_cast<std::size_t>(c.n_kv_heads) * capacity * 4;
        kv->k_codes.emplace_back(kv_code_buffer_bytes(c.n_kv_heads, c.head_dim, kv->key.bits, capacity));
        kv->v_codes.emplace_back(kv_code_buffer_bytes(c.n_kv_heads, c.head_dim, kv->value.bits, capacity));
        kv->k_norms.emplace_back(norms);
        kv->v_norms.emplace_back(norms);
        kv->k.emplace_back();
        kv->v.emplace_back();
        per_token += static_cast<double>(kv->codec->coded_bytes_per_token());
      } else {
        for (auto* list : {&kv->k_codes, &kv->v_codes, &kv->k_norms, &kv->v_norms}) list->emplace_back();
        kv->k.emplace_back(dense);
        kv->v.emplace_back(dense);
        per_token += 2.0 * static_cast<double>(row) * (kv->bf16 ? 2 : 4);
      }
    }
    cache.sequences = sequences;
    cache.device = kv;
    cache.device_capacity = capacity;
    cache.device_bytes_per_token = per_token;
    return cache;
  }
  void embed(const std::vector<int>& tokens, const Matrix& table, float scale, const Acts& x) override {
    const OpProfile::Scope timed(profile_, "embed");
    const float* fp32_table = fp32_ ? param(table) : nullptr;
    const std::uint16_t* bf16_table = fp32_ ? nullptr : bf16_table_of(table);
    if (tokens.empty()) return;
    forget();
    if (decode_) {  // the token is the device's (greedy_decode): the previous step's argmax
      if (tokens.size() != 1) throw RunError("a decode step forwards one token");
      decode_->tables_ready = false;
      if (fp32_)
        launch_embed(&decode_->state_ptr()->token, 1, fp32_table, x.cols, scale, x.data);
      else
        launch_embed_bf16(&decode_->state_ptr()->token, 1, bf16_table, x.cols, scale, x.data);
      launched("embed");
      return;
    }
    gpu::DeviceBuffer ids(tokens.size() * 4);
    ids.upload(tokens.data(), tokens.size() * 4);
    if (fp32_)
      launch_embed(ids.as<int>(), tokens.size(), fp32_table, x.cols, scale, x.data);
    else
      launch_embed_bf16(ids.as<int>(), tokens.size(), bf16_table, x.cols, scale, x.data);
    launched("embed");
  }
  void rms_norm(const float* x, std::size_t vectors, std::size_t d, const float* w, float eps, float* y) override {
    const OpProfile::Scope timed(profile_, "rms_norm");
    forget();
    launch_rms_norm(x, vectors, d, w, eps, y, fp32_ ? nullptr : shadow_for(y, vectors * d));
    launched("rms_norm");
  }
  void linear(const Linear& f, const Acts& x, const Acts& y) override {
    const OpProfile::Scope timed(profile_, profile_.on() ? linear_kind(f) : std::string());
    if (const DeviceLinear* d = bf16_linear(f)) {
      d->forward_bf16(bf16_of(x), x.rows, y.data, false, false);
    } else {
      f.forward(x.data, x.rows, y.data);
    }
    written(y);
  }
  void linear_add(const Linear& f, const Acts& x, const Acts& y, const Acts& tmp) override {
    const DeviceLinear* d = bf16_linear(f);
    if (!d) return ForwardOps::linear_add(f, x, y, tmp);
    const OpProfile::Scope timed(profile_, profile_.on() ? linear_kind(f) : std::string());
    d->forward_bf16(bf16_of(x), x.rows, y.data, false, true);
    written(y);
  }
  // gate and up write bf16 into g's bytes (rows × hidden each: g holds both), the activation runs on bf16 pairs in
  // place, and down adds into x: the hidden activations are never written in fp32.
  void gated_ffn(const Linear& gate, const Linear& up, const Linear& down, ModelConfig::Activation act, const Acts& h, const Acts& x,
                 const Acts& g, const Acts& u, const Acts& tmp) override {
    const DeviceLinear *dg = bf16_linear(gate), *du = bf16_linear(up), *dd = bf16_linear(down);
    const std::size_t rows = h.rows, hidden = gate.out();
    if (!dg || !du || !dd || hidden % 2 != 0 || g.rows * g.cols < rows * hidden)
      return ForwardOps::gated_ffn(gate, up, down, act, h, x, g, u, tmp);
    auto* G = reinterpret_cast<std::uint16_t*>(g.data);
    std::uint16_t* U = G + rows * hidden;
    {
      const OpProfile::Scope timed(profile_, profile_.on() ? "gate+up " + linear_kind(gate) : std::string());
      const std::uint16_t* hb = bf16_of(h);
      dg->forward_bf16(hb, rows, G, true, false);
      du->forward_bf16(hb, rows, U, true, false);
    }
    written(g);
    {
      const OpProfile::Scope timed(profile_, "glu");
      launch_glu_bf16(G, U, rows * hidden, act == ModelConfig::Activation::gelu_tanh);
      launched("glu");
    }
    const OpProfile::Scope timed(profile_, profile_.on() ? linear_kind(down) : std::string());
    dd->forward_bf16(G, rows, x.data, false, true);
    written(x);
  }
  void add_row(const Acts& x, const float* b) override {
    const OpProfile::Scope timed(profile_, "bias");
    written(x);
    launch_add_rows(x.data, b, x.rows, x.cols);
    launched("add_row");
  }
  void add(const Acts& x, const Acts& y) override {
    const OpProfile::Scope timed(profile_, "add");
    written(x);
    launch_add(x.data, y.data, x.rows * x.cols);
    launched("add");
  }
  void rope(const Acts& x, int heads, const ModelConfig& c, const std::vector<float>& inv_freq, std::size_t pos0,
            std::size_t seq_rows) override {
    const OpProfile::Scope timed(profile_, "rope");
    const int half = c.head_dim / 2;
    const std::size_t n = seq_rows;
    if (decode_) throw RunError("a decode step rotates q and k in rope_attention (at the device's position), not in rope");
    // The angles' cosines and sines, the CPU's values, once per (positions, frequencies): q and k of every
    // layer share them.
    if (rope_.pos0 != pos0 || rope_.n != n || rope_.freq != inv_freq.data() || rope_.half != half) {
      std::vector<float> cs(n * half), sn(n * half);
      for (std::size_t t = 0; t < n; ++t)
        for (int i = 0; i < half; ++i) {
          const double a = static_cast<double>(pos0 + t) * inv_freq[i];
          cs[t * half + i] = static_cast<float>(std::cos(a));
          sn[t * half + i] = static_cast<float>(std::sin(a));
        }
      rope_.cs = gpu::DeviceBuffer(cs.size() * 4);
      rope_.sn = gpu::DeviceBuffer(sn.size() * 4);
      rope_.cs.upload(cs.data(), cs.size() * 4);
      rope_.sn.upload(sn.data(), sn.size() * 4);
      rope_.pos0 = pos0;
      rope_.n = n;
      rope_.freq = inv_freq.data();
      rope_.half = half;
    }
    written(x);
    launch_rope(x.data, x.rows, n, heads, c.head_dim, c.rope_interleaved, rope_.cs.as<float>(), rope_.sn.as<float>());
    launched("rope");
  }
  void attention(const ModelConfig& c, int l, const Acts& q, const Acts& k, const Acts& v, KvCache& cache, std::size_t pos0,
                 const Acts& out, const AttentionExtras& extras) override {
    const OpProfile::Scope timed(profile_, "attention");
    written(out);
    auto* kv = static_cast<DeviceKv*>(cache.device.get());
    if (!kv) throw RunError("a KV cache made by another backend was given to the GPU backend");
    const std::size_t seqs = cache.sequences, n = q.rows / seqs, cap = cache.device_capacity;
    const std::size_t row = static_cast<std::size_t>(c.n_kv_heads) * c.head_dim;
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    if (kv->coded(l)) return attention_coded(c, l, q, k, v, cache, pos0, out, extras);
    if (extras.kv && extras.kv->quantizes(l)) {  // written by the CPU path's quantizer; attention reads its dequantized rows
      write_quantized_kv(c, l, q, k, v, cache, pos0, extras);
      return attend(c, l, q, cache, pos0, out, scale);
    }
    if (decode_) throw RunError("a decode step writes its cache and attends in rope_attention (at the device's position), not in attention");
    if (kv->bf16) {
      launch_kv_write_bf16(k.data, seqs, n, row, kv->k[l].as<std::uint16_t>(), cap, pos0);
      launch_kv_write_bf16(v.data, seqs, n, row, kv->v[l].as<std::uint16_t>(), cap, pos0);
      launched("KV write");
    } else {  // each sequence's new rows after its first pos0 (one strided copy for the batch)
      check(cudaMemcpy2D(kv->k[l].as<float>() + pos0 * row, cap * row * 4, k.data, n * row * 4, n * row * 4, seqs,
                         cudaMemcpyDeviceToDevice),
            "KV write");
      check(cudaMemcpy2D(kv->v[l].as<float>() + pos0 * row, cap * row * 4, v.data, n * row * 4, n * row * 4, seqs,
                         cudaMemcpyDeviceToDevice),
            "KV write");
    }
    attend(c, l, q, cache, pos0, out, scale);
  }

  // A decode step's attention (rope, then attention, fused): one kernel rotates q and k at the device's position and
  // writes k and v into the cache there; then flash-decoding over the cache.
  void rope_attention(const ModelConfig& c, int l, const Acts& q, const Acts& k, const Acts& v, const std::vector<float>& inv_freq,
                      KvCache& cache, std::size_t pos0, std::size_t seq_rows, const Acts& out, const AttentionExtras& extras) override {
    if (!decode_) return ForwardOps::rope_attention(c, l, q, k, v, inv_freq, cache, pos0, seq_rows, out, extras);
    auto* kv = static_cast<DeviceKv*>(cache.device.get());
    if (!kv) throw RunError("a KV cache made by another backend was given to the GPU backend");
    if (cache.sequences != 1 || q.rows != 1) throw RunError("a decode step forwards one token of one sequence");
    if (kv->coded(l)) return decode_coded(c, l, q, k, v, inv_freq, cache, out);
    if (extras.kv && extras.kv->quantizes(l)) throw RunError("a quantized KV cache is written on the host: its decode steps cannot be captured");
    {
      const OpProfile::Scope timed(profile_, "rope + KV write");
      decode_rope_tables(c, inv_freq);
      written(q);
      written(k);
      launch_rope_kv_write_at(q.data, k.data, v.data, c.n_heads, c.n_kv_heads, c.head_dim, c.rope_interleaved, decode_->cs.as<float>(),
                              decode_->sn.as<float>(), kv->k[l].get(), kv->v[l].get(), kv->bf16, decode_->state_ptr());
      launched("RoPE and KV write");
    }
    const OpProfile::Scope timed(profile_, "attention");
    written(out);
    decode_attend(c, l, q, cache, out);
  }

  // The step's RoPE angles at the device's position, computed there once per step for q and k of every layer.
  void decode_rope_tables(const ModelConfig& c, const std::vector<float>& inv_freq) {
    DecodeRun& d = *decode_;
    const int half = c.head_dim / 2;
    if (d.inv_freq_of != inv_freq.data()) {  // the eager first step (never a captured one: greedy_decode runs it first)
      d.inv_freq = gpu::DeviceBuffer(inv_freq.size() * 4);
      d.inv_freq.upload(inv_freq.data(), inv_freq.size() * 4);
      d.cs = gpu::DeviceBuffer(std::max(1, half) * 4);
      d.sn = gpu::DeviceBuffer(std::max(1, half) * 4);
      d.inv_freq_of = inv_freq.data();
    }
    if (!d.tables_ready) {
      launch_rope_tables_at(d.state_ptr(), d.inv_freq.as<float>(), half, d.cs.as<float>(), d.sn.as<float>());
      launched("RoPE angles");
      d.tables_ready = true;
    }
  }

  // One query at the device's position against the cache written up to it: flash-decoding's key ranges, then their
  // combination (out in fp32 and, for the projection after it, bf16).
  void decode_attend(const ModelConfig& c, int l, const Acts& q, KvCache& cache, const Acts& out) {
    DecodeRun& d = *decode_;
    auto* kv = static_cast<DeviceKv*>(cache.device.get());
    const std::size_t cap = cache.device_capacity;
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    const std::size_t need = decode_attention_scratch_floats(c.n_heads, c.head_dim, cap) * 4;
    if (d.scratch.size() < need) d.scratch = gpu::DeviceBuffer(need);  // the eager first step's (same shapes after)
    if (!launch_decode_attention(q.data, kv->k[l].get(), kv->v[l].get(), kv->bf16, out.data,
                                 fp32_ ? nullptr : shadow_for(out.data, out.rows * out.cols), d.state_ptr(), cap, c.n_heads, c.n_kv_heads,
                                 c.head_dim, c.sliding_window, scale, d.scratch.as<float>()))
      throw InputError(fmt::format("the GPU's decode attention covers head_dim up to 256, not {}", c.head_dim));
    launched("decode attention");
  }

  // out = causal softmax(scale · q Kᵀ) V over the cache's positions up to pos0 + n of each sequence.
  void attend(const ModelConfig& c, int l, const Acts& q, KvCache& cache, std::size_t pos0, const Acts& out, float scale) {
    auto* kv = static_cast<DeviceKv*>(cache.device.get());
    attend_rows(c, q, kv->k[l].get(), kv->v[l].get(), kv->bf16, cache, pos0, out, scale);
  }
  // The same over dense rows K, V laid out as a layer of the cache (bf16 bits or fp32).
  void attend_rows(const ModelConfig& c, const Acts& q, const void* K, const void* V, bool bf16, KvCache& cache, std::size_t pos0,
                   const Acts& out, float scale) {
    const std::size_t seqs = cache.sequences, n = q.rows / seqs, cap = cache.device_capacity;
    if (bf16) {
      // The output in fp32 and, for the projection after it, in bf16.
      if (!launch_flash_attention(q.data, static_cast<const std::uint16_t*>(K), static_cast<const std::uint16_t*>(V), out.data,
                                  shadow_for(out.data, out.rows * out.cols), n, seqs, pos0, cap,
                                  c.n_heads, c.n_kv_heads, c.head_dim, c.sliding_window, scale))
        throw RunError(fmt::format("the tensor-core attention could not be launched for head_dim {}", c.head_dim));
      launched("flash attention");
      return;
    }
    if (!launch_attention(q.data, static_cast<const float*>(K), static_cast<const float*>(V), out.data, n, seqs, pos0, cap, c.n_heads, c.n_kv_heads,
                          c.head_dim, c.sliding_window, scale))
      throw InputError(fmt::format("the GPU backend's exact attention keeps a row of scores in shared memory: {} positions do not fit "
                                   "(at most about 50,000; --device cuda with a head_dim of 16 to 256 has no such limit)", pos0 + n));
    launched("attention");
  }

  // A coded layer (models/kv_codec.hpp) outside a decode step: the new rows encoded where they go, then dequantize-then-
  // attend: the layer's codes up to the last new position decoded into the dense scratch the attention kernels read.
  // The probe (first chunk) compares against the decoded rows in fp32, as the CPU path's.
  void attention_coded(const ModelConfig& c, int l, const Acts& q, const Acts& k, const Acts& v, KvCache& cache, std::size_t pos0,
                       const Acts& out, const AttentionExtras& extras) {
    if (decode_) throw RunError("a decode step writes its cache and attends in rope_attention (at the device's position), not in attention");
    if (cache.sequences != 1) throw InputError("a quantized KV cache holds one sequence; forward the chunks one at a time");
    auto* kv = static_cast<DeviceKv*>(cache.device.get());
    const CodedKvLayer L = kv->layer(l);
    const std::size_t n = q.rows, cap = cache.device_capacity, row = static_cast<std::size_t>(c.n_kv_heads) * c.head_dim;
    launch_kv_encode(k.data, n, row, c.n_kv_heads, c.head_dim, kv->key, L.k_signs, kv->k_codes[l].as<std::uint8_t>(), kv->k_norms[l].as<float>(),
                     cap, pos0, nullptr);
    launch_kv_encode(v.data, n, row, c.n_kv_heads, c.head_dim, kv->value, L.v_signs, kv->v_codes[l].as<std::uint8_t>(),
                     kv->v_norms[l].as<float>(), cap, pos0, nullptr);
    launched("KV encode");
    if (extras.probe && pos0 == 0 && !extras.probe->done) {
      gpu::DeviceBuffer kd(n * row * 4), vd(n * row * 4);
      launch_kv_decode(L.k_codes, L.k_norms, n, c.n_kv_heads, c.head_dim, kv->key, L.k_signs, cap, kd.get(), false);
      launch_kv_decode(L.v_codes, L.v_norms, n, c.n_kv_heads, c.head_dim, kv->value, L.v_signs, cap, vd.get(), false);
      launched("KV decode");
      Matrix kq(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(row)), vq(kq.rows(), kq.cols());
      kd.download(kq.data(), n * row * 4);
      vd.download(vq.data(), n * row * 4);
      accumulate_attention_error(c, n, to_host(q), to_host(k), to_host(v), kq, vq, *extras.probe);
    }
    launch_kv_decode(L.k_codes, L.k_norms, pos0 + n, c.n_kv_heads, c.head_dim, kv->key, L.k_signs, cap, kv->k_dense.get(), kv->bf16);
    launch_kv_decode(L.v_codes, L.v_norms, pos0 + n, c.n_kv_heads, c.head_dim, kv->value, L.v_signs, cap, kv->v_dense.get(), kv->bf16);
    launched("KV decode");
    attend_rows(c, q, kv->k_dense.get(), kv->v_dense.get(), kv->bf16, cache, pos0, out, 1.0f / std::sqrt(static_cast<float>(c.head_dim)));
  }

  // A decode step over a coded layer: RoPE on q and k at the device's position, k and v encoded there, and the split
  // attention reading the codes in place (kv_codec_kernels.hpp).
  void decode_coded(const ModelConfig& c, int l, const Acts& q, const Acts& k, const Acts& v, const std::vector<float>& inv_freq,
                    KvCache& cache, const Acts& out) {
    DecodeRun& d = *decode_;
    auto* kv = static_cast<DeviceKv*>(cache.device.get());
    const CodedKvLayer L = kv->layer(l);
    const std::size_t cap = cache.device_capacity, row = static_cast<std::size_t>(c.n_kv_heads) * c.head_dim;
    {
      const OpProfile::Scope timed(profile_, "rope + KV encode");
      decode_rope_tables(c, inv_freq);
      written(q);
      written(k);
      launch_rope_kv_write_at(q.data, k.data, v.data, c.n_heads, c.n_kv_heads, c.head_dim, c.rope_interleaved, d.cs.as<float>(),
                              d.sn.as<float>(), nullptr, nullptr, false, d.state_ptr());
      launched("RoPE");
      launch_kv_encode(k.data, 1, row, c.n_kv_heads, c.head_dim, kv->key, L.k_signs, kv->k_codes[l].as<std::uint8_t>(),
                       kv->k_norms[l].as<float>(), cap, 0, d.state_ptr());
      launch_kv_encode(v.data, 1, row, c.n_kv_heads, c.head_dim, kv->value, L.v_signs, kv->v_codes[l].as<std::uint8_t>(),
                       kv->v_norms[l].as<float>(), cap, 0, d.state_ptr());
      launched("KV encode");
    }
    const OpProfile::Scope timed(profile_, "attention (coded KV)");
    written(out);
    const std::size_t need = decode_attention_scratch_floats(c.n_heads, c.head_dim, cap) * 4;
    if (d.scratch.size() < need) d.scratch = gpu::DeviceBuffer(need);  // the eager first step's (same shapes after)
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    if (!launch_decode_attention(q.data, L, out.data, fp32_ ? nullptr : shadow_for(out.data, out.rows * out.cols), d.state_ptr(), cap,
                                 c.n_heads, c.n_kv_heads, c.head_dim, c.sliding_window, scale, d.scratch.as<float>()))
      throw RunError(fmt::format("the coded KV cache's decode attention was not launched (head_dim {})", c.head_dim));
    launched("decode attention (coded KV)");
  }

  // A quantized KV cache the GPU does not code (kv_codec_unsupported: QJL, TurboQuant_prod, KIVI's channel axis,
  // outlier channels, …; dequantize, then attend): the new rows go to the host, where the
  // CPU path's KvQuantizer writes them (the same codes, rotations, outlier channels and KIVI blocks, so that results
  // equal the CPU's cache quantization) into a host mirror of the cache; the rows it changed come back, dequantized,
  // into the device cache the attention kernels read. The decode steps of such a cache are not captured as a graph
  // (LlamaModel::generate_greedy runs them from the host).
  void write_quantized_kv(const ModelConfig& c, int l, const Acts& q, const Acts& k, const Acts& v, KvCache& cache, std::size_t pos0,
                          const AttentionExtras& extras) {
    KvQuantizer& kvq = *extras.kv;
    if (kvq.estimator())
      throw InputError("kv_scores estimator: the GPU backend attends the dequantized cache only (run the estimator with --device cpu)");
    if (cache.sequences != 1) throw InputError("a quantized KV cache holds one sequence; forward the chunks one at a time");
    if (decode_) throw RunError("a quantized KV cache is written on the host: its decode steps cannot be captured");
    auto* kv = static_cast<DeviceKv*>(cache.device.get());
    const std::size_t n = q.rows, cap = cache.device_capacity, row = static_cast<std::size_t>(c.n_kv_heads) * c.head_dim;
    const std::size_t layers = static_cast<std::size_t>(c.n_layers), L = static_cast<std::size_t>(l);
    if (cache.k.size() != layers) {
      cache.k.assign(layers, Matrix());
      cache.v.assign(layers, Matrix());
    }
    if (cache.k[L].rows() == 0) {
      cache.k[L] = Matrix::Zero(static_cast<Eigen::Index>(cap), static_cast<Eigen::Index>(row));
      cache.v[L] = Matrix::Zero(static_cast<Eigen::Index>(cap), static_cast<Eigen::Index>(row));
    }
    const Matrix kh = to_host(k), vh = to_host(v);
    // KIVI's channel axis quantizes a block of keys once it is complete: rows written before (in fp32) change too.
    const std::size_t done = L < cache.keys_quantized.size() ? cache.keys_quantized[L] : 0;
    const std::size_t first = kvq.spec().key_axis == "channel" ? std::min(pos0, done) : pos0;
    kvq.write(l, pos0, kh, vh, cache);
    if (extras.probe && pos0 == 0 && !extras.probe->done)
      accumulate_attention_error(c, n, to_host(q), kh, vh, cache.k[L].topRows(static_cast<Eigen::Index>(n)),
                                 cache.v[L].topRows(static_cast<Eigen::Index>(n)), *extras.probe);
    auto upload_rows = [&](const Matrix& m, gpu::DeviceBuffer& dst, std::size_t lo, std::size_t hi) {
      const std::size_t count = (hi - lo) * row;
      if (!kv->bf16) return dst.upload_at(m.data() + lo * row, lo * row * 4, count * 4);
      gpu::DeviceBuffer tmp(count * 4);
      tmp.upload(m.data() + lo * row, count * 4);
      launch_kv_write_bf16(tmp.as<float>(), 1, hi - lo, row, dst.as<std::uint16_t>(), cap, lo);
      launched("KV write");
      check(cudaStreamSynchronize(cudaStreamPerThread), "KV write");  // tmp is freed on return
    };
    upload_rows(cache.k[L], kv->k[L], first, pos0 + n);
    upload_rows(cache.v[L], kv->v[L], pos0, pos0 + n);
  }
  void glu(ModelConfig::Activation act, const Acts& g, const Acts& u) override {
    const OpProfile::Scope timed(profile_, "glu");
    written(g);
    launch_glu(g.data, u.data, g.rows * g.cols, act == ModelConfig::Activation::gelu_tanh);
    launched("glu");
  }
  void copy(const Acts& from, const Acts& to) override {
    if (from.rows * from.cols != to.rows * to.cols) throw RunError("copy between activations of different sizes");
    check(cudaMemcpyAsync(to.data, from.data, from.rows * from.cols * 4, cudaMemcpyDeviceToDevice, cudaStreamPerThread), "copy");
    written(to);
  }
  std::unique_ptr<InputStatisticsAccumulator> input_statistics(std::size_t d) override { return std::make_unique<DeviceInputStatistics>(d); }
  Matrix to_host(const Acts& x) override {
    const OpProfile::Scope timed(profile_, "logits_to_host");
    Matrix m(static_cast<Eigen::Index>(x.rows), static_cast<Eigen::Index>(x.cols));
    check(cudaMemcpy(m.data(), x.data, x.rows * x.cols * 4, cudaMemcpyDeviceToHost), "logits to the host");
    return m;
  }

  std::vector<double> row_nll(const Acts& logits, const std::vector<int>& targets) override {
    const OpProfile::Scope timed(profile_, "nll");
    gpu::DeviceBuffer t(std::max<std::size_t>(1, targets.size()) * 4), nll(std::max<std::size_t>(1, targets.size()) * 8);
    t.upload(targets.data(), targets.size() * 4);
    launch_nll(logits.data, targets.size(), logits.cols, t.as<int>(), nll.as<double>());
    launched("nll");
    std::vector<double> out(targets.size());
    nll.download(out.data(), out.size() * 8);
    return out;
  }

  // The first step eagerly (it makes every buffer and table the later steps reuse), the second captured as a CUDA
  // graph, replayed for the rest in batches of kDecodeBatch; each replay timed by events. Under TQB_PROFILE_OPS the
  // graph holds each op's event pair and the replays go one at a time (OpProfile).
  std::vector<int> greedy_decode(int first, std::size_t pos0, std::size_t n, int stop, const std::function<Acts(int)>& step,
                                 std::vector<double>* step_s) override {
    if (n == 0) return {};
    constexpr std::size_t kDecodeBatch = 32;
    DecodeRun run;
    run.state = gpu::DeviceBuffer(sizeof(DecodeState));
    const DecodeState start{first, static_cast<int>(pos0), 0, 0};
    run.state.upload(&start, sizeof start);
    run.tokens = gpu::DeviceBuffer(n * 4);
    struct Active {  // decode mode while this call runs, whatever leaves it
      CudaForwardOps& ops;
      ~Active() { ops.decode_ = nullptr; }
    } active{*this};
    decode_ = &run;
    std::vector<int> tokens(n);
    std::size_t done = 0;
    auto advance = [&](const Acts& logits) {
      const OpProfile::Scope timed(profile_, "greedy choice");
      launch_greedy_advance(logits.data, logits.cols, run.state_ptr(), run.tokens.as<int>());
      launched("greedy choice");
    };
    auto stopped = [&] {  // the tokens so far, and whether the stop token is among them
      run.tokens.download(tokens.data(), done * 4);
      return stop >= 0 && std::find(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(done), stop) !=
                              tokens.begin() + static_cast<std::ptrdiff_t>(done);
    };
    advance(step(first));
    done = 1;
    if (!stopped() && n > 1) {
      cudaGraph_t graph = nullptr;
      check(cudaStreamBeginCapture(cudaStreamPerThread, cudaStreamCaptureModeRelaxed), "cudaStreamBeginCapture");
      profile_.capturing(true);
      try {
        advance(step(first));  // the host's token is not read: the embedding reads the device's
        profile_.capturing(false);
      } catch (...) {
        profile_.capturing(false);
        cudaStreamEndCapture(cudaStreamPerThread, &graph);
        if (graph) cudaGraphDestroy(graph);
        throw;
      }
      check(cudaStreamEndCapture(cudaStreamPerThread, &graph), "cudaStreamEndCapture (a decode step)");
      struct Graph {  // the captured graph lives while a profile may read its nodes
        cudaGraph_t g;
        ~Graph() { cudaGraphDestroy(g); }
      } owned_graph{graph};
      cudaGraphExec_t exec = nullptr;
      check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate (a decode step)");
      struct Exec {
        cudaGraphExec_t e;
        ~Exec() { cudaGraphExecDestroy(e); }
      } owned{exec};
      std::vector<cudaEvent_t> events(2 * kDecodeBatch);
      for (auto& e : events) check(cudaEventCreate(&e), "cudaEventCreate");
      struct Events {
        std::vector<cudaEvent_t>& v;
        ~Events() {
          for (auto e : v) cudaEventDestroy(e);
        }
      } owned_events{events};
      while (done < n) {
        // A profile reads its events after every replay (the next replay records over them).
        const std::size_t batch = std::min(profile_.on() ? std::size_t{1} : kDecodeBatch, n - done);
        for (std::size_t i = 0; i < batch; ++i) {
          check(cudaEventRecord(events[2 * i], cudaStreamPerThread), "cudaEventRecord");
          check(cudaGraphLaunch(exec, cudaStreamPerThread), "cudaGraphLaunch (a decode step)");
          check(cudaEventRecord(events[2 * i + 1], cudaStreamPerThread), "cudaEventRecord");
        }
        check(cudaStreamSynchronize(cudaStreamPerThread), "a decode step");
        if (profile_.on()) profile_.add_replay();
        for (std::size_t i = 0; i < batch && step_s; ++i) {
          float ms = 0;
          check(cudaEventElapsedTime(&ms, events[2 * i], events[2 * i + 1]), "cudaEventElapsedTime");
          step_s->push_back(ms / 1e3);
        }
        done += batch;
        if (stopped()) break;
      }
      if (profile_.on()) {  // the state is put back before every replay: the position stays inside the cache
        DecodeState saved{};
        run.state.download(&saved, sizeof saved);
        profile_.leave_one_out(graph, exec, [&] {
          run.state.upload(&saved, sizeof saved);
          check(cudaEventRecord(events[0], cudaStreamPerThread), "cudaEventRecord");
          check(cudaGraphLaunch(exec, cudaStreamPerThread), "cudaGraphLaunch (a decode step)");
          check(cudaEventRecord(events[1], cudaStreamPerThread), "cudaEventRecord");
          check(cudaStreamSynchronize(cudaStreamPerThread), "a decode step");
          float ms = 0;
          check(cudaEventElapsedTime(&ms, events[0], events[1]), "cudaEventElapsedTime");
          return static_cast<double>(ms);
        });
        run.state.upload(&saved, sizeof saved);
      }
    }
    tokens.resize(done);
    if (stop >= 0)
      if (auto at = std::find(tokens.begin(), tokens.end(), stop); at != tokens.end()) tokens.erase(at + 1, tokens.end());
    return tokens;
  }

 private:
  // The bf16 copy of one activation, for the projections that read it: written by the op that made the activation
  // (rms_norm, attention) or rounded at the first projection, and reused by the next (q, k and v read one; gate and
  // up another). Valid while nothing writes over the activation: every op that writes calls written().
  struct Shadow {
    const float* of = nullptr;
    std::size_t count = 0;
    gpu::DeviceBuffer bits;
  };
  const DeviceLinear* bf16_linear(const Linear& f) const { return fp32_ ? nullptr : dynamic_cast<const DeviceLinear*>(&f); }
  void forget() { shadow_.of = nullptr; }
  void written(const Acts& x) {
    if (shadow_.of && shadow_.of < x.data + x.rows * x.cols && x.data < shadow_.of + shadow_.count) forget();
  }
  std::uint16_t* shadow_for(const float* of, std::size_t count) {
    if (shadow_.bits.size() < count * 2) {
      shadow_.bits = gpu::DeviceBuffer();  // freed before the larger one is taken
      shadow_.bits = gpu::DeviceBuffer(count * 2);
    }
    shadow_.of = of;
    shadow_.count = count;
    return shadow_.bits.as<std::uint16_t>();
  }
  const std::uint16_t* bf16_of(const Acts& x) {
    const std::size_t count = x.rows * x.cols;
    if (shadow_.of == x.data && shadow_.count == count) return shadow_.bits.as<std::uint16_t>();
    std::uint16_t* b = shadow_for(x.data, count);
    launch_to_bf16(x.data, b, count);
    launched("to_bf16");
    return b;
  }

  // The embedding table in bf16, as the projections' weights (exact for a bf16 checkpoint), uploaded once.
  const std::uint16_t* bf16_table_of(const Matrix& table) {
    auto it = bf16_tables_.find(table.data());
    if (it == bf16_tables_.end()) {
      const std::vector<std::uint16_t> b = to_bf16_host(table.data(), static_cast<std::size_t>(table.size()));
      gpu::DeviceBuffer d(std::max<std::size_t>(1, b.size()) * 2);
      d.upload(b.data(), b.size() * 2);
      it = bf16_tables_.emplace(table.data(), std::move(d)).first;
    }
    return it->second.as<std::uint16_t>();
  }

  // What a greedy_decode call keeps on the device: the step's state (token, position), the chosen tokens, the RoPE angles
  // of the position, the attention's partials, and every activation buffer a captured step reads.
  struct DecodeRun {
    gpu::DeviceBuffer state, tokens, inv_freq, cs, sn, scratch;
    const float* inv_freq_of = nullptr;
    bool tables_ready = false;  // this step's angles are computed (one kernel per step, for every layer's q and k)
    std::vector<std::shared_ptr<gpu::DeviceBuffer>> kept;
    DecodeState* state_ptr() { return state.as<DecodeState>(); }
  };

  bool fp32_;  // fp32 weights, embedding table, KV cache and attention: the agreement mode (cuda-fp32)
  DecodeRun* decode_ = nullptr;  // set while greedy_decode runs: ops read the token and position from the device
  std::map<const float*, gpu::DeviceBuffer> params_, bf16_tables_;
  struct RopeTables {
    std::size_t pos0 = ~std::size_t{0}, n = 0;
    const float* freq = nullptr;
    int half = 0;
    gpu::DeviceBuffer cs, sn;
  } rope_;
  Shadow shadow_;
  OpProfile profile_;
};

}  // namespace

std::string cuda_forward_unavailable() { return gpu::unavailable_reason(); }

std::unique_ptr<ForwardOps> make_cuda_forward_ops(bool fp32) {
  if (const std::string why = gpu::unavailable_reason(); !why.empty()) throw InputError("--device cuda needs a CUDA GPU: " + why);
  return std::make_unique<CudaForwardOps>(fp32);
}

Matrix cuda_cache_rows(const KvCache& cache, int layer, bool keys, std::size_t n) {
  const auto* kv = static_cast<const DeviceKv*>(cache.device.get());
  if (!kv || n > cache.device_capacity || layer < 0 || static_cast<std::size_t>(layer) >= kv->k.size())
    throw InputError(fmt::format("cuda_cache_rows: layer {} rows {} of a cache of {} positions", layer, n, cache.device_capacity));
  const std::size_t row = kv->codec ? static_cast<std::size_t>(kv->codec->kv_heads) * kv->codec->head_dim
                                    : kv->k[layer].size() / (cache.device_capacity * cache.sequences * (kv->bf16 ? 2 : 4));
  Matrix out(static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(row));
  gpu::DeviceBuffer fp32(std::max<std::size_t>(1, n * row) * 4);
  if (kv->coded(layer)) {
    const CodedKvLayer L = kv->layer(layer);
    launch_kv_decode(keys ? L.k_codes : L.v_codes, keys ? L.k_norms : L.v_norms, n, kv->codec->kv_heads, kv->codec->head_dim,
                     keys ? kv->key : kv->value, keys ? L.k_signs : L.v_signs, cache.device_capacity, fp32.get(), false);
    launched("KV decode");
  } else if (kv->bf16) {
    std::vector<std::uint16_t> bits(n * row);
    check(cudaMemcpy(bits.data(), (keys ? kv->k : kv->v)[layer].get(), n * row * 2, cudaMemcpyDeviceToHost), "cache rows to the host");
    for (std::size_t i = 0; i < bits.size(); ++i) out.data()[i] = bf16_value(bits[i]);
    return out;
  } else {
    check(cudaMemcpy(fp32.get(), (keys ? kv->k : kv->v)[layer].get(), n * row * 4, cudaMemcpyDeviceToDevice), "cache rows");
  }
  fp32.download(out.data(), n * row * 4);
  return out;
}

Matrix cuda_decode_attention(const KvCache& cache, const ModelConfig& c, int layer, const Matrix& q, std::size_t pos) {
  const auto* kv = static_cast<const DeviceKv*>(cache.device.get());
  const std::size_t cap = cache.device_capacity, qrow = static_cast<std::size_t>(c.n_heads) * c.head_dim;
  if (!kv || pos >= cap || layer < 0 || static_cast<std::size_t>(layer) >= kv->k.size() || cache.sequences != 1 || q.rows() != 1 ||
      static_cast<std::size_t>(q.cols()) != qrow)
    throw InputError(fmt::format("cuda_decode_attention: layer {} position {} of a cache of {} positions, q {}×{} (want 1×{})", layer, pos, cap,
                                 q.rows(), q.cols(), qrow));
  const DecodeState state{0, static_cast<int>(pos), 0, 0};
  gpu::DeviceBuffer st(sizeof state), qd(qrow * 4), out(qrow * 4),
      scratch(decode_attention_scratch_floats(c.n_heads, c.head_dim, cap) * 4);
  st.upload(&state, sizeof state);
  qd.upload(q.data(), qrow * 4);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const bool ok = kv->coded(layer)
                      ? launch_decode_attention(qd.as<float>(), kv->layer(layer), out.as<float>(), nullptr, st.as<DecodeState>(), cap,
                                                c.n_heads, c.n_kv_heads, c.head_dim, c.sliding_window, scale, scratch.as<float>())
                      : launch_decode_attention(qd.as<float>(), kv->k[layer].get(), kv->v[layer].get(), kv->bf16, out.as<float>(), nullptr,
                                                st.as<DecodeState>(), cap, c.n_heads, c.n_kv_heads, c.head_dim, c.sliding_window, scale,
                                                scratch.as<float>());
  if (!ok) throw RunError(fmt::format("cuda_decode_attention: head_dim {} is not one the decode attention takes", c.head_dim));
  launched("decode attention");
  Matrix o(1, static_cast<Eigen::Index>(qrow));
  out.download(o.data(), qrow * 4);
  return o;
}

std::unique_ptr<Linear> make_cuda_dense_linear(const Matrix& w, bool fp32) { return std::make_unique<CudaDenseLinear>(w, fp32); }

std::unique_ptr<Linear> make_cuda_lut_mma_device_linear(const Quantizer& quantizer, const QuantizedMatrix& q) {
  return std::make_unique<CudaLutMmaLinear>(make_lut_mma_layout(quantizer, q));
}

}  // namespace tqb
