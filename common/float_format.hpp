#pragma once
// Storage formats for per-group side data (scales, zero points, norms): fp32, fp16 and bf16.
// Conversions use Eigen::half and Eigen::bfloat16 (round to nearest even).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tqb {

enum class FloatFormat { fp32, fp16, bf16 };

std::size_t bytes_of(FloatFormat f);        // 4, 2, 2
std::string to_string(FloatFormat f);       // "fp32", "fp16", "bf16"
std::optional<FloatFormat> parse_float_format(const std::string& s);
const std::vector<std::string>& float_format_names();

// Value after a round trip through the format (round to nearest even).
float round_to(FloatFormat f, float x);
// Smallest representable value >= x, and largest <= x (finite x).
float round_up_to(FloatFormat f, float x);
float round_down_to(FloatFormat f, float x);

// IEEE binary16 and bfloat16 bit patterns: the one place the project converts to and from them (ggml blocks,
// GGUF and safetensors tensors, side data, the GPU's bf16 activations). Round to nearest even; a bf16 NaN
// stays a quiet NaN with its sign.
std::uint16_t fp16_bits(float x);
float fp16_value(std::uint16_t h);
std::uint16_t bf16_bits(float x);
float bf16_value(std::uint16_t h);

// Little-endian store and load of one value; dst/src point at bytes_of(f) bytes.
void store_float(FloatFormat f, float x, std::uint8_t* dst);
float load_float(FloatFormat f, const std::uint8_t* src);
// Every value of a packed array of the format, widened to fp32 (bytes.size() / bytes_of(f) values).
std::vector<float> load_floats(FloatFormat f, const std::vector<std::uint8_t>& bytes);

}  // namespace tqb
