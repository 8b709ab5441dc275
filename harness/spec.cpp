#include "harness/spec.hpp"

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "common/error.hpp"
#include "common/read_file.hpp"
#include "common/suggest.hpp"
#include "harness/data_source.hpp"
#include "harness/metrics.hpp"
#include "kernels/registry.hpp"
#include "quantizers/registry.hpp"

namespace tqb {

std::string located_message(const SourceLocation& w, const std::string& key, const std::string& message) {
  std::string place = w.file;
  if (w.line > 0) place += fmt::format(":{}:{}", w.line, w.column);
  return key.empty() ? fmt::format("{}: error: {}", place, message)
                     : fmt::format("{}: error: key '{}': {}", place, key, message);
}

namespace {

class SpecParser {
 public:
  SpecParser(std::string path) : path_(std::move(path)) {}

  SourceLocation at(const YAML::Node& n) const {
    const YAML::Mark m = n.Mark();
    if (m.line < 0) return {path_, 0, 0};
    return {path_, m.line + 1, m.column + 1};
  }

  [[noreturn]] void fail(const YAML::Node& n, const std::string& key, const std::string& msg) const {
    throw InputError(located_message(at(n), key, msg));
  }

  static std::string kind_of(const YAML::Node& n) {
    switch (n.Type()) {
      case YAML::NodeType::Null: return "nothing";
      case YAML::NodeType::Scalar: return "'" + n.Scalar() + "'";
      case YAML::NodeType::Sequence: return "a list";
      case YAML::NodeType::Map: return "a map";
      default: return "an undefined node";
    }
  }

  // Map entries as (key text, key node, value node), rejecting non-scalar and duplicate keys and
  // keys not in `valid`.
  struct Entry {
    std::string key;
    YAML::Node key_node;
    YAML::Node value;
  };
  std::vector<Entry> entries(const YAML::Node& map, const std::string& path, const std::vector<std::string>& valid) const {
    std::vector<Entry> out;
    std::set<std::string> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
      if (!it->first.IsScalar()) fail(it->first, path, "keys must be plain names, found " + kind_of(it->first));
      const std::string k = it->first.Scalar();
      const std::string full = path.empty() ? k : path + "." + k;
      if (!seen.insert(k).second) fail(it->first, full, "given twice; each key may appear once");
      if (!valid.empty() && std::find(valid.begin(), valid.end(), k) == valid.end())
        fail(it->first, full, fmt::format("unknown key{}; valid keys here: {}", did_you_mean(k, valid), join(valid)));
      out.push_back({k, it->first, it->second});
    }
    return out;
  }

  std::string scalar_string(const YAML::Node& n, const std::string& key, const std::string& what) const {
    if (!n.IsScalar() || n.Scalar().empty()) fail(n, key, fmt::format("expected {}, found {}", what, kind_of(n)));
    return n.Scalar();
  }

  std::string scalar_choice(const YAML::Node& n, const std::string& key, std::vector<std::string> choices) const {
    const ParamSpec s{.name = key, .kind = ParamSpec::Kind::choice, .choices = std::move(choices)};
    const std::string v = scalar_string(n, key, s.valid_text());
    if (auto err = s.check(ParamValue{v}); !err.empty()) fail(n, key, err);
    return v;
  }

  std::int64_t scalar_int(const YAML::Node& n, const std::string& key, std::int64_t lo, std::int64_t hi) const {
    ParamSpec s{.name = key, .kind = ParamSpec::Kind::integer, .min = static_cast<double>(lo),
                .max = static_cast<double>(hi)};
    if (!n.IsScalar()) fail(n, key, fmt::format("expected {}, found {}", s.valid_text(), kind_of(n)));
    auto v = s.parse(n.Scalar());
    if (!v) fail(n, key, fmt::format("expected {}, found {}", s.valid_text(), kind_of(n)));
    if (auto err = s.check(*v); !err.empty()) fail(n, key, err);
    return std::get<std::int64_t>(*v);
  }

