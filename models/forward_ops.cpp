// The composite steps' defaults: exactly the primitive ops in the order the block was first written (the CPU
// reference runs these).
#include "models/forward_ops.hpp"

namespace tqb {

void ForwardOps::linear_add(const Linear& f, const Acts& x, const Acts& y, const Acts& tmp) {
  linear(f, x, tmp);
  add(y, tmp);
}

void ForwardOps::gated_ffn(const Linear& gate, const Linear& up, const Linear& down, ModelConfig::Activation act, const Acts& h,
                           const Acts& x, const Acts& g, const Acts& u, const Acts& tmp) {
  linear(gate, h, g);
  linear(up, h, u);
  glu(act, g, u);
  linear_add(down, g, x, tmp);
}

}  // namespace tqb
