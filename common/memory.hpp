#pragma once
// Resident memory of this process (Linux /proc): the current size and the high-water mark, which can
// be reset so that each sweep point reports its own peak.
#include <cstddef>
#include <string>

namespace tqb {

std::size_t current_rss_bytes();  // VmRSS; 0 when unknown
std::size_t peak_rss_bytes();     // VmHWM; 0 when unknown
// Resets the high-water mark to the current RSS (writes 5 to /proc/self/clear_refs, Linux >= 4.0), after handing
// freed heap memory back to the system (malloc_trim), so that the peak starts from what is in use.
// Returns false where that is not possible; the peak then covers the whole process so far.
bool reset_peak_rss();

// Keeps freed blocks of up to 1 GiB in the heap for the next allocation instead of giving each back to the system
// (glibc otherwise maps every block above 32 MiB afresh). Why: loading and quantizing a model allocates a few
// buffers of each layer's size per layer (an 8B model: about 100 GB in all), and fresh pages cost a fault each:
// 3.8 GB/s on the 2-core development VM against 84 GB/s for reused ones, most of an 8B quantization's time on the
// GPU machine's host. Called once at the start of the programs (tqbench); a no-op off glibc.
void reuse_freed_memory();

// Bytes this process could still allocate without swapping: /proc/meminfo's MemAvailable, or less where
// a cgroup v2 memory.max leaves less headroom (containers, Slurm jobs) or RLIMIT_AS is lower; 0 when
// unknown.
std::size_t available_memory_bytes();

// "1.5 GiB", "640 MiB", "12 KiB", "100 B": for messages.
std::string format_bytes(double bytes);

}  // namespace tqb
