#pragma once
// The data source of model points (`source: model`): its parameters (which model, corpus and scoring,
// which layers, which kernel, the KV cache), checked at sweep expansion, and their reading into the
// ModelPointSpec that eval/model_eval measures. Points of this kind go to harness/model_evaluator.
#include "eval/model_eval.hpp"
#include "harness/data_source.hpp"

namespace tqb {

DataSource model_source();
ModelPointSpec model_point_spec(const Params& data_params);  // complete parameters of model_source()

}  // namespace tqb
