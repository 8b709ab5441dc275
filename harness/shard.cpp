#include "harness/shard.hpp"

#include <fmt/format.h>

#include "common/error.hpp"
#include "common/printable.hpp"

namespace tqb {

std::string Shard::text() const { return fmt::format("{}/{}", index, count); }

Shard parse_shard(const std::string& text) {
  Shard s;
  const auto slash = text.find('/');
  auto number = [&](const std::string& part, std::size_t& out) {
    if (part.empty() || part.size() > 6 || part.find_first_not_of("0123456789") != std::string::npos) return false;
    out = std::stoul(part);
    return true;
  };
  if (slash == std::string::npos || !number(text.substr(0, slash), s.index) || !number(text.substr(slash + 1), s.count) ||
      s.count == 0 || s.count > 100000 || s.index >= s.count)
    throw InputError(fmt::format("--shard '{}': expected I/N with 0 <= I < N <= 100000 (e.g. 0/4 ... 3/4; Slurm's "
                                 "SLURM_ARRAY_TASK_ID with --array=0-(N-1))", printable(text)));
  return s;
}

std::string shard_file_name(const std::string& experiment, const std::string& index, std::size_t count) {
  return fmt::format("{}.shard-{}-of-{}.h5", experiment, index, count);
}

}  // namespace tqb
