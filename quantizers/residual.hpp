#pragma once
// Residual stacks (FAISS's ResidualQuantizer idea, "4+4" of the TurboQuant weights method): pass k
// quantizes what the passes before it left, W − Σ_{i<k} Ŵ_i; Ŵ = Σ_k Ŵ_k.
//
// `residual(stack=4+2, ...)`: each '+'-separated pass is
//   - an integer b: turboquant(bits=b) with the stack's codebook, rotation, group and norm;
//   - 1-qjl (or qjl): a 1-bit QJL sketch of the residual with m = g, same group and norm;
//   - any quantizer's one-line name, e.g. rtn(bits=2,group=64).
// Seeds: pass 0 uses the stack's seed; later passes a derived seed (different), the same seed
// (shared), or two seeds alternating (alternating), an ablation of whether re-using a rotation on a
// residual matters.
//
// `turboquant_prod(bits=b, ...)` is TurboQuant_prod (Algorithm 2): a (b−1)-bit turboquant pass and a
// 1-bit QJL of its residual with ‖r‖ stored, so inner products are unbiased; for b = 1, QJL alone.
//
// Layout: QuantizedMatrix::passes holds one QuantizedMatrix per pass (each with its own layout).
// Bits per weight: the sum over passes, e.g. 4+4 with g = 128 and fp32 norms: 8.5; 3+2: 5.5.
#include "quantizers/registry.hpp"

namespace tqb {

QuantizerFamily residual_family();
QuantizerFamily turboquant_prod_family();

}  // namespace tqb
