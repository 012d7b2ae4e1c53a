// 4-bit integers and nibble packing, exhaustively (16 nibbles, 256 bytes).
#include <gtest/gtest.h>

#include <bit>
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <random>

#include "breccia/formats/formats.hpp"

namespace breccia::formats {
namespace {

TEST(Int4, EveryNibbleReadsAsTwosComplementOrUnsigned) {
  for (int nibble = 0; nibble < 16; ++nibble) {
    const int expected_signed = nibble < 8 ? nibble : nibble - 16;
    EXPECT_EQ(nibble_to_int4(static_cast<std::uint8_t>(nibble), true), expected_signed);
    EXPECT_EQ(nibble_to_int4(static_cast<std::uint8_t>(nibble), false), nibble);
  }
}

TEST(Int4, EveryValueRoundTripsThroughItsNibble) {
  for (int value = -8; value <= 7; ++value) {
    const std::uint8_t nibble = int4_to_nibble(value);
    EXPECT_LT(nibble, 16);
    EXPECT_EQ(nibble_to_int4(nibble, true), value);
  }
  for (int value = 0; value <= 15; ++value) {
    const std::uint8_t nibble = int4_to_nibble(value);
    EXPECT_EQ(nibble, value);
    EXPECT_EQ(nibble_to_int4(nibble, false), value);
  }
}

TEST(Int4, PackAndUnpackEveryByte) {
  for (int byte = 0; byte < 256; ++byte) {
    const auto low = static_cast<std::uint8_t>(byte % 16);
    const auto high = static_cast<std::uint8_t>(byte / 16);
    // Element 2i is the low nibble, 2i+1 the high one (numerics.md §1, 4-bit packing).
    EXPECT_EQ(pack_nibbles(low, high), byte);
    for (std::int64_t pair = 0; pair < 3; ++pair) {
      EXPECT_EQ(unpack_nibble(static_cast<std::uint8_t>(byte), 2 * pair), low);
      EXPECT_EQ(unpack_nibble(static_cast<std::uint8_t>(byte), 2 * pair + 1), high);
    }
  }
  // Bits above the nibble are ignored when packing.
  EXPECT_EQ(pack_nibbles(0xF3, 0xA5), 0x53);
}

TEST(Int4, RoundHalfEvenMatchesTheFloatingPointEnvironment) {
  ASSERT_EQ(std::fegetround(), FE_TONEAREST);
  const float edges[] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 0.49999997f, 0.50000006f,
                         8388607.5f, 8388608.0f, -8388607.5f, 1e30f, -0.0f, 0.0f, 7.5f, -8.5f};
  for (float x : edges) {
    EXPECT_EQ(std::bit_cast<std::uint32_t>(round_half_even(x)),
              std::bit_cast<std::uint32_t>(std::nearbyint(x)))
        << x;
  }
  std::mt19937 rng(3);
  std::uniform_int_distribution<std::uint32_t> any_bits;
  std::uniform_real_distribution<float> small(-40.0f, 40.0f);
  for (int i = 0; i < 200000; ++i) {
    const float x = i % 2 == 0 ? std::bit_cast<float>(any_bits(rng)) : small(rng);
    const float expected = std::nearbyint(x);
    const float got = round_half_even(x);
    if (std::isnan(x)) {
      ASSERT_TRUE(std::isnan(got));
    } else {
      ASSERT_EQ(std::bit_cast<std::uint32_t>(got), std::bit_cast<std::uint32_t>(expected)) << x;
    }
  }
  // Every half-integer in the INT4 range goes to the even neighbour.
  for (int twice = -40; twice <= 40; twice += 2) {
    const float half = static_cast<float>(twice + 1) / 2.0f;
    const float even = (twice / 2) % 2 == 0 ? static_cast<float>(twice / 2)
                                             : static_cast<float>(twice / 2 + 1);
    EXPECT_EQ(round_half_even(half), even) << half;
  }
}

}  // namespace
}  // namespace breccia::formats
