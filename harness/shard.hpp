#pragma once
// Shards of a sweep (`run --shard I/N`, harness/slurm.hpp): which points a shard owns and its file's name.
#include <cstddef>
#include <string>

namespace tqb {

// One shard of a sweep (`--shard I/N`): the points whose index is I modulo N, into a file of its own;
// `tqbench merge` joins the N files (harness/merge.hpp). Round-robin, so that every shard gets a share of
// each data point's quantizers and of each repeat.
struct Shard {
  std::size_t index = 0, count = 1;  // 0 <= index < count
  bool active() const { return count > 1; }
  bool owns(std::size_t point) const { return point % count == index; }
  std::string text() const;  // "I/N"
};
// "I/N" with 0 <= I < N <= 100000; InputError naming the flag otherwise.
Shard parse_shard(const std::string& text);

// A shard's file name, "<experiment>.shard-<index>-of-<count>.h5"; `index` is text so that a job script can
// put a shell variable there (harness/slurm.cpp).
std::string shard_file_name(const std::string& experiment, const std::string& index, std::size_t count);

}  // namespace tqb
