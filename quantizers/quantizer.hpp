#pragma once
// The quantizer interface: small and batch-oriented (after FAISS's Quantizer). A quantizer turns a
// row-major float matrix into a QuantizedMatrix and back; it knows nothing of kernels, metrics or files.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <Eigen/Dense>

#include "quantizers/decode.hpp"
#include "quantizers/params.hpp"
#include "quantizers/quantized_matrix.hpp"

namespace tqb {

// What a shape check found wrong: the parameter at fault (empty if none in particular) and why.
struct ShapeProblem {
  std::string param;
  std::string message;
};

// One of the layers that read the same inputs (a block's attn_q/k/v, or its ffn_gate/up), for a calibrated quantizer
// whose choice must be one for all of them: awq(scale=shared) searches one per-channel scale for their summed output
// error, which deployment folds into the RMSNorm before them (AWQ, Lin et al. 2023, §3.3 and its reference code).
struct SharedInputLayer {
  std::string name;
  std::shared_ptr<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> weights;  // rows × cols, full precision
  std::uint64_t seed = 0;  // the seed its own quantization gets (eval/layer_quantization.hpp: layer_seed)
};

// A layer's calibration inputs x (rows of samples × cols), as calibrated quantizers read them.
struct InputStatistics {
  Eigen::MatrixXd hessian;   // cols × cols: Σ xᵀx (not divided by the count; GPTQ's damping is relative)
  Eigen::VectorXd mean_abs;  // cols: mean |x| per input channel (AWQ's activation scale)
  std::size_t samples = 0;   // positions seen
  // Every layer that reads these inputs, this one included, by name; filled only for a quantizer that asks
  // (Quantizer::needs_shared_inputs) and only where two or more selected layers share the input.
  std::vector<SharedInputLayer> shared_input;
};

class Quantizer {
 public:
  // params: complete and valid for `schema` (the family's, quantizers/registry.hpp), which formats the name.
  Quantizer(std::string family, const ParamSchema& schema, Params params);
  virtual ~Quantizer() = default;

  const std::string& family() const { return family_; }
  const Params& params() const { return params_; }
  // Canonical one-line name, "family(k=v,...)" with every parameter in schema order; the registry
  // parses it back to an equal quantizer.
  const std::string& name() const { return name_; }

  // Empty message when a rows x cols matrix can be quantized (e.g. the group size divides cols).
  virtual ShapeProblem check_shape(std::size_t rows, std::size_t cols) const = 0;

  // w: rows*cols floats, row-major, rows = output channels. seed drives every random choice, so the
  // same (w, seed) gives the same bytes on every machine.
  virtual QuantizedMatrix quantize(const float* w, std::size_t rows, std::size_t cols,
                                   std::uint64_t seed) const = 0;

  // Bits per weight of the codes alone (no side data): b for a b-bit quantizer, m/d for a QJL sketch,
  // the sum over passes for a residual stack, for a matrix of `cols` columns. The "b" of the paper's bounds.
  virtual double nominal_bits(std::size_t cols) const = 0;

  // Bytes quantize() stores for a rows x cols matrix (what QuantizedMatrix::storage_bytes() will say),
  // known before quantizing: `run --dry-run` prints each point's exact bits per weight from it and flags
  // points that compare different bit rates. Requires an empty check_shape(rows, cols).
  virtual std::uint64_t storage_bytes(std::size_t rows, std::size_t cols) const = 0;

  // The quantizers of a composite format's passes (residual stacks), in order; QuantizedMatrix::passes
  // holds their results in the same order. Empty for a single-pass format.
  virtual std::vector<const Quantizer*> passes() const { return {}; }

  // The reference dequantizer. out: q.rows*q.cols floats, row-major.
  virtual void dequantize(const QuantizedMatrix& q, float* out) const = 0;

