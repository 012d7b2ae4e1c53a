// SIMD forms of the element rules (rules/, formats/minifloat.hpp), one copy per instruction
// set through Google Highway: fp32 -> element code for the signed minifloats, the INT4 levels,
// |x| maxima and the wide-float conversions. Each is tested against its scalar rule over
// inputs that cover every rounding case (tests/cpu) and, as a separate command, over all 2^32
// fp32 bit patterns (bench/cpu_exhaustive.cpp).
//
// Highway's per-target include guard: this header is compiled once per target.
#if defined(BRECCIA_CPU_SIMD_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef BRECCIA_CPU_SIMD_INL_H_
#undef BRECCIA_CPU_SIMD_INL_H_
#else
#define BRECCIA_CPU_SIMD_INL_H_
#endif

#include <hwy/highway.h>

#include <cstdint>

#include "breccia/formats/element_format.hpp"
#include "breccia/formats/formats.hpp"

HWY_BEFORE_NAMESPACE();
namespace breccia::kernels::cpu::HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using DI = hn::RebindToSigned<DF>;
using DU8 = hn::Rebind<std::uint8_t, DF>;
using VF = hn::Vec<DF>;
using VI = hn::Vec<DI>;

// Minifloat<kFormat>::encode (saturating, RNE) of every lane, as i32 codes. The same steps
// as the scalar rule: NaN by format; from the smallest normal up, the fp32 bits rounded to the
// format's mantissa (a carry bumps the exponent) and rebased, clamped to the largest finite
// code (infinities too); below it, |v| in units of the smallest subnormal, rounded to even.
template <ElementFormat kFormat>
HWY_INLINE VI EncodeMinifloat(VF v) {
  using M = Minifloat<kFormat>;
  static_assert(M::traits.is_signed && M::kMinExponent >= -126);
  constexpr int kShift = 23 - M::kMantissaBits;
  constexpr std::int32_t kMinNormalBits = (M::kMinExponent + 127) << 23;
  constexpr std::int32_t kRebase = (127 - M::traits.bias) << M::kMantissaBits;
  constexpr float kSubnormalUnits = formats::detail::exact_pow2(M::kMantissaBits - M::kMinExponent);
  const DI di;
  const DF df;
  const VI bits = hn::BitCast(di, v);
  const VI abs = hn::And(bits, hn::Set(di, 0x7FFFFFFF));
  const hn::RebindToUnsigned<DI> du;
  const VI sign =
      hn::BitCast(di, hn::ShiftLeft<M::kBits - 1>(hn::ShiftRight<31>(hn::BitCast(du, bits))));
  const VI rounded = hn::Add(hn::Add(abs, hn::Set(di, (1 << (kShift - 1)) - 1)),
                             hn::And(hn::ShiftRight<kShift>(abs), hn::Set(di, 1)));
  const VI normal = hn::Min(hn::Sub(hn::ShiftRight<kShift>(rounded), hn::Set(di, kRebase)),
                            hn::Set(di, static_cast<std::int32_t>(M::kMaxFiniteCode)));
  const VI subnormal = hn::NearestInt(hn::Mul(hn::BitCast(df, abs), hn::Set(df, kSubnormalUnits)));
  VI code =
      hn::Or(sign, hn::IfThenElse(hn::Lt(abs, hn::Set(di, kMinNormalBits)), subnormal, normal));
  const auto nan = hn::Gt(abs, hn::Set(di, 0x7F800000));
  if constexpr (M::traits.nan == formats::NanEncoding::kNone) {
    code = hn::IfThenZeroElse(nan, code);
  } else {
    code = hn::IfThenElse(nan, hn::Or(sign, hn::Set(di, static_cast<std::int32_t>(M::kNanCode))),
                          code);
  }
  return code;
}

