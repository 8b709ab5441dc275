#pragma once
// QJL (Zandieh, Daliri, Han; arXiv 2406.03482): a 1-bit sign sketch with the norm, per group.
//
// For each row's group v of g columns: store γ = ‖v‖ (format `norm`) and sign(S_j v), m bits (m = g by
// default; sketch=2d etc. give 2, ... bits per weight), with S_j an
// m×g matrix of i.i.d. N(0,1) entries drawn from the seed (group j's own, shared by all rows).
// Dequantization: v̂ = √(π/2)/m · γ · S_jᵀ sign(S_j v), for which ⟨y, v̂⟩ is an unbiased estimate of
// ⟨y, v⟩ with variance at most π/(2m) ‖y‖² ‖v‖² (QJL Lemma 3.2; REFERENCE.md).
//
// Layout: one 1-bit stream of rows × groups × m sign bits (1 = non-negative), row-major then group then
// sketch index; norms [rows][groups]. S is recomputed from the seed. Bits per weight: m/g + 8·bytes(norm)/g.
#include "quantizers/registry.hpp"

namespace tqb {

QuantizerFamily qjl_family();

}  // namespace tqb
