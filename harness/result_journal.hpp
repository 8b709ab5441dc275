#pragma once
// The append-only journal beside a result file (RESULT.h5.journal): each finished point's row is appended
// as one checksummed record, so a point costs one small write however many points came before, instead of
// rewriting the whole HDF5 file (issue 17: 2,800 points took 32 s and the time per point grew with the
// file). The runner folds the journal into the HDF5 file (atomically, as before) at the start, every
// kFoldSeconds and at the end, then clears it. Readers (read_result_file: show, merge, resume) add the
// journal's rows to the file's, so nothing finished is ever invisible:
//   - kill -9 at any moment loses no finished point: a row is in the journal (the kernel's page cache)
//     before the next point starts; a torn last record fails its checksum and is ignored;
//   - a machine crash loses at most the last kSyncSeconds of rows (group commit: fdatasync at most that often);
//   - a fold interrupted after the HDF5 file was replaced but before the journal was cleared leaves rows in
//     both; readers and the next run keep one copy (same point index), and the next run's fold repairs it.
// Record: u32 magic 'TQBJ', u32 payload bytes, u64 FNV-1a of the payload, payload. The first record holds
// the column names and types; the others one row each (cells tagged int64, double or text).
#include <chrono>
#include <string>
#include <vector>

#include "harness/store.hpp"

namespace tqb {

inline constexpr double kFoldSeconds = 30.0;
inline constexpr double kSyncSeconds = 0.1;

std::string journal_path(const std::string& result_path);

class ResultJournal {
 public:
  // Opens (creating) RESULT.h5.journal for appending rows of `columns`; starts it afresh (header only).
  // spec_text: the result file's spec (its spec_text attribute); its hash goes into the header, so that a journal
  // left by a run of another spec is refused rather than folded into this file.
  ResultJournal(const std::string& result_path, const std::vector<Column>& columns, const std::string& spec_text = "");
  ~ResultJournal();
  ResultJournal(const ResultJournal&) = delete;
  ResultJournal& operator=(const ResultJournal&) = delete;
  // RunError naming the file on a failed write (a full disk): the point is not recorded.
  void append(const std::vector<Cell>& row);
  // After the rows were folded into the result file: empty the journal (header only), durably.
  void clear();
  // At the end of a run, after the final fold: the journal is removed.
  void remove();

 private:
  void write_all(const std::string& bytes);
  std::string path_;
  std::string header_;
  int fd_ = -1;
  std::chrono::steady_clock::time_point last_sync_;
};

// The record format, for the writer above and for tests and fuzzers that forge journals (tests/fuzz/fuzz_journal.cpp):
// a record frames a payload (magic, length, checksum); the payloads are the header (column types and names, the spec's
// hash) and a row (cells tagged by type).
std::string journal_record(const std::string& payload);
std::string journal_header_payload(const std::vector<Column>& columns, const std::string& spec_text);
std::string journal_row_payload(const std::vector<Cell>& row);

// Rows recorded in RESULT.h5.journal whose columns match `t`'s (by name and type), appended to t.rows
// unless a row with the same point index is already there. Stops at the first torn or corrupt record.
// InputError naming the journal when its columns conflict with the file's.
void add_journal_rows(const std::string& result_path, ResultTable& t);

}  // namespace tqb
