#include "harness/result_journal.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/error.hpp"
#include "common/fnv1a.hpp"
#include "common/printable.hpp"

namespace tqb {
namespace {

constexpr std::uint32_t kMagic = 0x4A425154;  // "TQBJ" little-endian
constexpr std::uint8_t kHeader = 0, kRow = 1;

template <class T>
void put(std::string& s, T v) { s.append(reinterpret_cast<const char*>(&v), sizeof(v)); }
void put_text(std::string& s, const std::string& t) {
  put(s, static_cast<std::uint32_t>(t.size()));
  s += t;
}

}  // namespace

std::string journal_record(const std::string& payload) {
  std::string r;
  put(r, kMagic);
  put(r, static_cast<std::uint32_t>(payload.size()));
  put(r, fnv1a(payload.data(), payload.size()));
  return r + payload;
}

std::string journal_header_payload(const std::vector<Column>& columns, const std::string& spec_text) {
  std::string h;
  put(h, kHeader);
  put(h, static_cast<std::uint32_t>(columns.size()));
  for (const auto& c : columns) {
    put(h, static_cast<std::uint8_t>(c.type));
    put_text(h, c.name);
  }
  put(h, fnv1a(spec_text.data(), spec_text.size()));  // the spec this journal's rows belong to
  return h;
}

std::string journal_row_payload(const std::vector<Cell>& row) {
  std::string p;
  put(p, kRow);
  put(p, static_cast<std::uint32_t>(row.size()));
  for (const auto& c : row) {
    if (const auto* i = std::get_if<std::int64_t>(&c)) {
      put(p, std::uint8_t{0});
      put(p, *i);
    } else if (const auto* d = std::get_if<double>(&c)) {
      put(p, std::uint8_t{1});
      put(p, *d);
    } else {
      put(p, std::uint8_t{2});
      put_text(p, std::get<std::string>(c));
    }
  }
  return p;
}

namespace {

struct Reader {
  const std::string& s;
  std::size_t at = 0;
  bool ok = true;
  template <class T>
  T get() {
    T v{};
    if (at + sizeof(T) > s.size()) { ok = false; return v; }
    std::memcpy(&v, s.data() + at, sizeof(T));
    at += sizeof(T);
    return v;
  }
  std::string text() {
    const auto n = get<std::uint32_t>();
    if (!ok || at + n > s.size()) { ok = false; return {}; }
    std::string t = s.substr(at, n);
    at += n;
    return t;
  }
};

}  // namespace

std::string journal_path(const std::string& result_path) { return result_path + ".journal"; }

ResultJournal::ResultJournal(const std::string& result_path, const std::vector<Column>& columns, const std::string& spec_text)
    : path_(journal_path(result_path)), last_sync_(std::chrono::steady_clock::now()) {
  header_ = journal_record(journal_header_payload(columns, spec_text));
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw RunError(fmt::format("{}: cannot create: {}", path_, std::strerror(errno)));
  write_all(header_);
  if (::fsync(fd_) != 0) throw RunError(fmt::format("{}: cannot sync: {}", path_, std::strerror(errno)));
}

ResultJournal::~ResultJournal() {
  if (fd_ >= 0) ::close(fd_);
}

void ResultJournal::write_all(const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t k = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (k > 0) {
      done += static_cast<std::size_t>(k);
    } else if (k == 0 || errno != EINTR) {
      const int err = k == 0 ? EIO : errno;
      throw RunError(fmt::format("{}: cannot write {} bytes ({} written): {}{}", path_, bytes.size(), done, std::strerror(err),
                                 err == ENOSPC || err == EDQUOT ? " (the disk is full)" : ""));
    }
  }
}

void ResultJournal::append(const std::vector<Cell>& row) {
  write_all(journal_record(journal_row_payload(row)));  // one write: in the page cache, so a kill -9 after it loses nothing
  const auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - last_sync_).count() >= kSyncSeconds) {
    if (::fdatasync(fd_) != 0) throw RunError(fmt::format("{}: cannot sync: {}", path_, std::strerror(errno)));
    last_sync_ = now;
  }
}

void ResultJournal::clear() {
  if (::ftruncate(fd_, 0) != 0 || ::lseek(fd_, 0, SEEK_SET) != 0)
    throw RunError(fmt::format("{}: cannot truncate: {}", path_, std::strerror(errno)));
  write_all(header_);
  if (::fsync(fd_) != 0) throw RunError(fmt::format("{}: cannot sync: {}", path_, std::strerror(errno)));
}

void ResultJournal::remove() {
  ::close(fd_);
  fd_ = -1;
  std::remove(path_.c_str());
}

