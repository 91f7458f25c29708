#pragma once
// Error kinds the addon maps to JavaScript's TypeError / RangeError / Error.
// Messages name the parameter and the problem; they are shown to users as they are.
#include <stdexcept>
#include <string>

namespace fo {

struct TypeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct RangeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace fo
