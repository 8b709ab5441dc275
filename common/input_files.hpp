#pragma once
// What a command reads, so that what it writes is never one of them (issue 28): `run --force -o` naming the model
// the spec reads, `export -o` naming its own input, a KL-divergence base written over the corpus. Files are compared
// by device and inode, so symbolic links, hard links and other spellings of a path are seen through.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace tqb {

class InputFiles {
 public:
  // A file, or a folder (a Hugging Face model): the folder and every regular file directly in it. A path that
  // does not exist is skipped (its own reader reports it).
  void add(const std::string& path, const std::string& what);
  // InputError naming `flag`, the output and the input it is, when `output` exists and is one of the inputs.
  void refuse_as_output(const std::string& output, const std::string& flag) const;

 private:
  struct Entry {
    std::uint64_t device, inode;
    std::string path, what;
  };
  std::vector<Entry> entries_;
};

// Whether `path` starts with the HDF5 signature (a tqbench result file is HDF5 from byte 0): what `--force` may
// replace, where anything else (a model, a corpus, a spec) is refused.
bool has_hdf5_signature(const std::string& path);

}  // namespace tqb
