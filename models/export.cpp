#include "models/export.hpp"

#include <fmt/format.h>

#include <cstring>
#include <filesystem>

#include "common/atomic_file.hpp"
#include "common/error.hpp"
#include "common/input_files.hpp"
#include "common/version.hpp"
#include "models/quantized_safetensors.hpp"
#include "models/checkpoint.hpp"
#include "models/gguf.hpp"
#include "quantizers/ggml_blocks.hpp"
#include "quantizers/ggml_formats.hpp"
#include "quantizers/registry.hpp"

namespace tqb {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// GGUF's little-endian scalars and strings, appended to a byte buffer.
struct GgufBytes {
  std::string out;
  template <class T>
  void pod(T v) { out.append(reinterpret_cast<const char*>(&v), sizeof(v)); }
  void str(const std::string& s) {
    pod(static_cast<std::uint64_t>(s.size()));
    out += s;
  }
  void kv_string(const std::string& key, const std::string& v) {
    str(key);
    pod(std::uint32_t{8});  // GGUF_TYPE_STRING
    str(v);
  }
  void kv_u64(const std::string& key, std::uint64_t v) {
    str(key);
    pod(std::uint32_t{10});  // GGUF_TYPE_UINT64
    pod(v);
  }
};

// Metadata tqbench writes into an exported file (and replaces when re-exporting an exported file).
std::map<std::string, std::string> provenance_keys(const ExportRequest& r, const std::string& source, const Quantizer& q) {
  return {{"tqbench.quantizer", q.name()},
          {"tqbench.include", r.include},
          {"tqbench.exclude", r.exclude},
          {"tqbench.source", std::filesystem::path(source).filename().string()},
          {"tqbench.version", fmt::format("{} (git {})", version(), git_commit())},
          {"tqbench.command", r.command_line}};
}

void export_gguf(const ExportRequest& r, const Quantizer& q, std::ostream& log) {
  const std::string source = resolve_model_path(r.model);
  if (std::filesystem::is_directory(source))
    throw InputError(fmt::format("{}: error: a GGUF export needs a GGUF source (its metadata and tokenizer are copied); "
                                 "this is a folder. Write OUT.safetensors instead, or convert the model to GGUF first",
                                 source));
  const GgufFile src(source);
  const LayerSelection selection(r.include, r.exclude);

  struct Planned {
    const GgufTensorInfo* info;
    std::uint32_t type;
    std::uint64_t bytes;
    bool quantize;
  };
  std::vector<Planned> plan;
  std::size_t n_quantized = 0;
  double quantized_bytes = 0, quantized_weights = 0;
  for (const auto& t : src.tensors()) {
    Planned p{&t, t.type, t.bytes, selection.selected(t.name) && t.dims.size() == 2};
    if (p.quantize) {
      // The format this layer gets (its own, or llama-quantize's fallback for rows not in super-blocks).
      const auto layer_q = quantizer_for_layer(q, t.name, t.dims[1], t.dims[0], r.group_fallback);
      const GgmlBlockFormat* f = ggml_format_of(*layer_q, t.dims[0]);
      if (!f)
        throw InputError(fmt::format("{}: GGUF has no tensor type for {} (GGUF export takes {}); write OUT.safetensors, "
                                     "tqbench's layout, instead", r.output, q.name(), ggml_format_names()));
      p.type = f->ggml_type;
      p.bytes = t.dims[1] * (t.dims[0] / f->block) * f->block_bytes;
      ++n_quantized;
      quantized_bytes += static_cast<double>(p.bytes);
      quantized_weights += static_cast<double>(t.elements());
    }
    plan.push_back(p);
  }
  if (n_quantized == 0)
    throw InputError(fmt::format("{}: the include pattern '{}' (exclude '{}') selects no 2-D tensor", source, r.include, r.exclude));

  // A calibrated quantizer (gptq(q4_0): GPTQ's codes in Q4_0's bytes) calibrates on the source model first, as a sweep
  // point does; the layers its sequential order quantized on the way are the ones written.
  Calibration calibration;
  auto added = provenance_keys(r, source, q);
  if (q.needs_calibration()) {
    calibration = calibrate_model(load_checkpoint(source), q, r.seed, r.include, r.exclude, r.group_fallback, r.calibration);
    added["tqbench.calibration"] = calibration.label;
    log << fmt::format("calibrated on {} ({:.1f} s)\n", calibration.label, calibration.seconds);
  }
  GgufBytes head;
  head.pod(std::uint32_t{0x46554747u});  // "GGUF"
  head.pod(std::uint32_t{3});
  head.pod(static_cast<std::uint64_t>(plan.size()));
  std::uint64_t n_kv = 0;
  std::string kv;
  for (const auto& e : src.raw_metadata()) {
    // general.file_type would claim one type for a file that now mixes several; llama.cpp then names the
    // most common tensor type instead.
    if (e.key == "general.file_type" || added.count(e.key) || e.key == "tqbench.seed") continue;
    kv.append(reinterpret_cast<const char*>(src.file_bytes() + e.begin), e.end - e.begin);
    ++n_kv;
  }
  GgufBytes extra;
  for (const auto& [k, v] : added) extra.kv_string(k, v);
  extra.kv_u64("tqbench.seed", r.seed);
  n_kv += added.size() + 1;
  head.pod(n_kv);
  head.out += kv + extra.out;
  const std::uint64_t align = src.alignment();
  std::uint64_t offset = 0;
  for (const auto& p : plan) {
    head.str(p.info->name);
    head.pod(static_cast<std::uint32_t>(p.info->dims.size()));
    for (auto d : p.info->dims) head.pod(d);
    head.pod(p.type);
    head.pod(offset);
    offset += (p.bytes + align - 1) / align * align;
  }

  AtomicFile out(r.output);
  out.write(head.out.data(), head.out.size());
  out.pad_to(align);
  for (const auto& p : plan) {
    if (p.quantize) {
      const Matrix w = src.tensor(*p.info);
      const auto done = calibration.quantized.find(p.info->name);
      const auto stats = calibration.layers.find(p.info->name);
      const QuantizedLayer ql =
          done != calibration.quantized.end()
              ? std::move(done->second)
              : quantize_layer(q, p.info->name, w, r.seed, r.group_fallback, stats == calibration.layers.end() ? nullptr : &stats->second);
      if (ql.matrix.codes.size() != p.bytes)
        throw RunError(fmt::format("internal error: {} wrote {} bytes for '{}', {} planned", ql.quantizer->name(),
                                   ql.matrix.codes.size(), p.info->name, p.bytes));
      out.write(ql.matrix.codes.data(), ql.matrix.codes.size());
    } else {
      out.write(src.tensor_bytes(*p.info), p.bytes);
    }
    out.pad_to(align);
  }
  out.commit();
  log << fmt::format("{}: {} of {} tensors quantized with {} ({:.4g} bits per weight over them), the rest as stored in {}\n",
                     r.output, n_quantized, plan.size(), q.name(), 8 * quantized_bytes / quantized_weights, source);
}

void export_safetensors(const ExportRequest& r, const Quantizer& q, std::ostream& log) {
  const Checkpoint ck = load_checkpoint(r.model);
  const LayerSelection selection(r.include, r.exclude);
  QuantizedModelFile m;
  m.metadata = provenance_keys(r, ck.path, q);
  m.metadata["tqbench.seed"] = std::to_string(r.seed);
  double bytes = 0, weights = 0;
  // A calibrated quantizer's statistics (and the layers the sequential order already quantized), as a sweep point's.
  Calibration calibration;
  if (q.needs_calibration()) {
    calibration = calibrate_model(ck, q, r.seed, r.include, r.exclude, r.group_fallback, r.calibration);
    m.metadata["tqbench.calibration"] = calibration.label;
  }
  for (const auto& [name, w] : ck.tensors) {
    const std::size_t rank = ck.source_rank.count(name) ? ck.source_rank.at(name) : 2;
    if (selection.selected(name) && rank == 2) {
      const auto done = calibration.quantized.find(name);
      const auto stats = calibration.layers.find(name);
      QuantizedLayer ql = done != calibration.quantized.end()
                              ? std::move(done->second)
                              : quantize_layer(q, name, w, r.seed, r.group_fallback, stats == calibration.layers.end() ? nullptr : &stats->second);
      bytes += static_cast<double>(ql.matrix.storage_bytes());
      weights += static_cast<double>(w.size());
      m.quantized.emplace(name, std::move(ql.matrix));
    } else {
      m.dense.emplace(name, w);
      m.dense_rank[name] = rank == 1 ? 1 : 2;
    }
  }
  if (m.quantized.empty())
    throw InputError(fmt::format("{}: the include pattern '{}' (exclude '{}') selects no 2-D tensor", ck.path, r.include, r.exclude));
  write_quantized_safetensors(r.output, m);
  log << fmt::format("{}: {} of {} tensors quantized with {} ({:.4g} bits per weight over them), the rest fp32\n", r.output,
                     m.quantized.size(), ck.tensors.size(), q.name(), 8 * bytes / weights);
}

}  // namespace

void export_model(const ExportRequest& r, std::ostream& log) {
  const auto q = parse_quantizer(r.quantizer);
  // Never the model it reads (a GGUF file, or any file of a Hugging Face folder), through links too; an existing
  // output only with --force.
  InputFiles inputs;
  inputs.add(resolve_model_path(r.model), "the model " + r.model);
  inputs.refuse_as_output(r.output, "-o");
  std::error_code ec;
  if (!r.force && std::filesystem::exists(r.output, ec))
    throw InputError(fmt::format("-o {}: error: the file exists; pass --force to replace it, or give another name", r.output));
  if (ends_with(r.output, ".gguf")) return export_gguf(r, *q, log);
  if (ends_with(r.output, ".safetensors")) return export_safetensors(r, *q, log);
  throw InputError(fmt::format("{}: error: the output must end in .gguf (llama.cpp's formats) or .safetensors (any "
                               "quantizer, tqbench's layout)", r.output));
}

}  // namespace tqb
