#include "harness/cli_model.hpp"

#include <fmt/format.h>

#include <chrono>
#include <map>

#include "common/error.hpp"
#include "common/rng.hpp"
#include "eval/calibration.hpp"
#include "eval/model_eval.hpp"
#include "models/quantized_safetensors.hpp"
#include "quantizers/registry.hpp"

namespace tqb {

Checkpoint load_model_checkpoint(const std::string& model_name, const ModelChoice& choice) {
  if (!choice.quantizer.empty()) parse_quantizer(choice.quantizer);
  Checkpoint ck = load_checkpoint(model_name, CheckpointLoad::streamed);
  if (!ck.tokenizer) throw InputError(fmt::format("model '{}' has no tokenizer tqbench can read", model_name));
  return ck;
}

BuiltModel build_model(const Checkpoint& ck, const std::string& model_name, const ModelChoice& m) {
  BuiltModel b;
  b.label = m.device == "cuda" ? "unquantized (bf16 weights)" : "unquantized (fp32)";
  std::unique_ptr<Quantizer> quantizer;
  if (!m.quantizer.empty()) quantizer = parse_quantizer(m.quantizer);
  if (!m.quantized_file.empty()) {
    // The layers an export wrote (tqbench export ... -o FILE.safetensors), on the source model's config,
    // tokenizer and other tensors: the same bytes a sweep point quantized, read back.
    if (quantizer) throw InputError("--quantized and --quantizer: give one (the file's layers are already quantized)");
    const QuantizedModelFile file = read_quantized_safetensors(m.quantized_file);
    double bytes = 0, weights = 0;
    std::size_t used = 0;
    b.model = std::make_unique<LlamaModel>(ck, [&](const std::string& name, const Matrix& w) -> std::unique_ptr<Linear> {
      const auto it = file.quantized.find(name);
      if (it == file.quantized.end()) return dense_linear_on(m.device, w);
      const auto& qm = it->second;
      if (qm.rows != static_cast<std::size_t>(w.rows()) || qm.cols != static_cast<std::size_t>(w.cols()))
        throw InputError(fmt::format("{}: error: tensor '{}' is {} x {} there and {} x {} in {}", m.quantized_file, name, qm.rows,
                                     qm.cols, w.rows(), w.cols(), model_name));
      const auto q = parse_quantizer(qm.format);
      bytes += static_cast<double>(qm.storage_bytes());
      weights += static_cast<double>(w.size());
      ++used;
      return quantized_linear_on(m.device, m.kernel, *q, qm);
    }, forward_ops_on(m.device));
    if (used != file.quantized.size())
      throw InputError(fmt::format("{}: error: {} quantized tensors, of which {} are layers of {}", m.quantized_file,
                                   file.quantized.size(), used, model_name));
    b.label = fmt::format("{} ({:.4g} bits per weight in {} layers)", m.quantized_file, 8 * bytes / weights, used);
  } else if (quantizer) {
    QuantizedModelStats st;
    Calibration calibration;
    std::string calibrated;
    if (quantizer->needs_calibration()) {
      CalibrationSpec spec = m.calibration;
      spec.device = m.device;  // the calibration's forward runs where the model does
      calibration = calibrate_model(ck, *quantizer, m.seed, m.include, m.exclude, parse_group_fallback(m.group_fallback), spec);
      b.calibrate_s = calibration.seconds;
      calibrated = fmt::format("; calibrated on {} ({:.1f} s)", calibration.label, calibration.seconds);
    }
    b.model = quantize_model(ck, *quantizer, m.seed,
                             {.include = m.include, .exclude = m.exclude, .group_fallback = parse_group_fallback(m.group_fallback),
                              .kernel = m.kernel, .device = m.device, .calibration = calibration.layers.empty() ? nullptr : &calibration.layers, .prequantized = &calibration.quantized},
                             &st);
    if (st.layers == 0) throw InputError(fmt::format("--include '{}' (--exclude '{}') selects no linear layer", m.include, m.exclude));
    b.label = fmt::format("{} ({:.4g} bits per weight in {} layers{})", quantizer->name(), 8 * st.quantized_bytes / st.quantized_weights,
                          st.layers, calibrated);
  } else {
    b.model = make_model(ck, m.device);
  }
  if (m.device != "cpu") b.label += " on " + m.device;
  if (m.kv.active()) {  // as a spec's kv_* keys: rotations from the seed, outlier channels from the first forward
    b.kv = std::make_shared<KvQuantizer>(m.kv, ck.config, derive_seed(m.seed, "kv cache") >> 1);
    b.model->set_kv_quantizer(b.kv);
    b.label += fmt::format("; KV cache: keys {} ({:.4g} bits), values {} ({:.4g} bits)", m.kv.key, b.kv->key_bits(), m.kv.value,
                           b.kv->value_bits());
  }
  return b;
}

}  // namespace tqb
