#include "models/mapped_file.hpp"

#include <algorithm>

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace tqb {

void model_file_error(const std::string& path, std::size_t offset, const std::string& what) {
  throw ModelFileError(fmt::format("{}: error at byte {}: {}", path, offset, what));
}

void check_disjoint(const std::string& path, std::vector<TensorBytes> ranges) {
  std::sort(ranges.begin(), ranges.end(), [](const TensorBytes& a, const TensorBytes& b) { return a.offset < b.offset; });
  for (std::size_t i = 1; i < ranges.size(); ++i) {
    const TensorBytes &a = ranges[i - 1], &b = ranges[i];
    if (b.offset < a.offset + a.bytes)
      model_file_error(path, b.offset, fmt::format("tensor '{}' (bytes [{}, {})) overlaps tensor '{}' (bytes [{}, {}))",
                                                   *b.name, b.offset, b.offset + b.bytes, *a.name, a.offset,
                                                   a.offset + a.bytes));
  }
}

MappedFile::MappedFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw ModelFileError(fmt::format("{}: error: cannot open: {}", path, std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw ModelFileError(fmt::format("{}: error: not a regular file", path));
  }
  size_ = static_cast<std::size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      throw ModelFileError(fmt::format("{}: error: cannot map: {}", path, std::strerror(errno)));
    }
    data_ = static_cast<const std::uint8_t*>(p);
  }
  ::close(fd);
}

void MappedFile::release(std::uint64_t offset, std::uint64_t bytes) const {
  if (!data_ || !contains(offset, bytes)) return;
  const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t begin = (offset + page - 1) / page * page, end = (offset + bytes) / page * page;
  if (end > begin) ::madvise(const_cast<std::uint8_t*>(data_) + begin, end - begin, MADV_DONTNEED);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<std::uint8_t*>(data_), size_);
}

std::string ByteReader::read_string(const char* what, std::uint64_t max_len) {
  const std::uint64_t n = read<std::uint64_t>(what);
  if (n > max_len) fail(fmt::format("{}: length {} is implausible (at most {})", what, n, max_len));
  need(n, what);
  std::string s(reinterpret_cast<const char*>(file_.data() + pos_), n);
  pos_ += n;
  return s;
}

}  // namespace tqb
