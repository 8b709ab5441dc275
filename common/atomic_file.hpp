#pragma once
// Writing an output file so that it is either complete or absent: the bytes go to PATH.tmp.PID, each write
// is checked (a full disk, ENOSPC; a file-size limit, EFBIG; an I/O error), and commit() syncs the file,
// renames it over PATH and syncs the folder. Destroyed without commit() (an error, an exception), the
// temporary file is removed and PATH is untouched. Result files and exported models use it.
#include <cstddef>
#include <string>

namespace tqb {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // RunError naming the file when the temporary cannot be created
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, std::size_t n);  // RunError naming the file, the byte counts and the cause
  void pad_to(std::size_t alignment);           // zeros up to the next multiple of alignment
  std::size_t size() const { return written_; }
  const std::string& path() const { return path_; }  // the final path, not the temporary
  void commit();

 private:
  [[noreturn]] void fail(int err, std::size_t wanted);
  std::string path_, tmp_;
  int fd_ = -1;
  std::size_t written_ = 0;
};

}  // namespace tqb