  // The nodes of a scalar or of a non-empty list without repeats, each with its key for messages.
  std::vector<std::pair<YAML::Node, std::string>> scalar_or_list(const YAML::Node& n, const std::string& key) const {
    std::vector<std::pair<YAML::Node, std::string>> out;
    if (!n.IsSequence()) return {{n, key}};
    if (n.size() == 0) fail(n, key, "empty list; give a value or a list of values");
    std::set<std::string> seen;
    for (std::size_t i = 0; i < n.size(); ++i) {
      const std::string k = fmt::format("{}[{}]", key, i);
      if (n[i].IsScalar() && !seen.insert(n[i].Scalar()).second) fail(n[i], k, fmt::format("'{}' listed twice", n[i].Scalar()));
      out.emplace_back(n[i], k);
    }
    return out;
  }

  // A value of a parameter: a scalar, or a non-empty list of scalars (a sweep axis).
  GridAxis axis(const Entry& e, const ParamSpec& spec, const std::string& path) const {
    GridAxis a{e.key, {}, at(e.key_node)};
    const std::string full = path + "." + e.key;
    auto one = [&](const YAML::Node& n) {
      if (!n.IsScalar())
        fail(n, full, fmt::format("expected {} (or a list of them), found {}", spec.valid_text(), kind_of(n)));
      auto v = spec.parse(n.Scalar());
      if (!v) fail(n, full, fmt::format("expected {}, found {}", spec.valid_text(), kind_of(n)));
      if (auto err = spec.check(*v); !err.empty()) fail(n, full, err);
      a.values.push_back(*v);
    };
    if (e.value.IsSequence()) {
      if (e.value.size() == 0)
        fail(e.value, full, fmt::format("empty list: a sweep needs at least one value ({})", spec.valid_text()));
      for (const auto& item : e.value) one(item);
    } else {
      one(e.value);
    }
    return a;
  }

  // A grid written as a map: `family_key` names the family, other keys are its parameters.
  ParamGrid grid(const YAML::Node& n, const std::string& path, const std::string& family_key,
                 const std::vector<std::string>& families, const ParamSchema& (*schema_of)(const std::string&),
                 const std::string& what) const {
    if (!n.IsMap()) fail(n, path, fmt::format("expected a map with '{}' and parameters, found {}", family_key, kind_of(n)));
    const YAML::Node fam = n[family_key];
    if (!fam) fail(n, path, fmt::format("missing '{}'; one of: {}", family_key, join(families)));
    const std::string family = scalar_string(fam, path + "." + family_key, "a " + what + " name");
    if (std::find(families.begin(), families.end(), family) == families.end())
      fail(fam, path + "." + family_key,
           fmt::format("unknown {} '{}'{}; valid: {}", what, family, did_you_mean(family, families), join(families)));
    const ParamSchema& schema = schema_of(family);
    std::vector<std::string> valid{family_key};
    for (const auto& s : schema.specs()) valid.push_back(s.name);
    ParamGrid g{family, {}, at(n), path};
    for (const auto& e : entries(n, path, valid)) {
      if (e.key == family_key) continue;
      g.axes.push_back(axis(e, *schema.find(e.key), path));
    }
    return g;
  }

  static const ParamSchema& quantizer_schema(const std::string& f) { return find_quantizer_family(f)->schema; }
  static const ParamSchema& data_schema(const std::string& f) { return find_data_source(f)->schema; }

  ParamGrid quantizer_grid(const YAML::Node& n, const std::string& path) const {
    if (n.IsScalar()) {
      // A one-line name such as "rtn(bits=4,group=row)": parsed by the registry, located here.
      ParamGrid g{"", {}, at(n), path};
      try {
        auto q = parse_quantizer(n.Scalar());
        g.family = q->family();
        for (const auto& [k, v] : q->params()) g.axes.push_back({k, {v}, at(n)});
      } catch (const InputError& e) {
        fail(n, path, e.what());
      }
      return g;
    }
    return grid(n, path, "family", quantizer_family_names(), &quantizer_schema, "quantizer");
  }