// Minifloat<kFormat>::decode of every lane's code (its low kBits bits), exactly: the
// magnitude's bits moved into fp32's exponent and mantissa fields and rebased by the format's
// bias. The 4- and 6-bit formats rebase with an integer add and read a subnormal code
// (exponent field 0) one binade up, as 2^(1-bias) times 1.m, less 2^(1-bias): no fp32
// subnormal is formed, which on many x86 cores (Intel's) would cost a microcode assist of about
// a hundred cycles per operation, and their subnormal codes are common (FP4's +-0.5). FP8's are
// rare, so FP8 keeps the cheaper multiply by 2^(127-bias), through an fp32 subnormal for them.
// NaN and infinity by format, a NaN being the canonical one with the code's sign.
template <ElementFormat kFormat>
HWY_INLINE VF DecodeMinifloat(VI code) {
  using M = Minifloat<kFormat>;
  static_assert(M::traits.is_signed && M::traits.has_subnormals);
  const DF df;
  const DI di;
  const VI magnitude = hn::And(code, hn::Set(di, static_cast<std::int32_t>(M::kMagnitudeMask)));
  const VI sign = hn::ShiftLeft<32 - M::kBits>(
      hn::And(code, hn::Set(di, static_cast<std::int32_t>(M::kSignBit))));
  const VI placed = hn::ShiftLeft<23 - M::kMantissaBits>(magnitude);
  VF value;
  if constexpr (M::kBits <= 6) {
    constexpr std::int32_t kRebase = (127 - M::traits.bias) << 23;
    const auto subnormal = hn::Lt(magnitude, hn::Set(di, 1 << M::kMantissaBits));
    const VI rebased = hn::Add(
        placed, hn::IfThenElse(subnormal, hn::Set(di, kRebase + (1 << 23)), hn::Set(di, kRebase)));
    const VF one_binade_up =
        hn::IfThenElseZero(hn::RebindMask(df, subnormal),
                           hn::Set(df, formats::detail::exact_pow2(1 - M::traits.bias)));
    value = hn::Sub(hn::BitCast(df, rebased), one_binade_up);
  } else {
    constexpr float kRebase = formats::detail::exact_pow2(127 - M::traits.bias);
    value = hn::Mul(hn::BitCast(df, placed), hn::Set(df, kRebase));
  }
  if constexpr (M::traits.nan == formats::NanEncoding::kAllOnes) {
    const auto nan = hn::Eq(magnitude, hn::Set(di, static_cast<std::int32_t>(M::kMagnitudeMask)));
    value =
        hn::IfThenElse(hn::RebindMask(df, nan), hn::BitCast(df, hn::Set(di, 0x7FC00000)), value);
  } else if constexpr (M::traits.nan == formats::NanEncoding::kIEEE) {
    const VI top = hn::Set(di, static_cast<std::int32_t>(M::kInfinityCode));
    const auto special = hn::Gt(magnitude, hn::Sub(top, hn::Set(di, 1)));
    const VF inf_or_nan = hn::BitCast(
        df,
        hn::IfThenElse(hn::Eq(magnitude, top), hn::Set(di, 0x7F800000), hn::Set(di, 0x7FC00000)));
    value = hn::IfThenElse(hn::RebindMask(df, special), inf_or_nan, value);
  }
  return hn::BitCast(df, hn::Or(hn::BitCast(di, value), sign));
}

// Where a vector holds at least 8 fp32 lanes (x86's AVX2 and AVX-512: a fixed width), E2M1's 8
// magnitudes fit one vector and a lane permute decodes them: fewer operations than
// DecodeMinifloat's bit moves, and exactly its values (the table is the scalar rule's).
// (The macro is redefined for each target this header is compiled for.)
#undef BRECCIA_CPU_E2M1_TABLE
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
#define BRECCIA_CPU_E2M1_TABLE 1
HWY_INLINE VF DecodeE2M1ByTable(VI code) {
  using M = Minifloat<ElementFormat::kE2M1>;
  const DF df;
  const DI di;
  HWY_ALIGN static constexpr float kMagnitudes[hn::MaxLanes(DF())] = {
      M::decode(0), M::decode(1), M::decode(2), M::decode(3),
      M::decode(4), M::decode(5), M::decode(6), M::decode(7)};  // the rest: unused lanes
  const VI magnitude = hn::And(code, hn::Set(di, static_cast<std::int32_t>(M::kMagnitudeMask)));
  const VF value =
      hn::TableLookupLanes(hn::Load(df, kMagnitudes), hn::IndicesFromVec(df, magnitude));
  const VI sign = hn::ShiftLeft<32 - M::kBits>(
      hn::And(code, hn::Set(di, static_cast<std::int32_t>(M::kSignBit))));
  return hn::BitCast(df, hn::Or(hn::BitCast(di, value), sign));
}
#endif

