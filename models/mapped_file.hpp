#pragma once
// Read-only memory-mapped model files and a bounds-checked reader over them. Every read checks the
// bytes are there; every failure names the file, the byte offset and what was being read, so a
// truncated, corrupt or hostile file gives an error, never an out-of-bounds read.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common/error.hpp"

namespace tqb {

// Bad model file: an InputError (exit code 2) naming the file and place.
class ModelFileError : public InputError {
 public:
  using InputError::InputError;
};

[[noreturn]] void model_file_error(const std::string& path, std::size_t offset, const std::string& what);

// One tensor's bytes in a file, absolute offsets.
struct TensorBytes {
  const std::string* name;
  std::uint64_t offset, bytes;
};
// Refuses tensors whose data overlap (one write through a dequantized copy would alias another tensor,
// and a hostile file could make every weight read the same bytes): ModelFileError naming both.
void check_disjoint(const std::string& path, std::vector<TensorBytes> ranges);

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws ModelFileError
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Checks [offset, offset + bytes) lies in the file (overflow-safe).
  bool contains(std::uint64_t offset, std::uint64_t bytes) const {
    return offset <= size_ && bytes <= size_ - offset;
  }
  // Drops the resident pages wholly inside [offset, offset + bytes) once their contents have been copied out: a
  // read again faults them back in from the file. Keeps host memory at one tensor's pages while a large model
  // streams through (an 8B checkpoint's 16 GB would otherwise stay resident after conversion). A hint: no errors.
  void release(std::uint64_t offset, std::uint64_t bytes) const;

 private:
  std::string path_;
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

class ByteReader {
 public:
  ByteReader(const MappedFile& file, std::size_t offset = 0) : file_(file), pos_(offset) {}
  template <class T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, file_.data() + pos_, sizeof(T));  // little-endian host assumed (x86-64, arm64)
    pos_ += sizeof(T);
    return v;
  }
  // A uint64 length then that many bytes; lengths above max_len are rejected before reading.
  std::string read_string(const char* what, std::uint64_t max_len = std::uint64_t{1} << 24);
  void skip(std::uint64_t n, const char* what) {
    need(n, what);
    pos_ += n;
  }
  std::size_t offset() const { return pos_; }
  std::size_t remaining() const { return file_.size() - pos_; }
  [[noreturn]] void fail(const std::string& what) const { model_file_error(file_.path(), pos_, what); }

 private:
  void need(std::uint64_t n, const char* what) {
    if (!file_.contains(pos_, n))
      fail(std::string("truncated: ") + what + " needs " + std::to_string(n) + " bytes, " +
           std::to_string(remaining()) + " left");
  }
  const MappedFile& file_;
  std::size_t pos_;
};

}  // namespace tqb