  // Where a second YAML document starts, if there is one.
  static std::optional<YAML::Mark> second_document(const std::string& text) {
    struct Counter final : YAML::EventHandler {
      int documents = 0;
      YAML::Mark second;
      void OnDocumentStart(const YAML::Mark& m) override {
        if (++documents == 2) second = m;
      }
      void OnDocumentEnd() override {}
      void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
      void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
      void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
      void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
      void OnSequenceEnd() override {}
      void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {}
      void OnMapEnd() override {}
    } counter;
    std::istringstream in(text);
    YAML::Parser parser(in);
    for (int i = 0; i < 2 && parser.HandleNextDocument(counter); ++i) {
    }
    if (counter.documents < 2) return std::nullopt;
    return counter.second;
  }

  // YAML allows tab, LF and CR among the C0 controls, and text must be UTF-8 (YAML 1.2, 5.1). yaml-cpp
  // does not check: a NUL byte read past the end of its buffer ("unknown escape character: \x04").
  void check_characters(const std::string& text) const {
    int line = 1, col = 1;  // a spec is at most 1 MiB (read_file), so both fit
    for (std::size_t i = 0; i < text.size();) {
      const auto c = static_cast<unsigned char>(text[i]);
      std::size_t len = 1;
      bool ok = true;
      if (c < 0x80) {
        ok = c >= 0x20 ? c != 0x7f : (c == '\t' || c == '\n' || c == '\r');
      } else {
        len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
        ok = len != 0 && i + len <= text.size();
        for (std::size_t k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(text[i + k]) & 0xc0) == 0x80;
      }
      if (!ok)
        throw InputError(located_message({path_, line, col}, "",
                                         fmt::format("byte 0x{:02x} is not allowed here: a spec is UTF-8 text without "
                                                     "control characters other than tab and newline", c)));
      if (c == '\n') {
        ++line;
        col = 1;
      } else {
        ++col;
      }
      i += len == 0 ? 1 : len;
    }
  }

  // yaml-cpp recurses once per nesting level, flow ([ {) or block (indentation): a spec nested thousands deep
  // overflows its stack. No real spec nests beyond a handful of levels; refuse 64 flow levels or an indentation of
  // 256 columns, naming the place, before yaml-cpp sees the text (issue 28). Quoted scalars and comments are skipped.
  void check_nesting(const std::string& text) const {
    constexpr int kMaxFlow = 64, kMaxIndent = 256;
    int line = 1, col = 1, flow = 0, indent = 0;
    bool line_start = true;
    char quote = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
      const char c = text[i];
      if (c == '\n') {
        ++line;
        col = 1;
        line_start = true;
        indent = 0;
        if (quote == 0) continue;
        continue;
      }
      if (line_start && c == ' ') {
        if (++indent > kMaxIndent)
          throw InputError(located_message({path_, line, col}, "",
                                           fmt::format("indented more than {} columns: nested deeper than any spec", kMaxIndent)));
        ++col;
        continue;
      }
      line_start = false;
      if (quote) {
        if (c == quote && !(quote == '"' && i > 0 && text[i - 1] == '\\')) quote = 0;
      } else if (c == '"' || c == '\'') {
        quote = c;
      } else if (c == '#') {
        while (i + 1 < text.size() && text[i + 1] != '\n') ++i;
      } else if (c == '[' || c == '{') {
        if (++flow > kMaxFlow)
          throw InputError(located_message({path_, line, col}, "",
                                           fmt::format("'{}' nested more than {} levels deep: deeper than any spec", c, kMaxFlow)));
      } else if ((c == ']' || c == '}') && flow > 0) {
        --flow;
      }
      ++col;
    }
  }

