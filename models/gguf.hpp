#pragma once
// GGUF v2/v3 reader (llama.cpp's model file format): metadata of every type, tensor infos, alignment,
// and tensors dequantized to fp32. Memory-mapped and bounds-checked (mapped_file.hpp).
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "common/matrix.hpp"
#include "models/mapped_file.hpp"

namespace tqb {

struct GgufValue;
using GgufArray = std::vector<GgufValue>;
// Integers widen to int64/uint64, floats to double; arrays hold their elements.
struct GgufValue {
  std::variant<std::uint64_t, std::int64_t, double, bool, std::string, GgufArray> value;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<std::uint64_t> dims;  // ggml order: dims[0] varies fastest (the input dimension)
  std::uint32_t type = 0;           // ggml type id (ggml_types.hpp)
  std::uint64_t offset = 0;         // absolute offset of the data in the file
  std::uint64_t bytes = 0;
  std::uint64_t elements() const;
};

class GgufFile {
 public:
  explicit GgufFile(const std::string& path);  // throws ModelFileError naming file, key or tensor, offset
  const std::string& path() const { return file_->path(); }
  std::uint32_t version() const { return version_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(const std::string& name) const;

  bool has(const std::string& key) const { return metadata_.count(key) > 0; }
  // Typed access; a missing key or a value of another type is a ModelFileError naming the key.
  std::uint64_t get_uint(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  std::vector<std::string> get_strings(const std::string& key) const;
  std::vector<double> get_floats(const std::string& key) const;
  std::vector<std::int64_t> get_ints(const std::string& key) const;

  // A tensor as a row-major fp32 matrix: rows = dims[1]·dims[2]·…, cols = dims[0].
  Matrix tensor(const GgufTensorInfo& t) const;
  // The tensor's stored bytes (t.bytes of them), in its ggml type.
  const std::uint8_t* tensor_bytes(const GgufTensorInfo& t) const { return file_->data() + t.offset; }

  // Each metadata entry's bytes as stored (key, type and value), in file order, so that a writer can copy
  // entries exactly, their integer widths included (tqbench export).
  struct RawEntry {
    std::string key;
    std::uint64_t begin = 0, end = 0;  // byte range in the file
  };
  const std::vector<RawEntry>& raw_metadata() const { return raw_metadata_; }
  const std::uint8_t* file_bytes() const { return file_->data(); }
  std::uint64_t alignment() const { return alignment_; }

 private:
  [[noreturn]] void key_error(const std::string& key, const std::string& what) const;
  std::unique_ptr<MappedFile> file_;
  std::uint32_t version_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::vector<RawEntry> raw_metadata_;
  std::uint64_t alignment_ = 32;
};

}  // namespace tqb