  // The decode description (quantizers/decode.hpp) that kernels read instead of the family's name.
  // decode_form: one entry per pass, known before any matrix is quantized; empty when the format has no
  // such description (llama.cpp's blocks, none), so that only dequantize-then-dense reads it. The default
  // concatenates the passes' forms of a composite format (empty if any pass has none).
  virtual std::vector<PassForm> decode_form() const;
  // Appends q's passes (q quantized by this quantizer) with their codes, side values, tables and
  // transforms. The default recurses into a composite format's passes. Throws std::invalid_argument when
  // decode_form() is empty.
  virtual void describe_decode(const QuantizedMatrix& q, std::vector<DecodePass>& out) const;

  // Estimate of the bytes quantize() and dequantize() hold at their peak for a rows x cols matrix,
  // beyond the input and the output: the QuantizedMatrix, rotations, sketches, scratch copies. The
  // harness adds it to a point's memory estimate (`run --dry-run` prints the largest; a point that cannot
  // fit in available memory is refused before it starts). The default counts packed codes and one byte
  // per weight of unpacked codes; formats with larger state override it.
  virtual std::uint64_t working_bytes(std::size_t rows, std::size_t cols) const;

  // Calibrated quantizers (gptq(Q), quantizers/gptq.hpp; awq(Q), quantizers/awq.hpp) need the layer's input
  // statistics (InputStatistics). quantize() of such a quantizer is an InputError saying where calibration comes from;
  // the others ignore the statistics.
  virtual bool needs_calibration() const { return false; }
  // Whether quantize_calibrated reads InputStatistics::shared_input (the other layers on the same input).
  virtual bool needs_shared_inputs() const { return false; }
  // The grid a column-wise search (gptq, quantizers/gptq.hpp) chooses codes on: one pass of per-group codes,
  // a·lut[code] + b behind the group's transform. search_form(): its form before any matrix is quantized (empty: the
  // format is not such a grid). search_grid(q): the pass for q (its `codes` may be null; std::invalid_argument when q's
  // codes cannot be written back on it). set_grid_codes(q, codes):
  // q with the given codes (rows × cols, one byte a weight, in W's column order) on the grid search_grid(q) gave.
  // The defaults are the decode description's single pass and its own code stream; a format without a decode
  // description whose weights still sit on a per-group grid (llama.cpp's 32-weight blocks) overrides all three.
  virtual std::vector<PassForm> search_form() const;
  virtual DecodePass search_grid(const QuantizedMatrix& q) const;
  virtual void set_grid_codes(QuantizedMatrix& q, const std::uint8_t* codes) const;
  // The same quantizer without its per-group rotation (nullptr: it rotates nothing): quantizing the rotated groups
  // Π_j w_j with it gives, up to float rounding, the grid (scales, norms, offsets) this one gives w_j. gptq's dynamic
  // groups find a rotated format's grid this way, one group at a time.
  virtual std::unique_ptr<Quantizer> without_rotation() const { return nullptr; }
  // What quantizing an all-zero rows × cols matrix stores: the size of every part, for a reader checking a file
  // (models/quantized_safetensors.cpp). The default quantizes zeros; calibrated modifiers answer without statistics.
  virtual QuantizedMatrix zero_layout(std::size_t rows, std::size_t cols, std::uint64_t seed) const;
  virtual QuantizedMatrix quantize_calibrated(const float* w, std::size_t rows, std::size_t cols, std::uint64_t seed,
                                              const InputStatistics& /*inputs*/) const {
    return quantize(w, rows, cols, seed);
  }

  // Whether quantize() depends on its seed (rotations, projections). A repeated sweep runs a point whose
  // quantizer and data use no seed once: its repeats would be identical (harness/repeat_summary.hpp).
  virtual bool uses_seed() const { return true; }

 protected:
  // An empty result for a rows x cols matrix with this quantizer's name and the seed: the header
  // every quantize() starts from. code_bits: bits per code (0 for composite formats).
  QuantizedMatrix new_matrix(std::size_t rows, std::size_t cols, std::uint64_t seed, int code_bits = 0) const;

 private:
  std::string family_;
  Params params_;
  std::string name_;
};

}  // namespace tqb
