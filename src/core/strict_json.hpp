// Strict JSON parsing for text that comes from files: one pass of nlohmann's SAX interface that
// builds the document and refuses, with a ValueError, what the plain parser would silently
// accept or report as a bare exception:
// - a key given twice in one object (the plain parser keeps the last, so two readers of the
//   same text could disagree about its meaning);
// - nesting deeper than a limit (bounds the memory a hostile document can make us allocate);
// - a number outside double's range (1e400), which the plain parser reports as out_of_range.
// Each key is looked up as it arrives (in the object being built, or a hash set), so the cost
// stays O(n log n) at worst; nlohmann's callback parser, the other way to see keys, rescans
// an object at its end, which made a 100k-tensor header take a minute.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "breccia/error.hpp"

namespace breccia::detail {

inline constexpr int kMaxJsonDepth = 64;

template <class BasicJson>
class StrictJsonBuilder final : public nlohmann::json_sax<BasicJson> {
  using Sax = nlohmann::json_sax<BasicJson>;
  using String = typename Sax::string_t;
  static constexpr bool kOrdered = requires { typename BasicJson::object_t::Container; };

 public:
  explicit StrictJsonBuilder(int max_depth) : max_depth_(max_depth) {}

  BasicJson& result() { return result_; }
  const std::string& error() const { return error_; }

  bool null() override { return add(BasicJson(nullptr)); }
  bool boolean(bool value) override { return add(BasicJson(value)); }
  bool number_integer(typename Sax::number_integer_t value) override {
    return add(BasicJson(value));
  }
  bool number_unsigned(typename Sax::number_unsigned_t value) override {
    return add(BasicJson(value));
  }
  bool number_float(typename Sax::number_float_t value, const String& text) override {
    if (!std::isfinite(value)) {
      return refuse("expected numbers within the range of a double, got " + text);
    }
    return add(BasicJson(value));
  }
  bool string(String& value) override { return add(BasicJson(std::move(value))); }
  bool binary(typename Sax::binary_t& value) override {
    return add(BasicJson::binary(std::move(value)));
  }
  bool start_object(std::size_t) override {
    if constexpr (kOrdered) keys_.emplace_back();
    return open(BasicJson::object());
  }
  bool key(String& key) override {
    // json's objects are sorted maps, so the object itself answers in O(log n); ordered_json's
    // search linearly, so their keys also go into a hash set.
    bool seen = false;
    if constexpr (kOrdered) {
      seen = !keys_.back().insert(key).second;
    } else {
      seen = open_.back()->contains(key);
    }
    if (seen) return refuse("expected unique keys, got '" + key + "' twice in one object");
    key_ = std::move(key);
    return true;
  }
  bool end_object() override {
    if constexpr (kOrdered) keys_.pop_back();
    open_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override { return open(BasicJson::array()); }
  bool end_array() override {
    open_.pop_back();
    return true;
  }
  bool parse_error(std::size_t, const std::string& token,
                   const nlohmann::detail::exception& error) override {
    constexpr int kNumberOverflow = 406;  // the lexer's own out_of_range for 1e400
    if (error.id == kNumberOverflow) {
      return refuse("expected numbers within the range of a double, got " + token);
    }
    return refuse(std::string("expected JSON, got a parse error (") + error.what() + ")");
  }

 private:
  bool refuse(std::string reason) {
    error_ = std::move(reason);
    return false;
  }

  // Places `value` in the innermost open container (or as the document) and returns it.
  BasicJson& place(BasicJson&& value) {
    if (open_.empty()) {
      result_ = std::move(value);
      return result_;
    }
    BasicJson& parent = *open_.back();
    if (parent.is_array()) {
      parent.push_back(std::move(value));
      return parent.back();
    }
    auto& object = parent.template get_ref<typename BasicJson::object_t&>();
    if constexpr (kOrdered) {
      // ordered_json: its operator[] searches linearly; the key is known to be new.
      using Container = typename BasicJson::object_t::Container;
      return static_cast<Container&>(object).emplace_back(std::move(key_), std::move(value)).second;
    } else {
      return object.emplace(std::move(key_), std::move(value)).first->second;
    }
  }

  bool add(BasicJson&& value) {
    place(std::move(value));
    return true;
  }

  // Only the innermost open container ever grows, so the pointers to the open ones stay valid.
  bool open(BasicJson&& container) {
    if (static_cast<int>(open_.size()) >= max_depth_) {
      return refuse("expected JSON nested at most " + std::to_string(max_depth_) +
                    " deep, got deeper");
    }
    open_.push_back(&place(std::move(container)));
    return true;
  }

  int max_depth_;
  BasicJson result_;
  std::vector<BasicJson*> open_;
  std::vector<std::unordered_set<String>> keys_;  // ordered_json only
  String key_;
  std::string error_;
};

// Parses `text` as one JSON document (see above); ValueError "<what>: <reason>" otherwise.
template <class BasicJson>
BasicJson parse_strict_json(std::string_view text, std::string_view what,
                            int max_depth = kMaxJsonDepth) {
  StrictJsonBuilder<BasicJson> builder(max_depth);
  if (!BasicJson::sax_parse(text.begin(), text.end(), &builder)) {
    fail<ValueError>(what, ": ", builder.error());
  }
  return std::move(builder.result());
}

}  // namespace breccia::detail
