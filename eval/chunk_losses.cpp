#include "eval/chunk_losses.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/bounded_json.hpp"

namespace tqb {

std::string ChunkLosses::chunking_text() const {
  return fmt::format("{} chunks of {} scored tokens ({}, {} method, ctx {})", nll.size(), tokens_per_chunk, corpus, method, ctx);
}

std::vector<std::vector<double>> loss_matrix(const std::vector<ChunkLosses>& repeats, std::vector<double> ChunkLosses::*field) {
  std::vector<std::vector<double>> x;
  for (const auto& r : repeats) {
    if ((r.*field).size() != r.nll.size()) return {};
    x.push_back(r.*field);
  }
  return x;
}

ChunkLosses chunk_losses_of(const PerplexityResult& result, const PerplexityResult& baseline, const std::string& corpus,
                            const std::string& method, int ctx) {
  ChunkLosses c;
  c.corpus = corpus;
  c.method = method;
  c.ctx = ctx;
  c.first_scored = result.first_scored;
  c.tokens_per_chunk = static_cast<std::size_t>(ctx) - 1 - result.first_scored;
  c.nll = result.chunk_nll;
  c.kld = result.chunk_kld;
  if (baseline.chunk_nll.size() == result.chunk_nll.size()) c.baseline_nll = baseline.chunk_nll;
  c.top1 = result.chunk_top1;
  return c;
}

std::string to_json(const ChunkLosses& c) {
  nlohmann::json j;
  j["corpus"] = c.corpus;
  j["method"] = c.method;
  j["ctx"] = c.ctx;
  j["first_scored"] = c.first_scored;
  j["tokens_per_chunk"] = c.tokens_per_chunk;
  j["nll"] = c.nll;
  j["kld"] = c.kld;
  j["baseline_nll"] = c.baseline_nll;
  j["top1"] = c.top1;
  return j.dump();
}

ChunkLosses chunk_losses_from_json(const std::string& json, const std::string& where) {
  try {
    const nlohmann::json j = parse_json(json, "chunk_losses");
    ChunkLosses c;
    c.corpus = j.at("corpus").get<std::string>();
    c.method = j.at("method").get<std::string>();
    c.ctx = j.at("ctx").get<int>();
    c.first_scored = j.at("first_scored").get<std::size_t>();
    c.tokens_per_chunk = j.at("tokens_per_chunk").get<std::size_t>();
    c.nll = j.at("nll").get<std::vector<double>>();
    c.kld = j.at("kld").get<std::vector<double>>();
    if (j.contains("baseline_nll")) c.baseline_nll = j.at("baseline_nll").get<std::vector<double>>();
    if (j.contains("top1")) c.top1 = j.at("top1").get<std::vector<double>>();
    for (const auto* v : {&c.kld, &c.baseline_nll, &c.top1})
      if (!v->empty() && v->size() != c.nll.size()) throw InputError("nll, kld, baseline_nll and top1 differ in length");
    return c;
  } catch (const InputError& e) {
    throw InputError(fmt::format("{}: chunk_losses is not what tqbench writes: {}", where, e.what()));
  } catch (const std::exception& e) {
    throw InputError(fmt::format("{}: chunk_losses is not what tqbench writes: {}", where, e.what()));
  }
}

}  // namespace tqb
