// Exception types. Each maps onto one Python exception in the bindings; every message names
// the argument, what was expected and what was got.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace breccia {

// A value of the wrong kind (not an array, wrong dtype family). Python: TypeError.
class TypeError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// A value of the right kind but an unacceptable shape, size or content. Python: ValueError.
class ValueError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Operands on different devices, or a device the operation cannot run on. Python: ValueError.
class DeviceError : public ValueError {
 public:
  using ValueError::ValueError;
};

// A valid request that this build cannot serve (no CUDA, unsupported combination).
// Python: NotImplementedError.
class UnsupportedError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A file that cannot be read or written, or whose content is malformed. Python: OSError /
// ValueError for malformed content.
class IOError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Builds a message from streamable parts: fail<ValueError>("x: expected ", a, ", got ", b).
template <class Error, class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream message;
  (message << ... << parts);
  throw Error(message.str());
}

}  // namespace breccia
