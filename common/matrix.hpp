#pragma once
#include <Eigen/Core>

namespace tqb {
// Row-major float matrix: rows = output channels (or vectors, or tokens), cols = input dimension.
using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
}  // namespace tqb
