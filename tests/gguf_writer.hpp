#pragma once
// A minimal GGUF writer for tests: builds small valid files that tests then corrupt.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace tqb::test {

class GgufWriter {
 public:
  void kv_string(const std::string& k, const std::string& v) { key(k, 8); str(v); ++n_kv_; }
  void kv_u32(const std::string& k, std::uint32_t v) { key(k, 4); pod(v); ++n_kv_; }
  void kv_f32(const std::string& k, float v) { key(k, 6); pod(v); ++n_kv_; }
  void kv_bool(const std::string& k, bool v) { key(k, 7); pod(static_cast<std::uint8_t>(v)); ++n_kv_; }
  void kv_strings(const std::string& k, const std::vector<std::string>& v) {
    key(k, 9);
    pod(std::uint32_t{8});
    pod(static_cast<std::uint64_t>(v.size()));
    for (const auto& s : v) str(s);
    ++n_kv_;
  }
  void kv_floats(const std::string& k, const std::vector<float>& v) {
    key(k, 9);
    pod(std::uint32_t{6});
    pod(static_cast<std::uint64_t>(v.size()));
    for (float f : v) pod(f);
    ++n_kv_;
  }
  // An F32 tensor (dims in ggml order).
  void tensor_f32(const std::string& name, std::vector<std::uint64_t> dims, const std::vector<float>& data) {
    tensors_.push_back({name, std::move(dims), 0, {}});
    tensors_.back().bytes.resize(data.size() * 4);
    std::memcpy(tensors_.back().bytes.data(), data.data(), data.size() * 4);
  }
  void tensor_raw(const std::string& name, std::vector<std::uint64_t> dims, std::uint32_t type, std::vector<std::uint8_t> bytes) {
    tensors_.push_back({name, std::move(dims), type, std::move(bytes)});
  }
  std::string bytes() const {
    std::string out;
    auto put = [&](const void* p, std::size_t n) { out.append(static_cast<const char*>(p), n); };
    const std::uint32_t magic = 0x46554747u, version = 3;
    const std::uint64_t nt = tensors_.size(), nkv = n_kv_;
    put(&magic, 4);
    put(&version, 4);
    put(&nt, 8);
    put(&nkv, 8);
    out += kv_;
    std::uint64_t offset = 0;
    std::vector<std::uint64_t> offsets;
    for (const auto& t : tensors_) {
      const std::uint64_t len = t.name.size();
      put(&len, 8);
      out += t.name;
      const std::uint32_t nd = static_cast<std::uint32_t>(t.dims.size());
      put(&nd, 4);
      for (auto d : t.dims) put(&d, 8);
      put(&t.type, 4);
      put(&offset, 8);
      offsets.push_back(offset);
      offset += (t.bytes.size() + 31) / 32 * 32;
    }
    while (out.size() % 32) out += '\0';
    for (const auto& t : tensors_) {
      out.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
      while (out.size() % 32) out += '\0';
    }
    return out;
  }

 private:
  struct T {
    std::string name;
    std::vector<std::uint64_t> dims;
    std::uint32_t type;
    std::vector<std::uint8_t> bytes;
  };
  template <class P>
  void pod(P v) { kv_.append(reinterpret_cast<const char*>(&v), sizeof(v)); }
  void str(const std::string& s) { pod(static_cast<std::uint64_t>(s.size())); kv_ += s; }
  void key(const std::string& k, std::uint32_t type) { str(k); pod(type); }
  std::string kv_;
  std::uint64_t n_kv_ = 0;
  std::vector<T> tensors_;
};

}  // namespace tqb::test
