// Helpers shared by the GoogleTest suites: checking that an action throws a given error type
// and what its message says.
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <string>
#include <string_view>

namespace breccia::test_support {

// Success when `text` contains `part`; the failure message shows both.
inline ::testing::AssertionResult contains(const std::string& text, std::string_view part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

// The message of the `Error` that `action` throws; a test failure if it throws nothing or
// another type.
template <class Error, class Action>
std::string error_message(Action&& action) {
  try {
    action();
  } catch (const Error& error) {
    return error.what();
  } catch (const std::exception& other) {
    ADD_FAILURE() << "threw the wrong type: " << other.what();
    return {};
  }
  ADD_FAILURE() << "did not throw";
  return {};
}

}  // namespace breccia::test_support