void add_journal_rows(const std::string& result_path, ResultTable& t) {
  const std::string path = journal_path(result_path);
  std::ifstream in(path, std::ios::binary);
  if (!in) return;
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string bytes = ss.str();
  std::vector<int> map;  // journal column -> table column (-1: not in the file)
  // The point column, when the file has an integer one (merge and read check a file's own columns).
  int point = t.column_index("point");
  if (point >= 0 && t.columns[static_cast<std::size_t>(point)].type != ColumnType::integer) point = -1;
  std::set<std::int64_t> have;
  if (point >= 0)
    for (const auto& r : t.rows)
      if (const auto* i = std::get_if<std::int64_t>(&r[static_cast<std::size_t>(point)])) have.insert(*i);
  // Sweep points run 0 … points_total − 1: a journal row outside that range was not written by this run.
  std::int64_t points_total = -1;
  const std::string* spec_text = nullptr;
  if (const Cell* c = t.attribute("spec_text")) spec_text = std::get_if<std::string>(c);
  if (const Cell* c = t.attribute("points_total"))
    if (const auto* i = std::get_if<std::int64_t>(c)) points_total = *i;
  auto refuse = [&](const std::string& what) {
    return InputError(fmt::format("{}: error: {}; the journal is damaged or belongs to another run (remove it, or pass --force to "
                                  "start afresh)", path, what));
  };
  std::size_t at = 0, row_index = 0;
  bool header = false;
  while (at + 16 <= bytes.size()) {
    std::uint32_t magic, n;
    std::uint64_t sum;
    std::memcpy(&magic, bytes.data() + at, 4);
    std::memcpy(&n, bytes.data() + at + 4, 4);
    std::memcpy(&sum, bytes.data() + at + 8, 8);
    if (magic != kMagic || at + 16 + n > bytes.size() || fnv1a(bytes.data() + at + 16, n) != sum) break;  // torn or corrupt
    const std::string payload = bytes.substr(at + 16, n);
    at += 16 + n;
    Reader r{payload};
    const auto kind = r.get<std::uint8_t>();
    if (kind == kHeader) {
      const auto cols = r.get<std::uint32_t>();
      map.clear();
      std::set<std::string> names;
      for (std::uint32_t j = 0; j < cols && r.ok; ++j) {
        const auto type = static_cast<ColumnType>(r.get<std::uint8_t>());
        const std::string name = r.text();
        if (!r.ok) break;
        if (!names.insert(name).second) throw refuse(fmt::format("column '{}' appears twice in its header", printable(name)));
        const int k = t.column_index(name);
        if (k >= 0 && t.columns[static_cast<std::size_t>(k)].type != type)
          throw InputError(fmt::format("{}: error: column '{}' has another type than in {}; the journal belongs to another run "
                                       "(remove it, or pass --force to start afresh)", path, name, result_path));
        map.push_back(k);
      }
      header = r.ok;
      const std::uint64_t spec_hash = r.get<std::uint64_t>();
      if (header && r.ok && spec_text && spec_hash != fnv1a(spec_text->data(), spec_text->size()))
        throw refuse(fmt::format("its rows were written by a run of another spec than {}'s", result_path));
      if (header && point >= 0 && std::find(map.begin(), map.end(), point) == map.end())
        throw refuse(fmt::format("its header has no 'point' column, which {} has", result_path));
      continue;
    }
    if (kind != kRow || !header) break;
    const auto cells = r.get<std::uint32_t>();
    if (cells != map.size()) break;
    std::vector<Cell> row;
    for (const auto& c : t.columns) row.push_back(missing_cell(c.type));
    bool corrupt = false;
    std::string invalid;  // a well-formed record that this run cannot have written: the valid prefix ends before it
    for (std::uint32_t j = 0; j < cells && r.ok; ++j) {
      const auto tag = r.get<std::uint8_t>();
      Cell v;
      if (tag == 0) v = r.get<std::int64_t>();
      else if (tag == 1) v = r.get<double>();
      else if (tag == 2) v = r.text();
      else corrupt = true;
      if (corrupt) break;
      if (map[j] < 0) continue;
      const Column& c = t.columns[static_cast<std::size_t>(map[j])];
      const ColumnType held = tag == 0 ? ColumnType::integer : tag == 1 ? ColumnType::real : ColumnType::text;
      if (held != c.type) {
        invalid = fmt::format("row {} holds {} in the {} column '{}'", row_index, column_type_name(held), column_type_name(c.type), c.name);
        break;
      }
      row[static_cast<std::size_t>(map[j])] = std::move(v);
    }
    if (!r.ok || corrupt) break;
    if (invalid.empty() && point >= 0) {
      const std::int64_t i = std::get<std::int64_t>(row[static_cast<std::size_t>(point)]);  // typed: checked above
      if (i < 0 || (points_total >= 0 && i >= points_total))
        invalid = points_total >= 0 ? fmt::format("row {} has point {}, outside this sweep's 0..{}", row_index, i, points_total - 1)
                                    : fmt::format("row {} has point {} (points are 0 or more)", row_index, i);
    }
    if (!invalid.empty()) {
      std::fprintf(stderr, "warning: %s: %s; the rows before it are kept, it and the rest ignored\n", path.c_str(), invalid.c_str());
      break;
    }
    ++row_index;
    // Already folded (an interrupted fold): one copy.
    if (point >= 0 && !have.insert(std::get<std::int64_t>(row[static_cast<std::size_t>(point)])).second) continue;
    t.rows.push_back(std::move(row));
  }
}

}  // namespace tqb