// The value of every lane's INT4 nibble: -8..7 (two's complement) or 0..15.
template <bool kSigned>
HWY_INLINE VF DecodeInt4(VI nibble) {
  const DI di;
  if constexpr (kSigned) {
    return hn::ConvertTo(DF(), hn::Sub(hn::Xor(nibble, hn::Set(di, 8)), hn::Set(di, 8)));
  } else {
    return hn::ConvertTo(DF(), nibble);
  }
}

// The exact value of element codes in any format (formats/element_format.hpp decode_element).
template <ElementFormat kFormat>
HWY_INLINE VF DecodeElement(VI code) {
  if constexpr (kFormat == ElementFormat::kInt4Signed) {
    return DecodeInt4<true>(code);
  } else if constexpr (kFormat == ElementFormat::kInt4Unsigned) {
    return DecodeInt4<false>(code);
#ifdef BRECCIA_CPU_E2M1_TABLE
  } else if constexpr (kFormat == ElementFormat::kE2M1) {
    return DecodeE2M1ByTable(code);
#endif
  } else {
    return DecodeMinifloat<kFormat>(code);
  }
}

// numerics::int4_rounded_quotient: rne(x / scale), 0 where the quotient is NaN.
HWY_INLINE VF Int4Level(VF x, VF scale) {
  const VF quotient = hn::Div(x, scale);
  return hn::IfThenElseZero(hn::Eq(quotient, quotient), hn::Round(quotient));
}

// Signed INT4 nibbles: clamp(level, -8, 7) & 0xF.
HWY_INLINE VI EncodeInt4Signed(VF x, VF scale) {
  const DF df;
  const DI di;
  const VF level = hn::Min(hn::Max(Int4Level(x, scale), hn::Set(df, -8.0f)), hn::Set(df, 7.0f));
  return hn::And(hn::ConvertTo(di, level), hn::Set(di, 0xF));
}

// Unsigned INT4 nibbles: clamp(level + zero_point, 0, 15).
HWY_INLINE VI EncodeInt4Unsigned(VF x, VF scale, VF zero_point) {
  const DF df;
  const DI di;
  const VF level = hn::Add(Int4Level(x, scale), zero_point);
  return hn::ConvertTo(di, hn::Min(hn::Max(level, hn::Set(df, 0.0f)), hn::Set(df, 15.0f)));
}

// |x| as fp32 bits: for non-negative floats signed-integer order is magnitude order, with
// every NaN above infinity, so a max over these is amax with NaN winning.
HWY_INLINE VI AbsBits(VF x) {
  const DI di;
  return hn::And(hn::BitCast(di, x), hn::Set(di, 0x7FFFFFFF));
}

// Stores the low byte of each i32 code (every code is 0..255): a byte gather, cheaper than a
// saturating demotion's chain of packs.
HWY_INLINE void StoreCodes(VI codes, std::uint8_t* out) {
  hn::StoreU(hn::U8FromU32(hn::BitCast(hn::RebindToUnsigned<DI>(), codes)), DU8(), out);
}

// fp32 -> bf16 bits, rounded to nearest even; a NaN keeps its sign and top payload, quieted
// (formats::BF16::encode with IEEE overflow).
HWY_INLINE VI Bf16Bits(VF v) {
  const DI di;
  const VI bits = hn::BitCast(di, v);
  const VI shifted =
      hn::BitCast(di, hn::ShiftRight<16>(hn::BitCast(hn::RebindToUnsigned<DI>(), bits)));
  const VI rounded = hn::BitCast(
      di, hn::ShiftRight<16>(hn::BitCast(
              hn::RebindToUnsigned<DI>(),
              hn::Add(bits, hn::Add(hn::Set(di, 0x7FFF), hn::And(shifted, hn::Set(di, 1)))))));
  const auto nan = hn::Gt(hn::And(bits, hn::Set(di, 0x7FFFFFFF)), hn::Set(di, 0x7F800000));
  return hn::IfThenElse(nan, hn::Or(shifted, hn::Set(di, 0x40)), rounded);
}

}  // namespace breccia::kernels::cpu::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // BRECCIA_CPU_SIMD_INL_H_
