#pragma once
// Hugging Face safetensors: an 8-byte little-endian header length, a JSON header naming each tensor's
// dtype, shape and byte range, then the data. F32, F16 and BF16 are read (to fp32), U8 as bytes; memory-mapped and
// bounds-checked like GGUF. A sharded checkpoint (model.safetensors.index.json) maps tensor names to
// shard files.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/matrix.hpp"
#include "models/mapped_file.hpp"

namespace tqb {

struct SafetensorInfo {
  std::string name, dtype;
  std::vector<std::uint64_t> shape;  // row-major, last dimension varies fastest
  std::uint64_t offset = 0, bytes = 0;  // absolute, in the file
};

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);  // throws ModelFileError
  const std::string& path() const { return file_->path(); }
  const std::map<std::string, SafetensorInfo>& tensors() const { return tensors_; }
  // rows = product of all but the last dimension, cols = the last (1-D: one row). F32, F16, BF16.
  Matrix tensor(const SafetensorInfo& t) const;
  const std::uint8_t* bytes(const SafetensorInfo& t) const { return file_->data() + t.offset; }
  // The header's __metadata__ (string to string).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::unique_ptr<MappedFile> file_;
  std::map<std::string, SafetensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Every tensor of a Hugging Face model folder: model.safetensors, or the shards that
// model.safetensors.index.json lists. Keys are the tensor names.
class SafetensorsModel {
 public:
  explicit SafetensorsModel(const std::string& dir);
  std::vector<std::string> names() const;
  bool has(const std::string& name) const { return where_.count(name) > 0; }
  Matrix tensor(const std::string& name) const;
  const SafetensorInfo& info(const std::string& name) const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<std::size_t, const SafetensorInfo*>> where_;
};

}  // namespace tqb
