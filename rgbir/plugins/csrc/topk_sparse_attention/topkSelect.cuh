/*
 * Exact, tie-inclusive per-row thresholds for TopKSparseAttention (the k-th largest score of a row), written once
 * as __host__ __device__ code: the tiled kernel runs it on the GPU and tests/topk_select_harness.cu runs the very
 * same functions on the CPU. Warp-cooperative pieces take a `Warp` (any type with lane(), shflIdx, shflDown and
 * ballot over 32 lanes): the kernel passes its CUDA context, the harness an emulated warp.
 *
 * Selection of the k-th largest score of a row, without storing the row:
 *   level 1   a histogram of linear bins between the row's finite minimum and its maximum (both known from a first
 *             pass), so the bins follow the data rather than the float exponent;
 *   bracket   the threshold bin, turned into the exact range of order keys whose scores land in it (a binary search
 *             on the same bin function, so no rounding question arises);
 *   refine    while the bracket holds more than kListCapacity scores: a histogram of key digits inside it;
 *   collect   once it holds few: the keys themselves, and the exact k-th largest among them.
 */
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define RGBIR_HD __host__ __device__ __forceinline__
#else
#define RGBIR_HD inline
#endif

namespace rgbir::topk
{
constexpr int32_t kListCapacity = 64; // keys a bracket may hold to be resolved from a list (two per lane)

// Bit-exact float helpers: intrinsics on the device (no FMA contraction), plain IEEE operations on the host.
RGBIR_HD uint32_t floatBits(float f)
{
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
#endif
}

RGBIR_HD float bitsFloat(uint32_t u)
{
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
#endif
}

RGBIR_HD float fmaRn(float a, float b, float c)
{
#ifdef __CUDA_ARCH__
    return __fmaf_rn(a, b, c);
#else
    return fmaf(a, b, c);
#endif
}

RGBIR_HD float mulRn(float a, float b)
{
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

RGBIR_HD float subRn(float a, float b)
{
#ifdef __CUDA_ARCH__
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}

RGBIR_HD int32_t highestBit(uint32_t mask) // mask != 0
{
#ifdef __CUDA_ARCH__
    return 31 - __clz(mask);
#else
    return 31 - __builtin_clz(mask);
#endif
}

RGBIR_HD int32_t lowestBit(uint32_t mask) // mask != 0
{
#ifdef __CUDA_ARCH__
    return __ffs(mask) - 1;
#else
    return __builtin_ffs(mask) - 1;
#endif
}

//! k_i = max(N1 // divisor_i, 1): how many scores branch i keeps (more on ties).
RGBIR_HD int32_t branchRank(int32_t n1, int32_t divisor)
{
    int32_t const k = n1 / divisor;
    return k > 1 ? k : 1;
}

//! Monotone map of non-NaN floats to uint32 (a < b <=> key(a) < key(b)). -0.0 gets +0.0's key: they compare equal.
RGBIR_HD uint32_t orderKey(float f)
{
    uint32_t u = floatBits(f);
    u = u == 0x80000000u ? 0u : u;
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

//! The float whose order key is `key` (inverse of orderKey).
RGBIR_HD float keyValue(uint32_t key)
{
    return bitsFloat((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

// ---- a row's range (first pass) ------------------------------------------------------------------------------

//! Row statistics from the first pass. A row with a NaN score, a +inf score or no finite score is `poisoned`: its
//! output is NaN, as in the ONNX function (NaN ranks first in TopK) and exp(inf - inf).
struct RowRange
{
    float max;
    float minFinite;
    bool nan;
};

RGBIR_HD RowRange emptyRange()
{
    return RowRange{-INFINITY, INFINITY, false};
}

RGBIR_HD void addScore(RowRange& r, float s)
{
    r.max = fmaxf(r.max, s); // fmaxf skips NaN; the flag remembers it
    r.minFinite = s > -INFINITY ? fminf(r.minFinite, s) : r.minFinite;
    r.nan = r.nan || s != s;
}

RGBIR_HD RowRange mergeRanges(RowRange a, RowRange b)
{
    return RowRange{fmaxf(a.max, b.max), fminf(a.minFinite, b.minFinite), a.nan || b.nan};
}

RGBIR_HD bool poisoned(RowRange r)
{
    return r.nan || !(r.max > -INFINITY && r.max < INFINITY);
}

// ---- level 1: linear bins ------------------------------------------------------------------------------------

//! Bins of equal width between a row's finite minimum `lo` and its maximum. Any positive `inv` keeps binOf
//! monotone, which is all exactness needs; good spread only saves passes.
struct LinearBins
{
    float lo;
    float inv;
    int32_t bins;
};

RGBIR_HD LinearBins linearBins(float lo, float hi, int32_t bins)
{
    float inv = hi > lo ? static_cast<float>(bins) / subRn(hi, lo) : 0.f;
    inv = inv < INFINITY ? inv : 0.f; // a denormal range: everything in bin 0, refined later
    return LinearBins{lo, inv, bins};
}

//! Bin of a score s >= lo; non-decreasing in s (an overflowing (s - lo) * inv lands in the last bin).
RGBIR_HD int32_t binOf(LinearBins const& b, float s)
{
    float const x = mulRn(subRn(s, b.lo), b.inv);
    return x < static_cast<float>(b.bins) ? static_cast<int32_t>(x) : b.bins - 1;
}

//! Inclusive range of order keys.
struct Bracket
{
    uint32_t lo;
    uint32_t hi;
};

//! The order keys of every score in linear bin `bin`, by binary search between the row's min and max keys (the
//! bin is not empty, so bin(keyMin) <= bin <= bin(keyMax)).
RGBIR_HD Bracket binBracket(LinearBins const& lb, int32_t bin, uint32_t keyMin, uint32_t keyMax)
{
    uint32_t a = keyMin, z = keyMax; // first key whose bin is >= bin
    while (a < z)
    {
        uint32_t const mid = a + (z - a) / 2;
        if (binOf(lb, keyValue(mid)) >= bin)
            z = mid;
        else
            a = mid + 1;
    }
    Bracket r{a, 0};
    a = keyMin;
    z = keyMax; // last key whose bin is <= bin
    while (a < z)
    {
        uint32_t const mid = a + (z - a) / 2 + (z - a) % 2;
        if (binOf(lb, keyValue(mid)) <= bin)
            a = mid;
        else
            z = mid - 1;
    }
    r.hi = a;
    return r;
}

// ---- refinement: digits of the key inside a bracket ----------------------------------------------------------

//! Smallest shift that maps the bracket's span onto `bins` digits.
RGBIR_HD uint32_t digitShift(Bracket b, int32_t bins)
{
    uint32_t const span = b.hi - b.lo;
    uint32_t shift = 0;
    while ((span >> shift) >= static_cast<uint32_t>(bins))
        ++shift;
    return shift;
}

RGBIR_HD int32_t digitOf(Bracket b, uint32_t shift, uint32_t key) // key inside b
{
    return static_cast<int32_t>((key - b.lo) >> shift);
}

RGBIR_HD bool inBracket(Bracket b, uint32_t key)
{
    return key - b.lo <= b.hi - b.lo;
}

RGBIR_HD Bracket digitBracket(Bracket b, uint32_t shift, int32_t digit)
{
    uint64_t const lo = static_cast<uint64_t>(b.lo) + (static_cast<uint64_t>(digit) << shift);
    uint64_t const hi = lo + (static_cast<uint64_t>(1) << shift) - 1;
    return Bracket{static_cast<uint32_t>(lo), static_cast<uint32_t>(hi < b.hi ? hi : b.hi)};
}

// ---- histograms: 16-bit counters packed in pairs (N1 <= 65535) or 32-bit ones --------------------------------

struct Counts
{
    uint32_t* words;
    bool narrow;

    RGBIR_HD uint32_t get(int32_t bin) const
    {
        return narrow ? (words[bin >> 1] >> ((bin & 1) << 4)) & 0xffffu : words[bin];
    }
    RGBIR_HD uint32_t* word(int32_t bin) const { return narrow ? words + (bin >> 1) : words + bin; }
    RGBIR_HD uint32_t one(int32_t bin) const { return narrow ? 1u << ((bin & 1) << 4) : 1u; }
};

//! Counters that fit in `bytes`.
RGBIR_HD int32_t binsIn(int32_t bytes, bool narrow)
{
    return narrow ? bytes / 2 : bytes / 4;
}

// ---- slot: the search for one (row, branch) threshold --------------------------------------------------------

enum SlotMode : uint32_t
{
    kResolved = 0, //!< threshold known
    kLevel1 = 1,   //!< waiting for the level-1 histogram
    kBracket = 2,  //!< level-1 bin known, its key bracket not yet
    kRefine = 3,   //!< too many scores in the bracket: histogram of key digits next
    kCollect = 4,  //!< few scores in the bracket: collect their keys next
};

struct Slot
{
    uint32_t mode;
    uint32_t rank;  //!< the wanted score is the rank-th largest inside the current bin / bracket (1-based)
    uint32_t count; //!< scores inside the current bin / bracket
    uint32_t shift; //!< digit shift (kRefine)
    Bracket bracket;
    int32_t bin;      //!< level-1 bin (kBracket)
    uint32_t listed;  //!< keys collected so far (kCollect)
    uint32_t seenMin; //!< smallest and largest key met inside the bracket during a refine pass
    uint32_t seenMax;
    float threshold; //!< the result (kResolved)
};

RGBIR_HD void resolve(Slot& s, float threshold)
{
    s.mode = kResolved;
    s.threshold = threshold;
}

RGBIR_HD void startSlot(Slot& s, int32_t rank, bool rowPoisoned)
{
    s.mode = kLevel1;
    s.rank = static_cast<uint32_t>(rank);
    s.count = 0;
    s.listed = 0;
    if (rowPoisoned)
        resolve(s, NAN); // no score is >= NaN: the branch's normaliser is 0 and the row NaN
}

//! The digit's bracket, clamped to the keys a refine pass actually met (all equal: one key, resolved at once).
RGBIR_HD Bracket refinedBracket(Slot const& s, int32_t digit)
{
    Bracket b = digitBracket(s.bracket, s.shift, digit);
    b.lo = b.lo > s.seenMin ? b.lo : s.seenMin;
    b.hi = b.hi < s.seenMax ? b.hi : s.seenMax;
    return b;
}

//! Next step once the scores' bracket, the rank inside it and their count are known.
RGBIR_HD void narrowTo(Slot& s, Bracket b, uint32_t rank, uint32_t count, int32_t refineBins)
{
    s.bracket = b;
    s.rank = rank;
    s.count = count;
    if (b.lo == b.hi)
        resolve(s, keyValue(b.lo)); // one value: tie-inclusive threshold found
    else if (count <= static_cast<uint32_t>(kListCapacity))
        s.mode = kCollect;
    else
    {
        s.mode = kRefine;
        s.shift = digitShift(b, refineBins);
    }
}

// ---- warp-cooperative steps ----------------------------------------------------------------------------------

//! Inclusive suffix sum over the 32 lanes: lane l gets the sum of lanes l..31.
template <class Warp>
RGBIR_HD uint32_t warpSuffixSum(Warp& w, uint32_t x)
{
    int32_t const lane = w.lane();
    for (int32_t offset = 1; offset < 32; offset <<= 1)
    {
        uint32_t const other = w.shflDown(x, offset);
        x += lane + offset < 32 ? other : 0u;
    }
    return x;
}

//! Where the rank-th largest entry of a histogram lies.
struct RankBin
{
    int32_t bin;    //!< -1 when rank > total
    uint32_t rank;  //!< rank inside the bin
    uint32_t count; //!< entries in the bin
    uint32_t total; //!< entries in the histogram
};

//! The bin holding the rank-th largest entry of a histogram of `bins` (a power of two, 32..1024) bins: each lane
//! sums a chunk of bins, a suffix scan over lanes finds the chunk, a second scan over its bins the bin.
template <class Warp>
RGBIR_HD RankBin warpFindRankBin(Warp& w, Counts const& h, int32_t bins, uint32_t rank)
{
    int32_t const lane = w.lane();
    int32_t const per = bins / 32;
    uint32_t chunk = 0;
    for (int32_t i = 0; i < per; ++i)
        chunk += h.get(lane * per + i);
    uint32_t const suffix = warpSuffixSum(w, chunk);
    uint32_t const total = w.shflIdx(suffix, 0);
    if (rank > total)
        return RankBin{-1, rank - total, 0, total};
    int32_t const owner = highestBit(w.ballot(suffix >= rank));
    uint32_t const above = w.shflIdx(suffix - chunk, owner);
    uint32_t const count = lane < per ? h.get(owner * per + lane) : 0u;
    uint32_t const suffix2 = warpSuffixSum(w, count);
    int32_t const j = highestBit(w.ballot(lane < per && above + suffix2 >= rank));
    uint32_t const binCount = w.shflIdx(count, j);
    uint32_t const aboveBin = above + w.shflIdx(suffix2, j) - binCount;
    return RankBin{owner * per + j, rank - aboveBin, binCount, total};
}

//! The rank-th largest of `count` (<= kListCapacity) keys: the key with fewer than rank keys above it and at
//! least rank keys at or above it.
template <class Warp>
RGBIR_HD uint32_t warpKthLargest(Warp& w, uint32_t const* keys, uint32_t count, uint32_t rank)
{
    int32_t const lane = w.lane();
    for (uint32_t base = 0; base < count; base += 32)
    {
        uint32_t const i = base + static_cast<uint32_t>(lane);
        uint32_t const key = i < count ? keys[i] : 0u;
        uint32_t greater = 0, equal = 0;
        for (uint32_t j = 0; i < count && j < count; ++j)
        {
            greater += keys[j] > key;
            equal += keys[j] == key;
        }
        uint32_t const hits = w.ballot(i < count && greater < rank && rank <= greater + equal);
        if (hits)
            return w.shflIdx(key, lowestBit(hits));
    }
    return 0u; // unreachable for 1 <= rank <= count
}
} // namespace rgbir::topk
