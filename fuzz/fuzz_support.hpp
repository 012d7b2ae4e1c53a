// Shared by the libFuzzer targets: a file the fuzzed bytes are written to, and the one rule
// every target checks: a hostile input may only end in one of breccia's documented exceptions.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>

#include <cstddef>
#include <cstdint>
#include <string>

#include "breccia/error.hpp"

namespace breccia::fuzz {

// An in-memory file (memfd) holding the current input, opened by path like any other file.
inline std::string file_holding(const std::uint8_t* data, std::size_t size) {
  static const int fd = ::memfd_create("breccia-fuzz", MFD_CLOEXEC);
  if (fd < 0 || ::ftruncate(fd, 0) != 0) std::abort();
  std::size_t done = 0;
  while (done < size) {
    const ssize_t written = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (written <= 0) std::abort();
    done += static_cast<std::size_t>(written);
  }
  return "/proc/self/fd/" + std::to_string(fd);
}

// A directory of this process's own for files a target writes.
inline std::string scratch_directory() {
  std::string pattern = "/tmp/breccia-fuzz-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) std::abort();
  return pattern;
}

// Runs `body`; breccia's exceptions are the expected outcome of a bad input, anything else
// (std::bad_alloc, nlohmann's own exceptions, std::out_of_range, ...) escapes to libFuzzer,
// which reports it as a crash.
template <class Body>
void expect_only_breccia_errors(Body&& body) {
  try {
    body();
  } catch (const TypeError&) {
  } catch (const ValueError&) {  // DeviceError included
  } catch (const UnsupportedError&) {
  } catch (const IOError&) {
  }
}

}  // namespace breccia::fuzz
