// GPU benchmark of the lut_mma kernels (kernels/cuda) against cuBLAS bf16 in the same binary and run.
// Every timed call: CUDA events, the 50 MiB L2 flushed before it (a 256 MiB rewrite), median of
// --reps calls (default 100) after 3 warm-ups; weights and activations seeded random (never zeros).
// Reports µs, compressed GB/s (bytes of the GPU layout / time), % of the measured device-to-device copy
// bandwidth, × cuBLAS, the read floor (a plain kernel reading the layout's bytes, same protocol) and the time of
// every path that can serve n (n ≤ 16: the small kernel, and with its L2 prefetch, an option; n > 16: the large
// kernel and the dequantized path; on Hopper wgmma at every n), with cuBLAS timed among them, the order rotated per
// shape, format and batch. bench/torch_int4.py times PyTorch's int4 kernel on the same shapes;
// bench/gpu_table.py joins both JSON files into the Markdown table of docs/GPU.md.
//
//   bench_gpu [--json FILE] [--reps N] [--quick] [--stack] [--check] [--only ROWSxCOLS] [--format F] [--n N[,N...]] [--default-only]
// --quick: Llama-3-8B shapes and turboquant 4-bit only. --stack: also the Llama-3-8B linear-layer
// stack (32 × q,k,v,o,gate,up,down) at n = 1 and 16, quantized against bf16: µs and bytes per token.
// --check: before timing, each (format, shape) is checked against the host emulation (n = 4, 32, 64 and 100, every path; wgmma at 100 through both of its kernels).
// --only, --format, --n: one shape, format or batch (for profiling one kernel under ncu); --default-only: the
// default path alone (no L2-prefetch option, no other path), so that ncu's launch after the warm-ups is the default's.
// --trace: at n ≤ 16, one more small-kernel call whose blocks record when each phase ends (trace_summary).
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <map>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/rng.hpp"
#include "common/timing_summary.hpp"
#include "common/version.hpp"
#include "kernels/cuda/gpu.hpp"
#include "kernels/cuda/lut_mma_layout.hpp"
#include "quantizers/registry.hpp"

using namespace tqb;

