#pragma once
// `none`: the unquantized baseline as a registry entry, so a sweep's fp32 reference row is just one
// more quantizer. Stores the weights as fp32 (32 bits per weight); dequantize copies them back.
#include "quantizers/registry.hpp"

namespace tqb {

QuantizerFamily none_family();

}  // namespace tqb
