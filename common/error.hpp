#pragma once
#include <stdexcept>
#include <string>

namespace tqb {

// Bad input from the user: a spec, a name, a flag, a file. The CLI maps it to exit code 2.
// The message already names the input, the place and what would be valid.
class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A run that started and then failed (I/O error, numerical failure). The CLI maps it to exit code 1.
class RunError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace tqb