namespace {

struct Shape {
  const char* model;
  std::size_t rows, cols;
};

std::vector<float> random_matrix(std::size_t rows, std::size_t cols, std::uint64_t seed) {
  std::vector<float> w(rows * cols);
  Rng rng(seed);
  for (auto& v : w) v = static_cast<float>(rng.normal());
  return w;
}

double median(std::vector<double> v) { return summarize_us(std::move(v)).median; }

// --trace: the small kernel's per-block trace ([block][start, prologue done, stream done, done (ns), SM id];
// LutMmaMatrix::last_trace) as µs from the first block's start: when blocks start, and each phase's median and
// maximum over blocks, so that a launch's time splits into start skew, prologue, code stream and epilogue; and the
// blocks' end by how many blocks their SM ran (whether the SMs holding more blocks are the ones that end last).
nlohmann::json trace_summary(const std::vector<std::uint64_t>& t) {
  constexpr std::size_t F = gpu::LutMmaMatrix::kTraceFields;
  const std::size_t blocks = t.size() / F;
  if (blocks == 0) return {};
  std::uint64_t origin = t[0];
  for (std::size_t b = 0; b < blocks; ++b) origin = std::min(origin, t[F * b]);
  std::vector<double> start, prologue, stream, epilogue, end;
  std::map<std::uint64_t, std::vector<double>> ends_by_sm;
  for (std::size_t b = 0; b < blocks; ++b) {
    const auto at = [&](std::size_t i) { return (static_cast<double>(t[F * b + i]) - static_cast<double>(origin)) / 1e3; };
    start.push_back(at(0)), prologue.push_back(at(1) - at(0)), stream.push_back(at(2) - at(1)), epilogue.push_back(at(3) - at(2)), end.push_back(at(3));
    ends_by_sm[t[F * b + 4]].push_back(at(3));
  }
  const auto stat = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return nlohmann::json{{"median", v[v.size() / 2]}, {"max", v.back()}};
  };
  std::map<std::size_t, std::vector<double>> ends_by_load;  // blocks an SM ran -> the ends of those blocks
  std::map<std::size_t, std::size_t> sms_by_load;
  for (const auto& [sm, e] : ends_by_sm) {
    ++sms_by_load[e.size()];
    ends_by_load[e.size()].insert(ends_by_load[e.size()].end(), e.begin(), e.end());
  }
  nlohmann::json by_load = nlohmann::json::array();
  for (const auto& [load, e] : ends_by_load) {
    nlohmann::json row = stat(e);
    row["blocks_per_sm"] = load;
    row["sms"] = sms_by_load[load];
    by_load.push_back(row);
  }
  return {{"blocks", blocks},         {"start", stat(start)}, {"prologue", stat(prologue)}, {"stream", stat(stream)},
          {"epilogue", stat(epilogue)}, {"end", stat(end)},     {"end_by_blocks_per_sm", by_load}};
}

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "bench_gpu: check failed: %s\n", what.c_str());
    std::exit(1);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string json_path;
  int reps = 100;
  bool quick = false, stack = false, check_first = false, default_only = false, trace = false;
  std::string only, only_format;
  std::vector<std::size_t> only_n;  // --n: batch sizes, comma-separated
  const char* usage = "usage: bench_gpu [--json FILE] [--reps N] [--quick] [--stack] [--check] [--only ROWSxCOLS] [--format F] [--n N[,N...]] [--default-only] [--trace]\n";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc) json_path = argv[++i];
    else if (a == "--reps" && i + 1 < argc) {
      char* end = nullptr;
      const long v = std::strtol(argv[++i], &end, 10);
      if (*argv[i] == '\0' || *end != '\0' || v < 1 || v > 100000) {
        std::fprintf(stderr, "bench_gpu: --reps '%s' is not a count of timed calls (1 to 100000)\n%s", argv[i], usage);
        return 2;
      }
      reps = static_cast<int>(v);
    }
    else if (a == "--quick") quick = true;
    else if (a == "--stack") stack = true;
    else if (a == "--check") check_first = true;
    else if (a == "--default-only") default_only = true;
    else if (a == "--trace") trace = true;
    else if (a == "--only" && i + 1 < argc) only = argv[++i];
    else if (a == "--format" && i + 1 < argc) only_format = argv[++i];
    else if (a == "--n" && i + 1 < argc) {
      const std::string list = argv[++i];
      for (std::size_t at = 0; at <= list.size();) {
        const std::size_t comma = std::min(list.find(',', at), list.size());
        const std::string item = list.substr(at, comma - at);
        char* end = nullptr;
        const unsigned long v = std::strtoul(item.c_str(), &end, 10);
        if (item.empty() || *end != '\0' || v < 1 || v > 65536) {
          std::fprintf(stderr, "bench_gpu: --n '%s': '%s' is not a batch size (1 to 65536, comma-separated)\n%s", list.c_str(), item.c_str(), usage);
          return 2;
        }
        only_n.push_back(v);
        at = comma + 1;
      }
    } else {
      std::fprintf(stderr, "bench_gpu: unknown or incomplete argument '%s'\n%s", a.c_str(), usage);
      return 2;
    }
  }
  if (const std::string why = gpu::unavailable_reason(); !why.empty()) {
    std::printf("bench_gpu: skipped: %s\n", why.c_str());
    return 0;
  }
  const double copy_bw = gpu::copy_bandwidth_bytes_per_s();
  const double floor_us = gpu::launch_floor_us(reps);
  std::printf("GPU: %s\ncommit %s; device-to-device copy %.0f GB/s (read + written); L2 flushed before each call; median of %d;\n"
              "an empty kernel measures %.2f us under this protocol\n\n",
              gpu::device_description().c_str(), git_commit(), copy_bw / 1e9, reps, floor_us);

  std::vector<Shape> shapes{{"Llama-3-8B q/o", 4096, 4096}, {"Llama-3-8B gate/up", 14336, 4096}, {"Llama-3-8B down", 4096, 14336}};
  if (!quick) {
    shapes.insert(shapes.begin(), {{"SmolLM2-135M q/o", 576, 576}, {"SmolLM2-135M gate/up", 1536, 576}, {"SmolLM2-135M down", 576, 1536},
                                   {"Qwen3-0.6B q", 2048, 1024}, {"Qwen3-0.6B o", 1024, 2048}, {"Qwen3-0.6B gate/up", 3072, 1024},
                                   {"Qwen3-0.6B down", 1024, 3072}});
  }
  std::vector<std::string> formats{"turboquant(bits=4,group=128,rotation=hadamard)"};
  if (!quick)
    for (const char* f : {"turboquant(bits=4,group=128,rotation=none)", "rtn(bits=4,group=128,mode=asym,scale=fp16)",
                          "residual(stack=4+4,group=128,rotation=hadamard)", "residual(stack=4+2,group=128,rotation=hadamard)",
                          "residual(stack=3+2,group=128,rotation=hadamard)"})
      formats.push_back(f);
  std::vector<std::size_t> batches{1, 4, 16, 64, 128, 256, 512};
  if (!only_n.empty()) batches = only_n;
  if (!only_format.empty()) formats = {only_format};
  if (!only.empty())
    shapes.erase(std::remove_if(shapes.begin(), shapes.end(), [&](const Shape& s) { return std::to_string(s.rows) + "x" + std::to_string(s.cols) != only; }),
                 shapes.end());

  nlohmann::json out;
  out["device"] = gpu::device_description();
  out["commit"] = git_commit();
  out["copy_bytes_per_s"] = copy_bw;
  out["empty_kernel_us"] = floor_us;
  out["reps"] = reps;
  out["rows"] = nlohmann::json::array();

  std::printf("%-22s %-50s %4s %9s %9s %8s %6s %9s %8s %8s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s %9s  %s\n", "shape", "format", "n", "us", "cublas_us", "GB/s", "%copy",
              "x_cublas", "MB", "read_us", "small_us", "sm_prol", "sm_kern", "sm_glob", "sm_clus", "l2pf_us", "large_us", "deq_us", "wgmma_us", "wg_ws", "wg_sk", "variant");
  for (const Shape& s : shapes) {
    const std::vector<float> w = random_matrix(s.rows, s.cols, 7 + s.rows * 31 + s.cols);
    gpu::CublasBf16Matrix dense(w.data(), s.rows, s.cols);
    const std::size_t max_n = *std::max_element(batches.begin(), batches.end());  // --n lists in any order
    std::vector<std::uint16_t> xb(max_n * s.cols);
    {
      Rng rng(99);
      for (auto& v : xb) v = to_bf16_bits(static_cast<float>(rng.normal()));
    }
    gpu::DeviceBuffer xd(xb.size() * 2), yd(max_n * s.rows * 4), yb(max_n * s.rows * 2);
    xd.upload(xb.data(), xb.size() * 2);
    // The peer, timed within each (format, n)'s rotation of the kernels (the issue-31 protocol: alternate the order
    // of kernel and peer), so that neither always runs first on a cold or warm clock.
    const auto time_cublas = [&](std::size_t n) {
      return median(gpu::time_calls([&](void* st) { dense.multiply(xd.as<const std::uint16_t>(), n, yb.as<std::uint16_t>(), st); }, reps, true));
    };
    for (std::size_t fi = 0; fi < formats.size(); ++fi) {
      std::string f = formats[fi];
      // Group 128 where it divides the width, else 64 (SmolLM2's 576 columns), as torch_int4.py does.
      if (s.cols % 128 != 0)
        if (const auto at = f.find("group=128"); at != std::string::npos) f.replace(at, 9, "group=64");
      auto q = parse_quantizer(f);
      if (const ShapeProblem sp = q->check_shape(s.rows, s.cols); !sp.message.empty()) {
        std::printf("%-22s %-50s skipped: %s\n", s.model, f.c_str(), sp.message.c_str());
        continue;
      }
      const QuantizedMatrix qm = q->quantize(w.data(), s.rows, s.cols, 3);
      const LutMmaLayout layout = make_lut_mma_layout(*q, qm);
      gpu::LutMmaMatrix m(layout);
      if (check_first) {  // once per (format, shape): every path at n = 4, 32, 64, 100 against the host emulation
        using Path = gpu::LutMmaMatrix::BatchPath;
        std::vector<Path> paths{Path::automatic, Path::large, Path::dequantized};
        if (m.wgmma_available()) paths.push_back(Path::wgmma);
        for (const std::size_t n : {std::size_t{4}, std::size_t{32}, std::size_t{64}, std::size_t{100}}) {
          if (n > max_n) continue;
          std::vector<float> xf(n * s.cols), emu(n * s.rows), mag(n * s.rows), got(n * s.rows);
          for (std::size_t i = 0; i < xf.size(); ++i) xf[i] = from_bf16_bits(xb[i]);
          for (const Path p : paths) {
            m.set_batch_path(p);
            // wgmma through each of its kernels, as {set_wgmma_producer, set_wgmma_stream_k} modes: the one with A in
            // registers over the grid's tiles and over stream-K shares, and above n = 64 the producer-decoded one where
            // the format has it
            std::vector<std::array<int, 2>> kernels{{-1, -1}};
            if (p == Path::wgmma) kernels = {{0, 0}, {0, 1}};
            if (p == Path::wgmma && n > 64 && m.wgmma_producer_available()) kernels.push_back({1, -1});
            for (const auto [producer, stream_k] : kernels) {
              m.set_wgmma_producer(producer);
              m.set_wgmma_stream_k(stream_k);
              lut_mma_emulate(layout, xf.data(), n, emu.data(), mag.data(), m.arith(n));
              m.multiply(xd.as<const std::uint16_t>(), n, yd.as<float>(), nullptr);
              yd.download(got.data(), got.size() * 4);
              for (std::size_t i = 0; i < got.size(); ++i)
                check(std::fabs(got[i] - emu[i]) <= (s.cols * std::ldexp(1.0, -22) + 1e-6) * mag[i] + 1e-30,
                      f + " against its emulation, " + m.variant(n));
            }
            m.set_wgmma_producer(-1);
            m.set_wgmma_stream_k(-1);
          }
        }
        m.set_batch_path(Path::automatic);
      }
      const double bytes = static_cast<double>(m.weight_bytes());
      // The floor under any kernel that reads this layout: a plain read of as many bytes, same protocol.
      const double read_us = gpu::read_floor_us(m.weight_bytes(), reps);
      // The same bytes in the small kernel's pattern (a warp per stripe and chunk, 10-15 KB each on the Llama shapes),
      // one trait of that kernel added at a time: the pattern, interleaved pieces, its residency (3 blocks of 8 warps
      // per SM), its cp.async ring (the small kernel's stream without its decode), then that ring deeper (8, 12 slots).
      struct Floor {
        const char* name;
        gpu::StreamReadPattern pattern;
      };
      const std::vector<Floor> floors{{"8KiB", {8 << 10, false, false, 0}},
                                {"16KiB", {16 << 10, false, false, 0}},
                                {"16KiB_interleaved", {16 << 10, true, false, 0}},
                                {"16KiB_3_blocks_per_SM", {16 << 10, false, false, 3}},
                                {"16KiB_cp_async_ring", {16 << 10, false, true, 0}},
                                {"16KiB_cp_async_ring_3_blocks_per_SM", {16 << 10, false, true, 3}},
                                {"16KiB_cp_async_ring_8_slots", {16 << 10, false, true, 0, 8}},
                                {"16KiB_cp_async_ring_12_slots", {16 << 10, false, true, 0, 12}}};
      nlohmann::json floors_json;
      std::printf("  read floors, us: grid-wide sweep %.2f; a warp per contiguous piece:", read_us);
      for (const Floor& fl : floors) {
        const double us = gpu::stream_read_floor_us(m.weight_bytes(), fl.pattern, reps);
        floors_json[fl.name] = us;
        std::printf(" %s %.2f;", fl.name, us);
      }
      std::printf("\n");
      for (std::size_t b = 0; b < batches.size(); ++b) {
        const std::size_t n = batches[b];
        auto run = [&](void* st) { m.multiply(xd.as<const std::uint16_t>(), n, yd.as<float>(), st); };
        // Every path that can serve n timed in one run, and cuBLAS among them, the order rotated per shape, format
        // and batch, the default's figure reported as us: n ≤ 16 the small kernel (and with its L2 prefetch, an
        // option), above the large kernel and the dequantized path (decode to bf16 + cuBLAS); on Hopper wgmma at
        // every n.
        double small_prologue_rot_us = -1, small_kernel_rot_us = -1, small_global_us = -1, small_cluster_us = -1;
        double small_us = -1, prefetch_us = -1, large_us = -1, dequant_us = -1, wgmma_us = -1, cublas_us = -1;
        double wgmma_ws_us = -1;  // the wgmma path through the producer-decoded kernel (one pass, n > 64)
        double wgmma_sk_us = -1;  // the wgmma path through the other kernel over stream-K shares
        std::vector<double> us;
        const std::size_t turn = s.rows + b + fi;
        if (default_only) {
          if (turn % 2) cublas_us = time_cublas(n);
          us = gpu::time_calls(run, reps, true);
          if (cublas_us < 0) cublas_us = time_cublas(n);
        } else {
          using Path = gpu::LutMmaMatrix::BatchPath;
          const std::string default_variant = m.variant(n);
          std::vector<Path> paths;
          if (n <= 16) paths = {Path::small};
          else paths = {Path::large, Path::dequantized};
          if (m.wgmma_available()) paths.push_back(Path::wgmma);
          std::rotate(paths.begin(), paths.begin() + turn % paths.size(), paths.end());
          const std::size_t peer_slot = turn % (paths.size() + 1);  // cuBLAS before paths[peer_slot], or last
          std::map<Path, std::vector<double>> times;
          // One of the wgmma path's kernels forced ({set_wgmma_producer, set_wgmma_stream_k} modes), timed: its median
          // (and its times as the default's where it is the default's kernel).
          const auto time_wgmma_kernel = [&](int producer, int stream_k) {
            m.set_wgmma_producer(producer);
            m.set_wgmma_stream_k(stream_k);
            const std::vector<double> kernel_times = gpu::time_calls(run, reps, true);
            if (m.variant(n) == default_variant) us = kernel_times;
            m.set_wgmma_producer(-1);
            m.set_wgmma_stream_k(-1);
            return median(kernel_times);
          };
          for (std::size_t i = 0; i < paths.size(); ++i) {
            const Path p = paths[i];
            if (i == peer_slot) cublas_us = time_cublas(n);
            m.set_batch_path(p);
            times[p] = gpu::time_calls(run, reps, true);
            if (m.variant(n) == default_variant) us = times[p];
            if (p == Path::small) {  // the options, right after the small kernel's own timing
              m.set_l2_prefetch(true);
              prefetch_us = median(gpu::time_calls(run, reps, true));
              m.set_l2_prefetch(false);
              for (const int mode : {0, 1}) {  // activations rotated in every block's prologue, then by a kernel first
                m.set_small_pre_rotation(mode);
                (mode ? small_kernel_rot_us : small_prologue_rot_us) = median(gpu::time_calls(run, reps, true));
              }
              m.set_small_pre_rotation(-1);
              for (const int mode : {0, 1}) {  // the split-K reduction through global memory, then through the cluster
                m.set_small_cluster_reduce(mode);
                (mode ? small_cluster_us : small_global_us) = median(gpu::time_calls(run, reps, true));
              }
              m.set_small_cluster_reduce(-1);
            }
            // wgmma's kernel with a decoding producer warpgroup; the kernel with A in registers over stream-K shares
            if (p == Path::wgmma && n > 64 && m.wgmma_producer_available()) wgmma_ws_us = time_wgmma_kernel(1, -1);
            if (p == Path::wgmma && n > 16) wgmma_sk_us = time_wgmma_kernel(0, 1);
          }
          if (cublas_us < 0) cublas_us = time_cublas(n);
          m.set_batch_path(Path::automatic);
          const auto med_of = [&](Path p) { return times.count(p) ? median(times[p]) : -1.0; };
          small_us = med_of(Path::small), large_us = med_of(Path::large), dequant_us = med_of(Path::dequantized), wgmma_us = med_of(Path::wgmma);
        }
        const TimingSummary t = summarize_us(us);
        const double med = t.median;
        const double gbs = bytes / (med * 1e-6) / 1e9;
        nlohmann::json row{{"shape", s.model},     {"rows", s.rows},
                           {"cols", s.cols},       {"format", f},
                           {"n", n},               {"us", med},
                           {"us_min", t.min},
                           {"us_max", t.max},
                           {"cublas_us", cublas_us},
                           {"weight_bytes", bytes},
                           {"cublas_weight_bytes", static_cast<double>(dense.weight_bytes())},
                           {"gbs", gbs},
                           {"pct_copy", 100.0 * gbs * 1e9 / copy_bw},
                           {"x_cublas", cublas_us / med},
                           {"read_floor_us", read_us},
                           {"stream_read_floor_us", floors_json},
                           {"pct_read_floor", 100.0 * read_us / med},
                           {"small_us", small_us},
                           {"us_l2_prefetch", prefetch_us},
                           {"small_prologue_rotation_us", small_prologue_rot_us},
                           {"small_global_reduce_us", small_global_us},
                           {"small_cluster_reduce_us", small_cluster_us},
                           {"small_kernel_rotation_us", small_kernel_rot_us},
                           {"large_us", large_us},
                           {"dequant_us", dequant_us},
                           {"wgmma_us", wgmma_us},
                           {"wgmma_producer_us", wgmma_ws_us},
                           {"wgmma_stream_k_us", wgmma_sk_us},
                           {"variant", m.variant(n)}};
        if (trace && n <= 16) {  // one more call of the small kernel, L2 flushed, its blocks' phases
          m.set_batch_path(gpu::LutMmaMatrix::BatchPath::small);
          m.set_trace(true);
          gpu::time_calls(run, 3, true);
          row["small_trace_us"] = trace_summary(m.last_trace());
          m.set_trace(false);
          m.set_batch_path(gpu::LutMmaMatrix::BatchPath::automatic);
          const auto& tr = row["small_trace_us"];
          std::printf("  trace (small kernel, us from the first block's start, median/max over %d blocks):", tr["blocks"].get<int>());
          const char* sep = "";
          for (const char* phase : {"start", "prologue", "stream", "epilogue", "end"}) {
            std::printf("%s %s %.2f/%.2f", sep, phase, tr[phase]["median"].get<double>(), tr[phase]["max"].get<double>());
            sep = ",";
          }
          std::printf("\n  trace, blocks' end by how many blocks their SM ran (median/max):");
          for (const auto& r : tr["end_by_blocks_per_sm"])
            std::printf(" %d on %d SMs %.2f/%.2f;", r["blocks_per_sm"].get<int>(), r["sms"].get<int>(), r["median"].get<double>(), r["max"].get<double>());
          std::printf("\n");
        }
        out["rows"].push_back(row);
        std::printf("%-22s %-50s %4zu %9.2f %9.2f %8.0f %5.0f%% %9.2f %8.2f %8.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f  %s\n", s.model, f.c_str(), n,
                    med, cublas_us, gbs, 100.0 * gbs * 1e9 / copy_bw, cublas_us / med, bytes / 1e6, read_us, small_us, small_prologue_rot_us,
                    small_kernel_rot_us, small_global_us, small_cluster_us, prefetch_us, large_us, dequant_us, wgmma_us, wgmma_ws_us, wgmma_sk_us, m.variant(n).c_str());
        std::fflush(stdout);
      }
    }
  }

  if (stack) {
    // The seeds' claim: a Llama-3-8B-shaped stack of linear layers, quantized against bf16. One layer's
    // seven matrices are made (seeded random) and quantized once; 32 distinct device copies of each are
    // made on the GPU, so every layer reads its own bytes from DRAM as in a real decode step.
    const std::vector<Shape> layer{{"q", 4096, 4096}, {"k", 1024, 4096},     {"v", 1024, 4096},    {"o", 4096, 4096},
                                   {"gate", 14336, 4096}, {"up", 14336, 4096}, {"down", 4096, 14336}};
    const int layers = 32;
    const std::string f = "turboquant(bits=4,group=128,rotation=hadamard)";
    auto q = parse_quantizer(f);
    std::vector<std::unique_ptr<gpu::LutMmaMatrix>> quant;
    std::vector<std::unique_ptr<gpu::CublasBf16Matrix>> dense;
    for (int l = 0; l < layers; ++l)
      for (std::size_t i = 0; i < layer.size(); ++i) {
        const Shape& s = layer[i];
        static std::vector<LutMmaLayout> layouts;
        static std::vector<std::vector<float>> weights;
        if (l == 0) {
          weights.push_back(random_matrix(s.rows, s.cols, 1000 + i));
          layouts.push_back(make_lut_mma_layout(*q, q->quantize(weights.back().data(), s.rows, s.cols, 1)));
        }
        quant.push_back(std::make_unique<gpu::LutMmaMatrix>(layouts[i]));
        dense.push_back(l == 0 ? std::make_unique<gpu::CublasBf16Matrix>(weights[i].data(), s.rows, s.cols) : dense[i]->clone());
      }
    std::size_t qbytes = 0, dbytes = 0;
    for (auto& m : quant) qbytes += m->weight_bytes();
    for (auto& m : dense) dbytes += m->weight_bytes();
    gpu::DeviceBuffer xd(16 * 14336 * 2), yd(16 * 14336 * 4), yb(16 * 14336 * 2);
    std::vector<std::uint16_t> xb(16 * 14336);
    Rng rng(5);
    for (auto& v : xb) v = to_bf16_bits(static_cast<float>(rng.normal()));
    xd.upload(xb.data(), xb.size() * 2);
    std::printf("\nLlama-3-8B linear stack (32 layers x q,k,v,o,gate,up,down), %s vs cuBLAS bf16:\n", f.c_str());
    std::printf("weights on the GPU: %.3f GB quantized (layout) vs %.3f GB bf16: %.2fx less\n", qbytes / 1e9, dbytes / 1e9,
                static_cast<double>(dbytes) / qbytes);
    for (std::size_t n : {std::size_t{1}, std::size_t{16}}) {
      const int stack_reps = std::max(5, reps / 10);
      const auto time_quantized = [&] {
        return median(gpu::time_calls(
            [&](void* st) {
              for (auto& m : quant) m->multiply(xd.as<const std::uint16_t>(), n, yd.as<float>(), st);
            },
            stack_reps, true));
      };
      const auto time_bf16 = [&] {
        return median(gpu::time_calls(
            [&](void* st) {
              for (auto& m : dense) m->multiply(xd.as<const std::uint16_t>(), n, yb.as<std::uint16_t>(), st);
            },
            stack_reps, true));
      };
      double tq = 0, bf = 0;
      if (n == 1) tq = time_quantized(), bf = time_bf16();  // the order alternates with n: kernel first, then peer first
      else bf = time_bf16(), tq = time_quantized();
      std::printf("n = %2zu: %8.1f us quantized vs %8.1f us bf16 per forward step: %.2fx faster (%.1f vs %.1f us per token)\n", n, tq, bf, bf / tq,
                  tq / n, bf / n);
      out["stack"].push_back({{"n", n}, {"format", f}, {"us", tq}, {"cublas_us", bf}, {"weight_bytes", qbytes}, {"cublas_weight_bytes", dbytes}});
    }
  }
  if (!json_path.empty()) {
    std::ofstream(json_path) << out.dump(1) << "\n";
    std::printf("\nJSON: %s\n", json_path.c_str());
  }
  return 0;
}
