#include "models/gguf.hpp"

#include <fmt/format.h>

#include "models/ggml_types.hpp"

namespace tqb {
namespace {

enum : std::uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8, kArray = 9,
  kU64 = 10, kI64 = 11, kF64 = 12
};

// Smallest encoded size of a value of the type (for rejecting absurd array counts up front).
std::uint64_t min_size(std::uint32_t type) {
  switch (type) {
    case kU8: case kI8: case kBool: return 1;
    case kU16: case kI16: return 2;
    case kU32: case kI32: case kF32: return 4;
    case kString: return 8;
    case kArray: return 12;
    default: return 8;
  }
}

GgufValue read_value(ByteReader& r, std::uint32_t type, const std::string& key, int depth) {
  switch (type) {
    case kU8: return {std::uint64_t{r.read<std::uint8_t>(key.c_str())}};
    case kI8: return {std::int64_t{r.read<std::int8_t>(key.c_str())}};
    case kU16: return {std::uint64_t{r.read<std::uint16_t>(key.c_str())}};
    case kI16: return {std::int64_t{r.read<std::int16_t>(key.c_str())}};
    case kU32: return {std::uint64_t{r.read<std::uint32_t>(key.c_str())}};
    case kI32: return {std::int64_t{r.read<std::int32_t>(key.c_str())}};
    case kU64: return {r.read<std::uint64_t>(key.c_str())};
    case kI64: return {r.read<std::int64_t>(key.c_str())};
    case kF32: return {double{r.read<float>(key.c_str())}};
    case kF64: return {r.read<double>(key.c_str())};
    case kBool: {
      const std::uint8_t b = r.read<std::uint8_t>(key.c_str());
      if (b > 1) r.fail(fmt::format("metadata '{}': bool value {} is neither 0 nor 1", key, b));
      return {b == 1};
    }
    case kString: return {r.read_string(("metadata '" + key + "'").c_str())};
    case kArray: {
      if (depth > 2) r.fail(fmt::format("metadata '{}': arrays nested too deeply", key));
      const std::uint32_t elem = r.read<std::uint32_t>(key.c_str());
      const std::uint64_t n = r.read<std::uint64_t>(key.c_str());
      if (elem > kF64) r.fail(fmt::format("metadata '{}': unknown array element type {}", key, elem));
      if (n > r.remaining() / min_size(elem))
        r.fail(fmt::format("metadata '{}': array of {} elements cannot fit in the {} bytes left", key, n, r.remaining()));
      GgufArray a;
      a.reserve(n);
      for (std::uint64_t i = 0; i < n; ++i) a.push_back(read_value(r, elem, key, depth + 1));
      return {std::move(a)};
    }
    default: r.fail(fmt::format("metadata '{}': unknown value type {} (valid: 0..12)", key, type));
  }
}

}  // namespace

std::uint64_t GgufTensorInfo::elements() const {
  std::uint64_t n = 1;
  for (auto d : dims) n *= d;
  return n;
}

GgufFile::GgufFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
  ByteReader r(*file_);
  const std::uint32_t magic = r.read<std::uint32_t>("magic");
  if (magic != 0x46554747u) model_file_error(path, 0, "not a GGUF file (magic is not 'GGUF')");
  version_ = r.read<std::uint32_t>("version");
  if (version_ != 2 && version_ != 3)
    model_file_error(path, 4, fmt::format("GGUF version {} is not supported (2 or 3)", version_));
  const std::uint64_t n_tensors = r.read<std::uint64_t>("tensor count");
  const std::uint64_t n_kv = r.read<std::uint64_t>("metadata count");
  // Each key/value takes at least 12 bytes and each tensor info at least 24: reject absurd counts.
  if (n_kv > r.remaining() / 12) model_file_error(path, 16, fmt::format("metadata count {} is absurd for the file size", n_kv));
  if (n_tensors > r.remaining() / 24) model_file_error(path, 8, fmt::format("tensor count {} is absurd for the file size", n_tensors));
  for (std::uint64_t i = 0; i < n_kv; ++i) {
    const std::uint64_t begin = r.offset();
    const std::string key = r.read_string("metadata key", 1 << 16);
    const std::uint32_t type = r.read<std::uint32_t>(key.c_str());
    GgufValue v = read_value(r, type, key, 0);
    if (!metadata_.emplace(key, std::move(v)).second) r.fail(fmt::format("metadata key '{}' appears twice", key));
    raw_metadata_.push_back({key, begin, r.offset()});
  }
  std::uint64_t alignment = 32;
  if (has("general.alignment")) {
    alignment = get_uint("general.alignment");
    if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > 65536)
      model_file_error(path, r.offset(), fmt::format("general.alignment {} is not a power of two up to 65536", alignment));
  }
  alignment_ = alignment;
  std::vector<std::uint64_t> relative;
  for (std::uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = r.read_string("tensor name", 1 << 16);
    const std::size_t at = r.offset();
    const std::uint32_t nd = r.read<std::uint32_t>(t.name.c_str());
    if (nd == 0 || nd > 4) model_file_error(path, at, fmt::format("tensor '{}': {} dimensions (1 to 4 are valid)", t.name, nd));
    std::uint64_t elements = 1;
    for (std::uint32_t d = 0; d < nd; ++d) {
      const std::uint64_t dim = r.read<std::uint64_t>(t.name.c_str());
      if (dim == 0 || dim > (std::uint64_t{1} << 32) || elements > (std::uint64_t{1} << 40) / dim)
        model_file_error(path, at, fmt::format("tensor '{}': dimension {} = {} is absurd", t.name, d, dim));
      elements *= dim;
      t.dims.push_back(dim);
    }
    t.type = r.read<std::uint32_t>(t.name.c_str());
    const GgmlType* type = find_ggml_type(t.type);
    if (!type)
      model_file_error(path, at, fmt::format("tensor '{}': ggml type {} is not supported (supported: {})", t.name, t.type,
                                             supported_ggml_types()));
    if (t.dims[0] % type->block != 0)
      model_file_error(path, at, fmt::format("tensor '{}': {} rows of {} are not whole {} blocks of {}", t.name,
                                             elements / t.dims[0], t.dims[0], type->name, type->block));
    t.bytes = elements / type->block * type->block_bytes;
    t.offset = r.read<std::uint64_t>(t.name.c_str());
    if (t.offset % alignment != 0)
      model_file_error(path, at, fmt::format("tensor '{}': data offset {} is not aligned to {}", t.name, t.offset, alignment));
    tensors_.push_back(std::move(t));
  }
  const std::uint64_t data_start = (r.offset() + alignment - 1) / alignment * alignment;
  for (auto& t : tensors_) {
    if (t.offset > file_->size() || !file_->contains(data_start + t.offset, t.bytes))
      model_file_error(path, data_start, fmt::format("tensor '{}': data [{}, +{}) runs past the end of the file ({} bytes)",
                                                     t.name, data_start + t.offset, t.bytes, file_->size()));
    t.offset += data_start;
  }
  std::vector<TensorBytes> ranges;
  for (const auto& t : tensors_) ranges.push_back({&t.name, t.offset, t.bytes});
  check_disjoint(path, std::move(ranges));
}

