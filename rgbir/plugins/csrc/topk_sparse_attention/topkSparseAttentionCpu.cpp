/*
 * TopKSparseAttention on the CPU (semantics: README.md in this folder). Query rows go in blocks of kRows:
 *   scores    s = scale · q·kᵀ for the block, keys in register tiles against a transposed, zero-padded copy of k;
 *   per row   its range (max, finite minimum, NaN), then each branch's exact k_i-th largest score: a histogram of
 *             linear bins between the row's minimum and maximum (topkSelect.cuh's bins, shared with the tiled CUDA
 *             kernel), the bin holding that rank, and a partial sort of that bin's scores alone;
 *             then e = exp(s - max), each branch's normaliser Z_i = Σ_{s >= t_i} e and the per-key coefficient
 *             e_j · Σ_i [s_j >= t_i] w_i / Z_i, in place of the scores;
 *   output    coefficients · v for the block, value columns in register tiles.
 * Everything is float32 and written as plain loops the compiler vectorises (-O3 -march=native; no -ffast-math, which
 * would break the NaN policy). Worker threads take blocks from one atomic counter.
 */
#include "topkSparseAttentionCpu.h"

#include "topkLaunchArgs.h"
#include "topkSelect.cuh"

#include <algorithm>
#include <atomic>
#include <functional>
#include <thread>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace rgbir::topk::cpu
{
namespace
{
#if defined(__AVX512F__)
constexpr int32_t kLanes = 16; // floats per vector (Vec): the target's SIMD width, so that a Vec is one register
#elif defined(__AVX__)
constexpr int32_t kLanes = 8;
#else
constexpr int32_t kLanes = 4; // SSE, NEON
#endif
constexpr int32_t kRows = 4;           // query rows per block: each key and value load serves four rows
constexpr int32_t kKeyTile = kLanes;   // keys per register tile of the score loop
constexpr int32_t kValueTile = kLanes; // value columns per register tile of the output loop
constexpr int32_t kBins = 255;         // most linear bins of the threshold search; slot kBins holds -inf scores
constexpr int32_t kMinBins = 8;        // fewest bins (rows of a few keys)
constexpr int32_t kSortUpTo = 32;      // a bin with up to this many scores is sorted in place of nth_element
constexpr float kExpFloor = -87.0f;    // exp below this is under FLT_MIN·2: taken as 0

//! kLanes floats in one GCC/Clang vector, one SIMD register of the target (AVX-512, AVX, SSE or NEON): written
//! out where the compiler would not pick the right loop to vectorise on its own.
using Vec = float __attribute__((vector_size(kLanes * sizeof(float))));
using Ints = int32_t __attribute__((vector_size(kLanes * sizeof(int32_t))));
using Bins = uint8_t __attribute__((vector_size(kLanes)));

inline Vec load(float const* p)
{
    Vec v;
    memcpy(&v, p, sizeof v);
    return v;
}

inline void store(float* p, Vec v)
{
    memcpy(p, &v, sizeof v);
}

//! exp(x) for x <= 0 (a score minus its row's maximum; -inf gives 0), within a few ulp: Cody-Waite reduction
//! x = n·ln2 + r, |r| <= ln2/2, and the degree-7 Taylor polynomial of exp(r). Plain arithmetic, so a loop calling it
//! vectorises (libm's expf does not, without -ffast-math).
inline float expNonPositive(float x)
{
    float const xc = x > kExpFloor ? x : kExpFloor;
    float const n = (xc * 1.44269504088896341f + 12582912.f) - 12582912.f; // nearest integer (|n| <= 126)
    float const r = (xc - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
    float p = 1.f / 5040.f;
    p = p * r + 1.f / 720.f;
    p = p * r + 1.f / 120.f;
    p = p * r + 1.f / 24.f;
    p = p * r + 1.f / 6.f;
    p = p * r + 0.5f;
    p = p * r + 1.f;
    p = p * r + 1.f;
    float const twoToN = bitsFloat(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
    return x >= kExpFloor ? p * twoToN : 0.f;
}

struct Problem
{
    float const* q;
    float const* v;
    float* out;
    int32_t n, n1, d, dv;
    int32_t n1Padded; // keys rounded up to kKeyTile; the padding keys are zero and never read back
    float scale;
    Branches branches;
    std::vector<float> keysT; // (slices, d, n1Padded)
};

//! Per-thread scratch, sized once per call.
struct Scratch
{
    std::vector<float> q;         // kRows x d, rows past the block's end zero
    std::vector<float> s;         // kRows x n1Padded: scores, then coefficients
    std::vector<float> e;         // n1: exp(s - max) of one row
    std::vector<uint8_t> bin;     // n1: each score's bin (kBins for -inf)
    std::vector<float> candidates; // n1 + kLanes: the scores of one bin
};

//! Runs fn(i, worker) for i in [0, count) on up to `threads` threads (the caller is worker 0), items handed out one
//! at a time.
void parallelFor(int64_t count, int32_t threads, std::function<void(int64_t, int32_t)> const& fn)
{
    std::atomic<int64_t> next{0};
    auto work = [&](int32_t worker) {
        for (int64_t i = next++; i < count; i = next++)
            fn(i, worker);
    };
    int32_t const workers = static_cast<int32_t>(std::max<int64_t>(std::min<int64_t>(threads, count), 1));
    std::vector<std::thread> pool;
    for (int32_t t = 1; t < workers; ++t)
        pool.emplace_back(work, t);
    work(0);
    for (auto& t : pool)
        t.join();
}

void transposeKeys(float const* k, int64_t slice, Problem& p)
{
    float const* src = k + slice * p.n1 * p.d;
    float* dst = p.keysT.data() + slice * p.d * p.n1Padded;
    for (int32_t j = 0; j < p.n1; ++j)
        for (int32_t c = 0; c < p.d; ++c)
            dst[static_cast<int64_t>(c) * p.n1Padded + j] = src[static_cast<int64_t>(j) * p.d + c];
}

//! s[r][j] = scale · Σ_c q[r][c] k[j][c] for the block's kRows rows and every (padded) key.
void scores(Problem const& p, float const* keysT, Scratch& w)
{
    for (int32_t j0 = 0; j0 < p.n1Padded; j0 += kKeyTile)
    {
        Vec acc[kRows] = {};
        for (int32_t c = 0; c < p.d; ++c)
        {
            Vec const kc = load(keysT + static_cast<int64_t>(c) * p.n1Padded + j0);
            for (int32_t r = 0; r < kRows; ++r)
                acc[r] += w.q[r * p.d + c] * kc;
        }
        for (int32_t r = 0; r < kRows; ++r)
            store(w.s.data() + static_cast<int64_t>(r) * p.n1Padded + j0, p.scale * acc[r]);
    }
}

//! The rank-th largest of the row's scores (1-based, tie-inclusive), given each score's bin and the histogram.
float kthLargest(float const* s, int32_t n1, Scratch& w, uint32_t const* hist, int32_t bins, int32_t rank)
{
    int32_t bin = bins - 1;
    uint32_t above = 0;
    while (bin >= 0 && above + hist[bin] < static_cast<uint32_t>(rank))
        above += hist[bin--];
    if (bin < 0)
        return -INFINITY; // the rank reaches into the -inf scores (slot kBins)
    int32_t count = 0, j = 0;
#if defined(__AVX512F__)
    __m128i const wanted = _mm_set1_epi8(static_cast<char>(bin));
    for (; j + kLanes <= n1; j += kLanes) // kLanes (16) bins compared at once, their scores compress-stored
    {
        __mmask16 const hit = _mm_cmpeq_epi8_mask(_mm_loadu_si128(reinterpret_cast<__m128i const*>(&w.bin[j])), wanted);
        // compress in a register, then a full store (the buffer has kLanes floats of slack): compress-to-memory is
        // microcoded on AMD Zen 4, ~50x slower
        _mm512_storeu_ps(w.candidates.data() + count, _mm512_maskz_compress_ps(hit, _mm512_loadu_ps(s + j)));
        count += __builtin_popcount(hit);
    }
#endif
    for (; j < n1; ++j) // branch-free: most scores are not in the bin
    {
        w.candidates[count] = s[j];
        count += w.bin[j] == bin;
    }
    float* const c = w.candidates.data();
    int32_t const at = rank - above - 1;
    if (count > kSortUpTo)
    {
        std::nth_element(c, c + at, c + count, std::greater<float>());
        return c[at];
    }
    for (int32_t i = 0; i <= at; ++i) // few candidates: a partial selection sort, largest first
        for (int32_t m = i + 1; m < count; ++m)
            if (c[m] > c[i])
                std::swap(c[m], c[i]);
    return c[at];
}

//! The row's range. Reductions keep one partial result per vector lane: the compiler may not reorder float
//! operations itself (no -ffast-math).
RowRange rowRange(float const* s, int32_t n1)
{
    Vec max = Vec{} - INFINITY, minFinite = Vec{} + INFINITY, nan = Vec{};
    int32_t j = 0;
    for (; j + kLanes <= n1; j += kLanes)
    {
        Vec const x = load(s + j);
        max = x > max ? x : max;
        minFinite = x < minFinite && x > -INFINITY ? x : minFinite;
        nan = x != x ? Vec{} + 1.f : nan;
    }
    RowRange r = emptyRange(); // lanes hold no NaN (comparisons skip it): plain comparisons merge them
    for (int32_t l = 0; l < kLanes; ++l)
    {
        r.max = max[l] > r.max ? max[l] : r.max;
        r.minFinite = minFinite[l] < r.minFinite ? minFinite[l] : r.minFinite;
        r.nan = r.nan || nan[l] != 0.f;
    }
    for (; j < n1; ++j)
        addScore(r, s[j]);
    return r;
}

//! Each score's bin (binOf, kLanes at once); kBins for the scores below the finite minimum (-inf).
void binsOf(float const* s, int32_t n1, LinearBins const& lb, float minFinite, uint8_t* bin)
{
    int32_t j = 0;
    for (; j + kLanes <= n1; j += kLanes)
    {
        Vec const x = load(s + j);
        Vec const scaled = (x - lb.lo) * lb.inv; // binOf's mulRn(subRn(s, lo), inv)
        Ints const index = __builtin_convertvector(scaled < static_cast<float>(lb.bins) ? scaled : Vec{}, Ints);
        Ints const binned = scaled < static_cast<float>(lb.bins) ? index : Ints{} + (lb.bins - 1);
        Bins const out = __builtin_convertvector(x >= minFinite ? binned : Ints{} + kBins, Bins);
        memcpy(bin + j, &out, sizeof out);
    }
    for (; j < n1; ++j)
        bin[j] = static_cast<uint8_t>(s[j] >= minFinite ? binOf(lb, s[j]) : kBins);
}

//! Σ_j [s_j >= t] e_j, in kLanes partial sums.
float keptSum(float const* s, float const* e, int32_t n1, float t)
{
    Vec part = {};
    int32_t j = 0;
    for (; j + kLanes <= n1; j += kLanes)
        part += load(s + j) >= t ? load(e + j) : Vec{};
    float z = 0.f;
    for (int32_t l = 0; l < kLanes; ++l)
        z += part[l];
    for (; j < n1; ++j)
        z += s[j] >= t ? e[j] : 0.f;
    return z;
}

//! sum_j += [s_j >= t] · factor.
void addWhereKept(float const* __restrict s, float* __restrict sum, int32_t n1, float t, float factor)
{
    for (int32_t j = 0; j < n1; ++j)
        sum[j] += s[j] >= t ? factor : 0.f;
}

//! Each branch's threshold, the k_i-th largest score of a (non-poisoned) row. About two scores a bin: a short row
//! pays for few bins (nth_element on a whole row is slower than this at any length).
void thresholds(float const* s, int32_t n1, RowRange const& range, Branches const& br, Scratch& w, float* threshold)
{
    int32_t const count = std::min(kBins, std::max(kMinBins, n1 / 2));
    LinearBins const bins = linearBins(range.minFinite, range.max, count);
    binsOf(s, n1, bins, range.minFinite, w.bin.data());
    uint32_t hist[2][kBins + 1]; // two halves, so that runs of one bin do not wait on each other
    for (uint32_t* h : {hist[0], hist[1]})
    {
        std::fill(h, h + count, 0u);
        h[kBins] = 0;
    }
    for (int32_t j = 0; j + 1 < n1; j += 2)
    {
        ++hist[0][w.bin[j]];
        ++hist[1][w.bin[j + 1]];
    }
    if (n1 % 2)
        ++hist[0][w.bin[n1 - 1]];
    for (int32_t b = 0; b < count; ++b)
        hist[0][b] += hist[1][b];
    hist[0][kBins] += hist[1][kBins];
    for (int32_t i = 0; i < br.count; ++i)
        threshold[i] = kthLargest(s, n1, w, hist[0], count, br.k[i]);
}

//! Replaces a row's scores by its coefficients Σ_i w_i P_i[j]; false for a poisoned row (NaN, +inf or no finite
//! score: its output is NaN).
bool coefficients(float* s, Problem const& p, Scratch& w)
{
    int32_t const n1 = p.n1;
    RowRange const range = rowRange(s, n1);
    if (poisoned(range))
        return false;

    float threshold[RGBIR_TOPK_MAX_BRANCHES];
    thresholds(s, n1, range, p.branches, w, threshold);

    float* __restrict e = w.e.data();
    for (int32_t j = 0; j < n1; ++j)
        e[j] = expNonPositive(s[j] - range.max);
    // the coefficients overwrite the scores: first each key's sum of w_i / Z_i over the branches keeping it, then
    // times e (Z_i >= exp(0) = 1: every branch keeps the maximum)
    float* __restrict sum = w.candidates.data();
    std::fill(sum, sum + n1, 0.f);
    Branches const& br = p.branches;
    for (int32_t i = 0; i < br.count; ++i)
        addWhereKept(s, sum, n1, threshold[i], br.weight[i] / keptSum(s, e, n1, threshold[i]));
    for (int32_t j = 0; j < n1; ++j)
        s[j] = sum[j] * e[j];
    return true;
}

//! out[r][:] = Σ_j coefficient[r][j] · v[j][:] for the block's `rows` rows.
void output(Problem const& p, float const* v, Scratch const& w, int32_t rows, float* out)
{
    for (int32_t t0 = 0; t0 < p.dv; t0 += kValueTile)
    {
        int32_t const width = std::min(kValueTile, p.dv - t0);
        Vec acc[kRows] = {};
        for (int32_t j = 0; j < p.n1; ++j)
        {
            float const* vj = v + static_cast<int64_t>(j) * p.dv + t0;
            Vec vv;
            if (width == kValueTile)
                vv = load(vj);
            else
            {
                vv = Vec{};
                for (int32_t t = 0; t < width; ++t)
                    vv[t] = vj[t];
            }
            for (int32_t r = 0; r < kRows; ++r)
                acc[r] += w.s[static_cast<int64_t>(r) * p.n1Padded + j] * vv;
        }
        for (int32_t r = 0; r < rows; ++r)
            for (int32_t t = 0; t < width; ++t)
                out[static_cast<int64_t>(r) * p.dv + t0 + t] = acc[r][t];
    }
}

void block(Problem const& p, int64_t slice, int32_t row0, Scratch& w)
{
    int32_t const rows = std::min(kRows, p.n - row0);
    float const* q = p.q + (slice * p.n + row0) * p.d;
    std::fill(w.q.begin(), w.q.end(), 0.f);
    std::copy(q, q + static_cast<int64_t>(rows) * p.d, w.q.begin());
    scores(p, p.keysT.data() + slice * p.d * p.n1Padded, w);
    bool ok[kRows];
    for (int32_t r = 0; r < kRows; ++r)
    {
        float* s = w.s.data() + static_cast<int64_t>(r) * p.n1Padded;
        ok[r] = r < rows ? coefficients(s, p, w) : false;
        if (!ok[r])
            std::fill(s, s + p.n1, 0.f); // a poisoned or padding row: no NaN into the shared loads
    }
    float* out = p.out + (slice * p.n + row0) * p.dv;
    output(p, p.v + slice * p.n1 * p.dv, w, rows, out);
    for (int32_t r = 0; r < rows; ++r)
        if (!ok[r])
            std::fill(out + static_cast<int64_t>(r) * p.dv, out + static_cast<int64_t>(r + 1) * p.dv, NAN);
}
} // namespace
} // namespace rgbir::topk::cpu

extern "C" int32_t rgbirTopKSparseAttentionCpu(float const* q, float const* k, float const* v, float* out,
    int32_t batch, int32_t heads, int32_t n, int32_t n1, int32_t d, int32_t dv, float scale,
    int32_t const* k_divisors, float const* weights, int32_t branches, int32_t threads)
{
    using namespace rgbir::topk;
    using namespace rgbir::topk::cpu;
    Problem p{q, v, out, n, n1, d, dv, 0, scale, {}, {}};
    int32_t const status = checkLaunch(batch, heads, n, n1, d, dv, k_divisors, weights, branches, 0, true, p.branches);
    if (status != RGBIR_TOPK_OK)
        return status;
    if (!q || !k || !v || !out)
        return RGBIR_TOPK_BAD_SHAPE;
    threads = std::max(threads, 1);
    int64_t const slices = static_cast<int64_t>(batch) * heads;
    p.n1Padded = (n1 + kKeyTile - 1) / kKeyTile * kKeyTile;
    p.keysT.assign(static_cast<size_t>(slices) * d * p.n1Padded, 0.f);
    parallelFor(slices, threads, [&](int64_t slice, int32_t) { transposeKeys(k, slice, p); });

    int64_t const blocksPerSlice = (n + kRows - 1) / kRows;
    std::vector<Scratch> scratch(threads);
    parallelFor(slices * blocksPerSlice, threads, [&](int64_t i, int32_t worker) {
        Scratch& w = scratch[worker];
        if (w.s.empty())
        {
            w.q.assign(static_cast<size_t>(kRows) * d, 0.f);
            w.s.assign(static_cast<size_t>(kRows) * p.n1Padded, 0.f);
            w.e.assign(n1, 0.f);
            w.bin.assign(n1, 0);
            w.candidates.assign(n1 + kLanes, 0.f);
        }
        block(p, i / blocksPerSlice, static_cast<int32_t>(i % blocksPerSlice) * kRows, w);
    });
    return RGBIR_TOPK_OK;
}
