// Times ggml's CPU matrix multiplication (llama.cpp's MUL_MAT) for one weight type, shape and batch, the
// way test-backend-ops' perf mode does (tensors in a plain CPU context, a one-node graph, a thread
// count), so that tqbench's kernels can be compared with it in the same run on the same machine.
// Built by bench/peers/compare_llamacpp.py against the peer's own headers and libraries (never vendored).
//   ggml_mul_mat TYPE ROWS COLS N[,N...] [THREADS=2] [REPS=20]   (W: ROWS outputs × COLS inputs, like bench_kernels)
// Prints one JSON line per N: type, rows, cols, n, threads, median_us, min_us, weight_bytes. The weights
// are quantized once for every N (ggml's reference quantizers take seconds for 58M weights).
#include <ggml-cpu.h>
#include <ggml.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: %s TYPE ROWS COLS N [THREADS=2] [REPS=20]\n", argv[0]);
    return 2;
  }
  const std::string type_name = argv[1];
  const long rows = std::atol(argv[2]), cols = std::atol(argv[3]);
  std::vector<long> ns;
  for (const char* p = argv[4]; *p;) {
    char* end = nullptr;
    ns.push_back(std::strtol(p, &end, 10));
    p = *end == ',' ? end + 1 : end;
    if (end == p && *p) break;
  }
  const int threads = argc > 5 ? std::atoi(argv[5]) : 2, reps = argc > 6 ? std::atoi(argv[6]) : 20;
  ggml_type type = GGML_TYPE_COUNT;
  for (int t = 0; t < GGML_TYPE_COUNT; ++t)
    if (const char* name = ggml_type_name(static_cast<ggml_type>(t)); name && type_name == name) type = static_cast<ggml_type>(t);
  if (type == GGML_TYPE_COUNT || rows <= 0 || cols <= 0 || ns.empty() || *std::min_element(ns.begin(), ns.end()) <= 0) {
    std::fprintf(stderr, "bad arguments (TYPE is a ggml type name: f32, q4_0, q4_K, iq4_nl, ...)\n");
    return 2;
  }
  ggml_cpu_init();
  const long n_max = *std::max_element(ns.begin(), ns.end());
  const std::size_t w_bytes = ggml_row_size(type, cols) * rows;
  ggml_init_params params{w_bytes + static_cast<std::size_t>(n_max) * (cols + rows) * 4 * 2 + (64u << 20), nullptr, false};
  ggml_context* ctx = ggml_init(params);
  ggml_tensor* w = ggml_new_tensor_2d(ctx, type, cols, rows);  // ne0 = inputs (a row), ne1 = outputs
  // N(0, 0.02²) weights (the scale of bench_kernels' matrices) and N(0, 1) activations, quantized by
  // ggml's own reference quantizer for the type.
  std::mt19937_64 rng(1234);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  {
    std::vector<float> wf(static_cast<std::size_t>(rows) * cols);
    for (auto& v : wf) v = 0.02f * normal(rng);
    if (type == GGML_TYPE_F32) std::memcpy(w->data, wf.data(), wf.size() * 4);
    else ggml_quantize_chunk(type, wf.data(), w->data, 0, rows, cols, nullptr);
  }
  for (const long n : ns) {
    ggml_tensor* x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, cols, n);
    float* xd = static_cast<float*>(x->data);
    for (long i = 0; i < n * cols; ++i) xd[i] = normal(rng);
    ggml_tensor* y = ggml_mul_mat(ctx, w, x);
    ggml_cgraph* graph = ggml_new_graph(ctx);
    ggml_build_forward_expand(graph, y);
    ggml_cplan plan = ggml_graph_plan(graph, threads, nullptr);
    std::vector<std::uint8_t> work(plan.work_size);
    plan.work_data = work.data();
    for (int i = 0; i < 3; ++i) ggml_graph_compute(graph, &plan);  // warm-up: caches, thread start
    std::vector<double> us;
    for (int i = 0; i < (n >= 256 ? std::max(3, reps / 4) : reps); ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      ggml_graph_compute(graph, &plan);
      us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(us.begin(), us.end());
    std::printf("{\"type\": \"%s\", \"rows\": %ld, \"cols\": %ld, \"n\": %ld, \"threads\": %d, \"median_us\": %.1f, "
                "\"min_us\": %.1f, \"weight_bytes\": %zu}\n",
                type_name.c_str(), rows, cols, n, threads, us[us.size() / 2], us.front(), w_bytes);
    std::fflush(stdout);
  }
  ggml_free(ctx);
  return 0;
}