  ExperimentSpec parse(const std::string& text) const {
    check_characters(text);
    check_nesting(text);
    YAML::Node root;
    try {
      root = YAML::Load(text);
      // One document: a second one ("---") would be ignored silently by YAML::Load, so it is an error.
      // Counted with at most two parser steps: YAML::LoadAll never returns on some malformed inputs
      // (yaml-cpp 0.7; found by tests/fuzz/fuzz_spec).
      if (const auto second = second_document(text))
        throw InputError(located_message({path_, second->line + 1, second->column + 1}, "",
                                         "text after the end of the first YAML document (a second document after "
                                         "'---', or a stray ']' or '}'); a spec is one document: remove it, or merge "
                                         "it into the first"));
    } catch (const YAML::Exception& e) {
      SourceLocation w{path_, e.mark.line >= 0 ? e.mark.line + 1 : 0, e.mark.column >= 0 ? e.mark.column + 1 : 0};
      throw InputError(located_message(w, "", "invalid YAML: " + e.msg));
    }
    if (!root || root.IsNull()) throw InputError(located_message({path_, 1, 1}, "", "the spec is empty; expected a map with 'experiment', 'data' and 'quantizers'"));
    if (!root.IsMap()) fail(root, "", "expected a map at the top level, found " + kind_of(root));

    ExperimentSpec spec;
    spec.path = path_;
    spec.text = text;
    static const std::vector<std::string> top{"experiment", "description", "seed", "repeats", "data", "quantizers", "metrics", "queries", "timing"};
    bool have_data = false, have_quantizers = false, have_name = false;
    std::vector<YAML::Node> metric_nodes;
    for (const auto& e : entries(root, "", top)) {
      if (e.key == "experiment") {
        spec.experiment = scalar_string(e.value, e.key, "a name for the experiment");
        // It names the default result file (results/<experiment>.h5): a file name, not a path or a dot file.
        bool valid_name = spec.experiment.size() <= 128 && std::isalnum(static_cast<unsigned char>(spec.experiment[0]));
        for (char c : spec.experiment)
          if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.')) valid_name = false;
        if (!valid_name)
          fail(e.value, e.key, fmt::format("'{}' is not a valid name; use at most 128 letters, digits, '-', '_' and '.', starting with a letter or digit",
                                           spec.experiment.substr(0, 160)));
        have_name = true;
      } else if (e.key == "description") {
        spec.description = scalar_string(e.value, e.key, "a text");
      } else if (e.key == "seed") {
        spec.seed = static_cast<std::uint64_t>(scalar_int(e.value, e.key, 0, INT64_MAX));
      } else if (e.key == "repeats") {
        spec.repeats = scalar_int(e.value, e.key, 1, 1000);
      } else if (e.key == "queries") {
        spec.queries = scalar_int(e.value, e.key, 1, 1 << 20);
        spec.queries_where = at(e.value);
      } else if (e.key == "timing") {
        if (!e.value.IsMap()) fail(e.value, "timing", "expected a map with device, kernel, batch and repetitions, found " + kind_of(e.value));
        for (const auto& t : entries(e.value, "timing", {"device", "kernel", "batch", "repetitions"})) {
          const std::string key = "timing." + t.key;
          if (t.key == "device") {
            spec.timing.device = scalar_choice(t.value, key, {"cpu", "cuda"});
          } else if (t.key == "kernel") {  // a value or a list: an evaluation axis
            spec.timing.kernels.clear();
            for (const auto& [n, k] : scalar_or_list(t.value, key))
              spec.timing.kernels.push_back(scalar_choice(n, k, linear_kernel_names()));
            spec.timing.kernel = spec.timing.kernels.front();
          } else if (t.key == "batch") {
            spec.timing.batches.clear();
            for (const auto& [n, k] : scalar_or_list(t.value, key)) spec.timing.batches.push_back(scalar_int(n, k, 1, 4096));
            spec.timing.batch = spec.timing.batches.front();
          } else {
            spec.timing.repetitions = scalar_int(t.value, key, 1, 100000);
          }
        }
      } else if (e.key == "data") {
        have_data = true;
        auto one = [&](const YAML::Node& n, const std::string& p) {
          spec.data.push_back(grid(n, p, "source", data_source_names(), &data_schema, "data source"));
        };
        if (e.value.IsSequence()) {
          if (e.value.size() == 0) fail(e.value, "data", "empty list; give at least one data source");
          for (std::size_t i = 0; i < e.value.size(); ++i) one(e.value[i], fmt::format("data[{}]", i));
        } else {
          one(e.value, "data");
        }
      } else if (e.key == "quantizers") {
        have_quantizers = true;
        if (!e.value.IsSequence())
          fail(e.value, "quantizers", "expected a list of quantizers (maps with 'family', or one-line names), found " + kind_of(e.value));
        if (e.value.size() == 0) fail(e.value, "quantizers", "empty list; give at least one quantizer");
        for (std::size_t i = 0; i < e.value.size(); ++i)
          spec.quantizers.push_back(quantizer_grid(e.value[i], fmt::format("quantizers[{}]", i)));
      } else if (e.key == "metrics") {
        if (!e.value.IsSequence() || e.value.size() == 0)
          fail(e.value, "metrics", fmt::format("expected a non-empty list of metric names ({}), found {}",
                                               join(metric_names()), kind_of(e.value)));
        for (std::size_t i = 0; i < e.value.size(); ++i) {
          const std::string key = fmt::format("metrics[{}]", i);
          metric_nodes.push_back(e.value[i]);
          const std::string m = scalar_string(e.value[i], key, "a metric name");
          if (!find_metric(m))
            fail(e.value[i], key, fmt::format("unknown metric '{}'{}; valid: {}", m, did_you_mean(m, metric_names()),
                                              join(metric_names())));
          if (std::find(spec.metrics.begin(), spec.metrics.end(), m) != spec.metrics.end())
            fail(e.value[i], key, fmt::format("metric '{}' listed twice", m));
          spec.metrics.push_back(m);
        }
      }
    }
    if (!have_name) fail(root, "experiment", "missing; name the experiment (it names the result file)");
    if (!have_data) fail(root, "data", "missing; e.g. data: {source: gaussian, rows: 256, cols: 1024}");
    if (!have_quantizers) fail(root, "quantizers", "missing; e.g. quantizers: [{family: rtn, bits: [2, 4]}]");
    // Model experiments and matrix experiments have different evaluators and metrics; they cannot share a run.
    const DataKind kind = data_kind(spec);
    for (const auto& g : spec.data)
      if (find_data_source(g.family)->kind != kind)
        fail(root["data"], "data", "a 'model' source cannot be mixed with matrix sources in one experiment");
    if (spec.metrics.empty())
      for (const auto& m : metrics())
        if (m.applies_to(kind) && !(m.timing && kind == DataKind::matrix)) spec.metrics.push_back(m.name);
    for (std::size_t i = 0; i < metric_nodes.size(); ++i) {
      const Metric* m = find_metric(spec.metrics[i]);
      if (!m->applies_to(kind)) {
        std::vector<std::string> valid;
        for (const auto& x : metrics())
          if (x.applies_to(kind)) valid.push_back(x.name);
        fail(metric_nodes[i], fmt::format("metrics[{}]", i),
             fmt::format("'{}' is a {} metric, but this experiment's data is {}; valid: {}", m->name,
                         kind == DataKind::model ? "matrix" : "model", kind == DataKind::model ? "a model" : "matrices", join(valid)));
      }
    }
    return spec;
  }

 private:
  std::string path_;
};

}  // namespace

DataKind data_kind(const ExperimentSpec& spec) {
  for (const auto& g : spec.data)
    if (const DataSource* src = find_data_source(g.family); src && src->kind == DataKind::model) return DataKind::model;
  return DataKind::matrix;
}

ExperimentSpec parse_spec(const std::string& text, const std::string& path) { return SpecParser(path).parse(text); }

ExperimentSpec load_spec(const std::string& path) {
  constexpr std::size_t kMaxSpecBytes = std::size_t{1} << 20;  // a spec is a page of YAML; 1 MiB is generous
  return parse_spec(read_regular_file(path, kMaxSpecBytes, "spec file"), path);
}

}  // namespace tqb
