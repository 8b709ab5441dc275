#include "models/safetensors.hpp"

#include <fmt/format.h>

#include <Eigen/Core>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/bounded_json.hpp"
#include "common/float_format.hpp"

namespace tqb {
namespace {

std::size_t dtype_size(const std::string& d) {
  if (d == "F32") return 4;
  if (d == "F16" || d == "BF16") return 2;
  if (d == "U8") return 1;  // tqbench's quantized layout (models/quantized_safetensors): codes and side data
  return 0;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
  ByteReader r(*file_);
  const std::uint64_t n = r.read<std::uint64_t>("header length");
  if (n > r.remaining() || n > (std::uint64_t{100} << 20))
    model_file_error(path, 0, fmt::format("header length {} is larger than the file or 100 MB", n));
  const char* begin = reinterpret_cast<const char*>(file_->data() + 8);
  nlohmann::json header;
  try {
    header = parse_json(std::string_view(begin, static_cast<std::size_t>(n)), "header");
  } catch (const InputError& e) {
    model_file_error(path, 8, e.what());
  }
  if (!header.is_object()) model_file_error(path, 8, "header is not a JSON object");
  const std::uint64_t data_start = 8 + n;
  for (const auto& item : header.items()) {
    const std::string& name = item.key();  // not a structured binding: lambdas capture it (clang 14)
    const auto& v = item.value();
    if (name == "__metadata__") {
      if (!v.is_object()) model_file_error(path, 8, "__metadata__ is not a JSON object");
      for (const auto& m : v.items()) {
        if (!m.value().is_string()) model_file_error(path, 8, fmt::format("__metadata__ '{}' is not a string", m.key()));
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& what) { model_file_error(path, 8, fmt::format("tensor '{}': {}", name, what)); };
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      bad("needs dtype, shape and data_offsets");
    SafetensorInfo t;
    t.name = name;
    if (!v["dtype"].is_string()) bad("dtype is not a string");
    t.dtype = v["dtype"].get<std::string>();
    const std::size_t es = dtype_size(t.dtype);
    if (es == 0) bad(fmt::format("dtype {} is not supported (F32, F16, BF16, U8)", t.dtype));
    if (!v["shape"].is_array() || v["shape"].size() > 4) bad("shape is not a list of at most 4 dimensions");
    std::uint64_t elements = 1;
    for (const auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) bad("shape holds a non-integer");
      const std::uint64_t dim = d.get<std::uint64_t>();
      if (dim == 0 || dim > (std::uint64_t{1} << 32) || elements > (std::uint64_t{1} << 40) / dim) bad("absurd shape");
      elements *= dim;
      t.shape.push_back(dim);
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      bad("data_offsets is not [begin, end]");
    const std::uint64_t b = off[0].get<std::uint64_t>(), e = off[1].get<std::uint64_t>();
    if (e < b || e - b != elements * es)
      bad(fmt::format("data_offsets [{}, {}) hold {} bytes, but shape and dtype need {}", b, e, e - b, elements * es));
    if (!file_->contains(data_start + b, e - b))
      bad(fmt::format("data [{}, {}) runs past the end of the file ({} bytes)", data_start + b, data_start + e, file_->size()));
    t.offset = data_start + b;
    t.bytes = e - b;
    tensors_.emplace(name, std::move(t));
  }
  std::vector<TensorBytes> ranges;
  for (const auto& [name, t] : tensors_) ranges.push_back({&t.name, t.offset, t.bytes});
  check_disjoint(path, std::move(ranges));
}

Matrix SafetensorsFile::tensor(const SafetensorInfo& t) const {
  const std::uint64_t cols = t.shape.empty() ? 1 : t.shape.back();
  std::uint64_t rows = 1;
  for (std::size_t i = 0; i + 1 < t.shape.size(); ++i) rows *= t.shape[i];
  if (t.dtype == "U8")
    throw ModelFileError(fmt::format("{}: error: tensor '{}' holds U8 bytes (quantized codes), not weights", path(), t.name));
  Matrix m(rows, cols);
  const std::uint8_t* src = file_->data() + t.offset;
  const std::size_t n = rows * cols;
  if (t.dtype == "F32") {
    std::memcpy(m.data(), src, n * 4);
  } else {
    const bool half = t.dtype == "F16";
    // In parallel: an 8B model's 16 GB of bf16 take a minute on one core.
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(n); ++i) {
      std::uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      m.data()[i] = half ? fp16_value(h) : bf16_value(h);
    }
  }
  file_->release(t.offset, t.bytes);
  return m;
}

SafetensorsModel::SafetensorsModel(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path single = fs::path(dir) / "model.safetensors";
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  std::vector<std::string> shards;
  if (fs::exists(index)) {
    std::ifstream in(index);
    nlohmann::json j;
    try {
      j = parse_json(in, index.string());
    } catch (const InputError& e) {
      throw ModelFileError(e.what());
    }
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw ModelFileError(fmt::format("{}: error: no 'weight_map' object", index.string()));
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) throw ModelFileError(fmt::format("{}: error: weight_map['{}'] is not a file name", index.string(), name));
      const std::string f = file.get<std::string>();
      if (f.find('/') != std::string::npos || f.find("..") != std::string::npos)
        throw ModelFileError(fmt::format("{}: error: shard '{}' is not a plain file name", index.string(), f));
      if (std::find(shards.begin(), shards.end(), f) == shards.end()) shards.push_back(f);
    }
  } else if (fs::exists(single)) {
    shards.push_back("model.safetensors");
  } else {
    throw ModelFileError(fmt::format("{}: error: no model.safetensors or model.safetensors.index.json", dir));
  }
  for (const auto& s : shards) {
    files_.push_back(std::make_unique<SafetensorsFile>((fs::path(dir) / s).string()));
    for (const auto& [name, info] : files_.back()->tensors()) where_[name] = {files_.size() - 1, &info};
  }
}

std::vector<std::string> SafetensorsModel::names() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : where_) out.push_back(k);
  return out;
}

Matrix SafetensorsModel::tensor(const std::string& name) const {
  const auto& [f, info] = where_.at(name);
  return files_[f]->tensor(*info);
}

const SafetensorInfo& SafetensorsModel::info(const std::string& name) const { return *where_.at(name).second; }

}  // namespace tqb
