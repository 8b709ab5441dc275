#include "harness/store.hpp"

#include <fmt/format.h>
#include <hdf5.h>

#include <cmath>
#include <algorithm>
#include <cstring>
#include <exception>
#include <cstdio>
#include <filesystem>
#include <functional>

#include "common/atomic_file.hpp"
#include "common/error.hpp"
#include "harness/result_journal.hpp"

namespace tqb {

int ResultTable::column_index(const std::string& name) const {
  for (std::size_t i = 0; i < columns.size(); ++i)
    if (columns[i].name == name) return static_cast<int>(i);
  return -1;
}

const Cell* ResultTable::attribute(const std::string& name) const {
  for (const auto& [k, v] : attributes)
    if (k == name) return &v;
  return nullptr;
}

Cell missing_cell(ColumnType t) {
  switch (t) {
    case ColumnType::integer: return std::int64_t{-1};
    case ColumnType::real: return std::nan("");
    case ColumnType::text: return std::string();
  }
  return std::string();
}

const char* column_type_name(ColumnType t) {
  switch (t) {
    case ColumnType::integer: return "integer";
    case ColumnType::real: return "real";
    case ColumnType::text: return "text";
  }
  return "?";
}

std::string cell_text(const Cell& c, bool full) {
  if (const auto* i = std::get_if<std::int64_t>(&c)) return fmt::format("{}", *i);
  if (const auto* d = std::get_if<double>(&c)) {
    if (std::isnan(*d)) return full ? "nan" : "-";
    return full ? fmt::format("{}", *d) : fmt::format("{:.6g}", *d);
  }
  return std::get<std::string>(c);
}

std::string cell_display(const Cell& c, int digits) {
  if (const auto* d = std::get_if<double>(&c); d && !std::isnan(*d)) return fmt::format("{:.{}g}", *d, std::max(1, digits));
  return cell_text(c);
}

namespace {

// Owns an HDF5 identifier.
class H5Id {
 public:
  H5Id(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  ~H5Id() {
    if (id_ >= 0) close_(id_);
  }
  operator hid_t() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

// The innermost message of the current HDF5 error stack (the library's own printing is turned off).
std::string hdf5_error() {
  std::string msg;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_DOWNWARD,
      [](unsigned n, const H5E_error2_t* e, void* data) -> herr_t {
        auto* m = static_cast<std::string*>(data);
        if (e->desc && *e->desc) *m = e->desc;  // keep the deepest description
        return 0;
      },
      &msg);
  return msg.empty() ? "unknown HDF5 error" : msg;
}

void silence_hdf5() {
  static const bool done = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

H5Id text_type() {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  return H5Id(t, H5Tclose);
}

// --- writing ---

void check(herr_t rc, const std::string& what) {
  if (rc < 0) throw RunError(fmt::format("{}: {}", what, hdf5_error()));
}

void write_attr(hid_t obj, const std::string& name, const Cell& value, const std::string& file) {
  H5Id space(H5Screate(H5S_SCALAR), H5Sclose);
  const std::string what = fmt::format("{}: writing attribute '{}'", file, name);
  if (const auto* i = std::get_if<std::int64_t>(&value)) {
    H5Id a(H5Acreate2(obj, name.c_str(), H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    if (!a.ok()) check(-1, what);
    check(H5Awrite(a, H5T_NATIVE_INT64, i), what);
  } else if (const auto* d = std::get_if<double>(&value)) {
    H5Id a(H5Acreate2(obj, name.c_str(), H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    if (!a.ok()) check(-1, what);
    check(H5Awrite(a, H5T_NATIVE_DOUBLE, d), what);
  } else {
    H5Id t = text_type();
    H5Id a(H5Acreate2(obj, name.c_str(), t, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    if (!a.ok()) check(-1, what);
    const char* p = std::get<std::string>(value).c_str();
    check(H5Awrite(a, t, &p), what);
  }
}

void write_string_array_attr(hid_t obj, const std::string& name, const std::vector<std::string>& items,
                             const std::string& file) {
  const hsize_t n = items.size();
  H5Id space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  H5Id t = text_type();
  H5Id a(H5Acreate2(obj, name.c_str(), t, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  const std::string what = fmt::format("{}: writing attribute '{}'", file, name);
  if (!a.ok()) check(-1, what);
  std::vector<const char*> ptrs;
  for (const auto& s : items) ptrs.push_back(s.c_str());
  check(H5Awrite(a, t, ptrs.data()), what);
}

// A dataset transfer list for a column of n cells. HDF5's type-conversion buffer is 1 MiB by default, allocated and zeroed
// for every column read or written: sized to the column instead (a 40-column file cost 40 MiB of memset per write; under
// ASan that was 60 of fuzz_shards' 65 ms per input).
H5Id column_transfer(hsize_t n) {
  const hid_t xfer = H5Pcreate(H5P_DATASET_XFER);
  if (xfer >= 0) H5Pset_buffer(xfer, std::clamp<std::size_t>(static_cast<std::size_t>(n) * 32, 4096, std::size_t{1} << 20), nullptr, nullptr);
  return H5Id(xfer >= 0 ? xfer : H5P_DEFAULT, xfer >= 0 ? H5Pclose : [](hid_t) -> herr_t { return 0; });
}

void write_column(hid_t group, const ResultTable& t, std::size_t j, const std::string& file) {
  const Column& c = t.columns[j];
  const hsize_t n = t.rows.size();
  H5Id space(H5Screate_simple(1, &n, nullptr), H5Sclose);
  const std::string what = fmt::format("{}: writing column '{}'", file, c.name);
  auto cell = [&](std::size_t i) -> const Cell& { return t.rows[i][j]; };
  H5Id xfer = column_transfer(n);
  auto create = [&](hid_t type) {
    hid_t d = H5Dcreate2(group, c.name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (d < 0) check(-1, what);
    return H5Id(d, H5Dclose);
  };
  if (c.type == ColumnType::integer) {
    std::vector<std::int64_t> v(n);
    for (std::size_t i = 0; i < n; ++i) {
      const auto* x = std::get_if<std::int64_t>(&cell(i));
      v[i] = x ? *x : -1;
    }
    H5Id d = create(H5T_STD_I64LE);
    if (n) check(H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, xfer, v.data()), what);
    write_attr(d, "role", c.role, file);
  } else if (c.type == ColumnType::real) {
    std::vector<double> v(n);
    for (std::size_t i = 0; i < n; ++i) {
      const auto* x = std::get_if<double>(&cell(i));
      const auto* k = std::get_if<std::int64_t>(&cell(i));
      v[i] = x ? *x : (k ? static_cast<double>(*k) : std::nan(""));
    }
    H5Id d = create(H5T_IEEE_F64LE);
    if (n) check(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, xfer, v.data()), what);
    write_attr(d, "role", c.role, file);
  } else {
    std::vector<std::string> keep(n);
    std::vector<const char*> ptrs(n);
    for (std::size_t i = 0; i < n; ++i) {
      keep[i] = cell_text(cell(i), true);
      ptrs[i] = keep[i].c_str();
    }
    H5Id type = text_type();
    H5Id d = create(type);
    if (n) check(H5Dwrite(d, type, H5S_ALL, H5S_ALL, xfer, ptrs.data()), what);
    write_attr(d, "role", c.role, file);
  }
  H5Id d(H5Dopen2(group, c.name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!c.description.empty()) write_attr(d, "description", c.description, file);
  if (!c.direction.empty()) write_attr(d, "direction", c.direction, file);
}

// --- reading ---

[[noreturn]] void bad_file(const std::string& path, const std::string& msg) {
  throw InputError(fmt::format("{}: error: {}", path, msg));
}

std::string read_text_scalar(hid_t attr_or_dataset, hid_t type, bool is_attr, const std::string& path) {
  if (H5Tis_variable_str(type) > 0) {
    H5Id mem = text_type();
    char* p = nullptr;
    herr_t rc = is_attr ? H5Aread(attr_or_dataset, mem, &p) : H5Dread(attr_or_dataset, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, &p);
    if (rc < 0) bad_file(path, "unreadable text: " + hdf5_error());
    std::string s = p ? p : "";
    H5free_memory(p);
    return s;
  }
  const std::size_t size = H5Tget_size(type);
  if (size == 0 || size > (1u << 24)) bad_file(path, "text attribute of implausible size");
  std::string buf(size, '\0');
  H5Id mem(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(mem, size);
  herr_t rc = is_attr ? H5Aread(attr_or_dataset, mem, buf.data()) : H5Dread(attr_or_dataset, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data());
  if (rc < 0) bad_file(path, "unreadable text: " + hdf5_error());
  buf.resize(std::strlen(buf.c_str()));
  return buf;
}

struct AttrCollector {
  std::string path;
  std::vector<std::pair<std::string, Cell>> out;
  std::exception_ptr error;  // an exception may not unwind through HDF5's C frames: kept, rethrown after
};

herr_t collect_attr_unguarded(hid_t loc, const char* name, AttrCollector* c);

// The H5Aiterate2 callback: nothing escapes it. An exception (e.g. an implausible text size) stops the
// iteration and is rethrown by read_attrs once HDF5 has returned (unwinding through HDF5's C frames
// crashed at exit inside its shutdown).
herr_t collect_attr(hid_t loc, const char* name, const H5A_info_t*, void* data) {
  auto* c = static_cast<AttrCollector*>(data);
  try {
    return collect_attr_unguarded(loc, name, c);
  } catch (...) {
    c->error = std::current_exception();
    return -1;
  }
}

herr_t collect_attr_unguarded(hid_t loc, const char* name, AttrCollector* c) {
  H5Id a(H5Aopen(loc, name, H5P_DEFAULT), H5Aclose);
  if (!a.ok()) return -1;
  H5Id type(H5Aget_type(a), H5Tclose);
  H5Id space(H5Aget_space(a), H5Sclose);
  if (H5Sget_simple_extent_npoints(space) != 1) return 0;  // arrays (column_order) are read separately
  switch (H5Tget_class(type)) {
    case H5T_STRING: c->out.emplace_back(name, read_text_scalar(a, type, true, c->path)); break;
    case H5T_INTEGER: {
      std::int64_t v = 0;
      if (H5Aread(a, H5T_NATIVE_INT64, &v) < 0) return -1;
      c->out.emplace_back(name, v);
      break;
    }
    case H5T_FLOAT: {
      double v = 0;
      if (H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0) return -1;
      c->out.emplace_back(name, v);
      break;
    }
    default: break;
  }
  return 0;
}

std::vector<std::pair<std::string, Cell>> read_attrs(hid_t obj, const std::string& path) {
  AttrCollector c{path, {}, nullptr};
  hsize_t idx = 0;
  const herr_t rc = H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, collect_attr, &c);
  if (c.error) std::rethrow_exception(c.error);
  if (rc < 0) bad_file(path, "unreadable attributes: " + hdf5_error());
  return c.out;
}

std::string text_attr(const std::vector<std::pair<std::string, Cell>>& attrs, const std::string& name) {
  for (const auto& [k, v] : attrs)
    if (k == name)
      if (const auto* s = std::get_if<std::string>(&v)) return *s;
  return "";
}

std::vector<std::string> read_string_array_attr(hid_t obj, const char* name, const std::string& path) {
  if (H5Aexists(obj, name) <= 0) bad_file(path, fmt::format("/points has no attribute '{}'", name));
  H5Id a(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  H5Id space(H5Aget_space(a), H5Sclose);
  H5Id type(H5Aget_type(a), H5Tclose);
  const hssize_t n = H5Sget_simple_extent_npoints(space);
  if (n < 0 || n > 100000 || H5Tget_class(type) != H5T_STRING || H5Tis_variable_str(type) <= 0)
    bad_file(path, fmt::format("/points attribute '{}' is not a list of texts", name));
  std::vector<char*> ptrs(static_cast<std::size_t>(n), nullptr);
  H5Id mem = text_type();
  if (n > 0 && H5Aread(a, mem, ptrs.data()) < 0) bad_file(path, "unreadable column_order: " + hdf5_error());
  std::vector<std::string> out;
  for (char* p : ptrs) {
    out.emplace_back(p ? p : "");
    H5free_memory(p);
  }
  return out;
}

}  // namespace

void write_result_file(const std::string& path, const ResultTable& t) {
  silence_hdf5();
  for (const auto& row : t.rows)
    if (row.size() != t.columns.size()) throw RunError(fmt::format("{}: internal error: row width mismatch", path));
  // The file is built in memory (HDF5's core driver, no backing store), because
  // HDF5 must never write to the disk itself: a failed write inside HDF5 (a full disk) left its file
  // table inconsistent and crashed at exit in HDF5's shutdown (H5F__close_cb, HDF5 1.10). The image is
  // then written by AtomicFile: complete or absent.
  const std::string tmp = path + ".image";  // a name for HDF5's in-memory file; nothing is written there
  std::vector<char> image;
  {
    H5Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    check(H5Pset_fapl_core(fapl, std::size_t{1} << 20, 0), path);
    H5Id file(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl), H5Fclose);
    if (!file.ok()) throw RunError(fmt::format("{}: cannot create in memory: {}", tmp, hdf5_error()));
    write_attr(file, "tqbench_format", std::string(kResultFormat), path);
    for (const auto& [k, v] : t.attributes) write_attr(file, k, v, path);
    H5Id gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
    H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
    H5Id group(H5Gcreate2(file, "points", H5P_DEFAULT, gcpl, H5P_DEFAULT), H5Gclose);
    if (!group.ok()) throw RunError(fmt::format("{}: cannot create /points: {}", path, hdf5_error()));
    std::vector<std::string> order;
    for (std::size_t j = 0; j < t.columns.size(); ++j) {
      write_column(group, t, j, path);
      order.push_back(t.columns[j].name);
    }
    write_string_array_attr(group, "column_order", order, path);
    check(H5Fflush(file, H5F_SCOPE_GLOBAL), path);
    const ssize_t size = H5Fget_file_image(file, nullptr, 0);
    if (size <= 0) throw RunError(fmt::format("{}: cannot serialise the file: {}", path, hdf5_error()));
    image.resize(static_cast<std::size_t>(size));
    if (H5Fget_file_image(file, image.data(), image.size()) != size)
      throw RunError(fmt::format("{}: cannot serialise the file: {}", path, hdf5_error()));
  }
  AtomicFile out(path);
  out.write(image.data(), image.size());
  out.commit();
}

ResultTable read_result_file(const std::string& path) {
  silence_hdf5();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) bad_file(path, "no such result file");
  if (!std::filesystem::is_regular_file(path, ec)) bad_file(path, "not a regular file (a folder or a device); give a result file (.h5)");
  if (H5Fis_hdf5(path.c_str()) <= 0) bad_file(path, "not an HDF5 file (a tqbench result file is HDF5)");
  H5Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!file.ok()) bad_file(path, "cannot open as HDF5: " + hdf5_error());
  ResultTable t;
  t.attributes = read_attrs(file, path);
  const std::string format = text_attr(t.attributes, "tqbench_format");
  if (format != kResultFormat)
    bad_file(path, format.empty() ? "not a tqbench result file (no 'tqbench_format' attribute)"
                                  : fmt::format("result format '{}' is not supported (expected '{}')", format, kResultFormat));
  // tqbench_format is implied by a successful read; keep the others in file order.
  std::erase_if(t.attributes, [](const auto& kv) { return kv.first == "tqbench_format"; });
  if (H5Lexists(file, "points", H5P_DEFAULT) <= 0) bad_file(path, "missing the /points group");
  H5Id group(H5Gopen2(file, "points", H5P_DEFAULT), H5Gclose);
  if (!group.ok()) bad_file(path, "/points is not a group: " + hdf5_error());
  const std::vector<std::string> order = read_string_array_attr(group, "column_order", path);
  std::size_t n_rows = 0;
  std::vector<std::vector<Cell>> columns;
  for (std::size_t j = 0; j < order.size(); ++j) {
    const std::string& name = order[j];
    if (name.empty() || name.find('/') != std::string::npos || H5Lexists(group, name.c_str(), H5P_DEFAULT) <= 0)
      bad_file(path, fmt::format("column '{}' listed in column_order is missing", name));
    H5Id d(H5Dopen2(group, name.c_str(), H5P_DEFAULT), H5Dclose);
    if (!d.ok()) bad_file(path, fmt::format("column '{}' is not a dataset", name));
    H5Id space(H5Dget_space(d), H5Sclose);
    H5Id type(H5Dget_type(d), H5Tclose);
    if (H5Sget_simple_extent_ndims(space) != 1) bad_file(path, fmt::format("column '{}' is not one-dimensional", name));
    hsize_t n = 0;
    H5Sget_simple_extent_dims(space, &n, nullptr);
    if (n > (1u << 26)) bad_file(path, fmt::format("column '{}' has an implausible length {}", name, n));
    // The rows a column declares must be in the file: an unwritten dataset of 2^26 declared rows reads
    // as fill values and once exhausted memory in `show` (tqbench writes every column whole).
    if (const hsize_t stored = H5Dget_storage_size(d), need = n * static_cast<hsize_t>(H5Tget_size(type)); need > stored)
      bad_file(path, fmt::format("column '{}' declares {} rows ({} bytes) but the file stores {} bytes of it", name, n, need, stored));
    if (j == 0) n_rows = n;
    else if (n != n_rows)
      bad_file(path, fmt::format("column '{}' has {} rows but '{}' has {}", name, n, order[0], n_rows));
    const auto attrs = read_attrs(d, path);
    Column col{name, ColumnType::real, text_attr(attrs, "role"), text_attr(attrs, "description"),
               text_attr(attrs, "direction")};
    std::vector<Cell> cells;
    cells.reserve(n);
    switch (H5Tget_class(type)) {
      case H5T_INTEGER: {
        col.type = ColumnType::integer;
        std::vector<std::int64_t> v(n);
        if (n && H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, column_transfer(n), v.data()) < 0)
          bad_file(path, fmt::format("column '{}' is unreadable: {}", name, hdf5_error()));
        for (auto x : v) cells.emplace_back(x);
        break;
      }
      case H5T_FLOAT: {
        std::vector<double> v(n);
        if (n && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, column_transfer(n), v.data()) < 0)
          bad_file(path, fmt::format("column '{}' is unreadable: {}", name, hdf5_error()));
        for (auto x : v) cells.emplace_back(x);
        break;
      }
      case H5T_STRING: {
        col.type = ColumnType::text;
        if (H5Tis_variable_str(type) <= 0) bad_file(path, fmt::format("column '{}': fixed-length text is not supported", name));
        std::vector<char*> ptrs(n, nullptr);
        H5Id mem = text_type();
        if (n && H5Dread(d, mem, H5S_ALL, H5S_ALL, column_transfer(n), ptrs.data()) < 0)
          bad_file(path, fmt::format("column '{}' is unreadable: {}", name, hdf5_error()));
        for (char* p : ptrs) {
          cells.emplace_back(std::string(p ? p : ""));
          H5free_memory(p);
        }
        break;
      }
      default: bad_file(path, fmt::format("column '{}' has an unsupported type", name));
    }
    t.columns.push_back(col);
    columns.push_back(std::move(cells));
  }
  t.rows.assign(n_rows, std::vector<Cell>(t.columns.size()));
  for (std::size_t j = 0; j < columns.size(); ++j)
    for (std::size_t i = 0; i < n_rows; ++i) t.rows[i][j] = std::move(columns[j][i]);
  add_journal_rows(path, t);  // rows finished since the last fold (harness/result_journal.hpp)
  return t;
}

}  // namespace tqb