void GgufFile::key_error(const std::string& key, const std::string& what) const {
  throw ModelFileError(fmt::format("{}: error: metadata '{}': {}", path(), key, what));
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

std::uint64_t GgufFile::get_uint(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) key_error(key, "missing");
  if (const auto* u = std::get_if<std::uint64_t>(&it->second.value)) return *u;
  if (const auto* i = std::get_if<std::int64_t>(&it->second.value); i && *i >= 0) return static_cast<std::uint64_t>(*i);
  key_error(key, "expected a non-negative integer");
}

double GgufFile::get_float(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) key_error(key, "missing");
  if (const auto* d = std::get_if<double>(&it->second.value)) return *d;
  if (const auto* u = std::get_if<std::uint64_t>(&it->second.value)) return static_cast<double>(*u);
  if (const auto* i = std::get_if<std::int64_t>(&it->second.value)) return static_cast<double>(*i);
  key_error(key, "expected a number");
}

bool GgufFile::get_bool(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) key_error(key, "missing");
  if (const auto* b = std::get_if<bool>(&it->second.value)) return *b;
  key_error(key, "expected a bool");
}

std::string GgufFile::get_string(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) key_error(key, "missing");
  if (const auto* s = std::get_if<std::string>(&it->second.value)) return *s;
  key_error(key, "expected a string");
}

std::vector<std::string> GgufFile::get_strings(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) key_error(key, "missing");
  const auto* a = std::get_if<GgufArray>(&it->second.value);
  if (!a) key_error(key, "expected an array of strings");
  std::vector<std::string> out;
  out.reserve(a->size());
  for (const auto& v : *a) {
    const auto* s = std::get_if<std::string>(&v.value);
    if (!s) key_error(key, "expected an array of strings");
    out.push_back(*s);
  }
  return out;
}

std::vector<double> GgufFile::get_floats(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) key_error(key, "missing");
  const auto* a = std::get_if<GgufArray>(&it->second.value);
  if (!a) key_error(key, "expected an array of numbers");
  std::vector<double> out;
  for (const auto& v : *a) {
    if (const auto* d = std::get_if<double>(&v.value)) out.push_back(*d);
    else key_error(key, "expected an array of floats");
  }
  return out;
}

std::vector<std::int64_t> GgufFile::get_ints(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) key_error(key, "missing");
  const auto* a = std::get_if<GgufArray>(&it->second.value);
  if (!a) key_error(key, "expected an array of integers");
  std::vector<std::int64_t> out;
  for (const auto& v : *a) {
    if (const auto* i = std::get_if<std::int64_t>(&v.value)) out.push_back(*i);
    else if (const auto* u = std::get_if<std::uint64_t>(&v.value)) out.push_back(static_cast<std::int64_t>(*u));
    else key_error(key, "expected an array of integers");
  }
  return out;
}

Matrix GgufFile::tensor(const GgufTensorInfo& t) const {
  const GgmlType* type = find_ggml_type(t.type);
  const std::uint64_t cols = t.dims[0], rows = t.elements() / cols;
  Matrix m(rows, cols);
  const std::uint8_t* src = file_->data() + t.offset;
  const std::size_t row_bytes = cols / type->block * type->block_bytes;
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t r = 0; r < static_cast<std::ptrdiff_t>(rows); ++r)
    type->dequantize(src + r * row_bytes, m.row(r).data(), cols);
  file_->release(t.offset, rows * row_bytes);
  return m;
}

}  // namespace tqb
