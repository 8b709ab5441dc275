#pragma once
// Round-to-nearest (RTN) baselines: uniform grids per row or per group of g input columns.
//
// Symmetric (absmax): step s = absmax / qmax with qmax = 2^(b-1) - 1, levels -qmax..qmax (one code of
//   the 2^b is unused, as in LLM.int8's absmax scheme), code = q + qmax, x̂ = (code - qmax) * s.
// Asymmetric (min/max, as ggml's Q4_1): m = group minimum, s = (max - m) / (2^b - 1), levels 0..2^b-1,
//   x̂ = m + code * s; s and m stored as `scale`.
// Stored scales are rounded to the scale format so that every |x - x̂| <= s/2 holds for the stored s:
// m is rounded down, s to nearest and bumped up one step when the largest value would fall outside
// the grid by more than half a step. A Q4_1 grid (fp16 d and m) is reproduced exactly with g = 32, asym.
//
// Layout per matrix: codes as one b-bit stream (bitpack.hpp), rows*groups scales then, for asym,
// rows*groups minimums, each in the scale format. Bits per weight: b + 8*bytes(scale)*(1 or 2)/g;
// e.g. 4-bit, g = 128, fp16, sym: 4.125; asym: 4.25.
#include "quantizers/registry.hpp"

namespace tqb {

QuantizerFamily rtn_family();

}  // namespace tqb
