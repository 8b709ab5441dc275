#pragma once
// Data sources: where the matrices that quantizers see come from. A registry like the quantizers',
// with a parameter schema per source. Synthetic sources are seeded and machine-independent.
#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/matrix.hpp"
#include "quantizers/params.hpp"
#include "quantizers/quantizer.hpp"

namespace tqb {

// Row-major float matrix: rows = output channels (or vectors), cols = input dimension.
using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Which evaluator a source's points go to (harness/evaluator.hpp): a matrix a quantizer sees whole, or a
// model whose layers it quantizes. One experiment holds data of one kind.
enum class DataKind { matrix, model };
std::string to_string(DataKind k);  // "matrix", "model"

struct DataSource {
  std::string name;
  std::string description;
  ParamSchema schema;
  // Matrix sources: the shape of the matrix make() returns, from complete parameters (checked before
  // allocating), and the matrix. Empty for model data (its layers are checked when quantized).
  std::function<std::pair<std::size_t, std::size_t>(const Params&)> shape;
  std::function<Matrix(const Params&, std::uint64_t seed)> make;
  // Whether a point on this data depends on the seed beyond its quantizer's (synthetic data does; a model
  // only when its KV cache is quantized with rotations): a repeated sweep runs a point with a seedless
  // quantizer on seedless data only once (harness/sweep.cpp). Empty: always.
  std::function<bool(const Params&)> seeded;
  DataKind kind = DataKind::matrix;
  // Checks of complete parameters beyond their schema (a model's quantizer names and regular expressions),
  // run at sweep expansion so that the error names the spec's line: the parameter at fault and why. Empty: none.
  std::function<ShapeProblem(const Params&)> check;
};

const std::vector<DataSource>& data_sources();
const DataSource* find_data_source(const std::string& name);
std::vector<std::string> data_source_names();

// Largest matrix a data source may produce (elements): 2^30 floats = 4 GiB.
inline constexpr std::size_t kMaxDataElements = std::size_t{1} << 30;

// n random unit vectors of dimension d (uniform on the sphere), as rows.
Matrix random_unit_rows(std::size_t n, std::size_t d, std::uint64_t seed);

}  // namespace tqb
