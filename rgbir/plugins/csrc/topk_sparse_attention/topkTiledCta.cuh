/*
 * One thread block of the tiled TopKSparseAttention kernel, written once against a small context `Ctx` (thread
 * and block index, __syncthreads, warp shuffles/ballot, shared-memory atomics, the warp's m16n8k8 mma):
 * topkSparseAttentionTiled.cu runs it with the CUDA context (mma.sync), tests/topk_select_harness.cu with an emulated
 * block on the CPU (both element types; the mma is a warp rendezvous computed in float).
 * Design and reasons: README.md in this folder.
 *
 * A block owns 16 * rowWarps query rows of one (batch, head) and 2 * rowWarps warps: warp w computes rows
 * 16 * (w % rowWarps) .. +16 against keys 32 * (w / rowWarps) .. +32 of each 64-key tile (two "key halves"), in
 * the m16n8 mma fragment layout (rows g and g+8, keys 8 nt + 2 t + {0,1}). Every pass over the keys recomputes
 * the scores with the same instructions, so a score is bit-identical in every pass:
 *   range     row max, finite min, NaN flag;
 *   select    per pair of branches: level-1 histogram, then refine/collect passes until every threshold is exact;
 *   output    per pair and 32-channel chunk of v: exp(s - max), the pair's normalisers and one accumulator per
 *             branch (P.V on tensor cores for float16), combined as sum_i weight_i * acc_i / Z_i.
 */
#pragma once

#include "topkLaunchArgs.h"
#include "topkSelect.cuh"

#include <cuda_fp16.h>
#include <stddef.h>

namespace rgbir::topk
{
constexpr int32_t kKeyTile = 64; // keys per tile (two key halves of 32)
constexpr int32_t kChunk = 64;   // channels of q and k staged per pass
constexpr int32_t kVChunk = 32;  // channels of v per output pass (one accumulator tile of 8 per mma n-tile)
constexpr int32_t kVTiles = kVChunk / 8;
constexpr int32_t kMaxSlots = 2; // branches searched at once (one pair)
constexpr int32_t kMaxRowWarps = 4;
constexpr float kLog2e = 1.4426950408889634f; // exp(x) = exp2(x log2 e)

//! Shared-memory layout and tile shape of one launch (host-computed, passed to the kernel).
struct TiledLayout
{
    int32_t rowWarps, rows, threads;
    int32_t slotBytes, bins1, binsRefine; // per (row, slot) scratch; level-1 and refinement histogram sizes
    int32_t narrow;                       // 16-bit counters (N1 <= 65535)
    int32_t qCols, vCols;                 // channels staged per pass, padded to a multiple of 8
    int32_t qPitch, vPitch;               // staged row pitch in elements (padded against bank conflicts); k uses qPitch
    int32_t qResident;                    // d <= kChunk: q is staged once for all passes
    uint32_t q, k, v, ranges, partial, slots, thresholds, regions, bytes; // byte offsets, total
};

struct TiledArgs
{
    void const* q;
    void const* k;
    void const* v;
    void* out;
    int32_t n, n1, d, dv;
    float scale;
    Branches branches;
    int32_t tiles; // query tiles per (batch, head)
    TiledLayout layout;
};

RGBIR_HD int32_t roundUp(int32_t x, int32_t m)
{
    return (x + m - 1) / m * m;
}

RGBIR_HD TiledLayout tiledLayout(
    int32_t rowWarps, int32_t slotBytes, bool narrow, int32_t elemBytes, int32_t d, int32_t dv)
{
    TiledLayout L{};
    L.rowWarps = rowWarps;
    L.rows = 16 * rowWarps;
    L.threads = 64 * rowWarps;
    L.slotBytes = slotBytes;
    L.narrow = narrow;
    L.bins1 = binsIn(2 * slotBytes, narrow);
    L.binsRefine = binsIn(slotBytes, narrow);
    L.qCols = roundUp(d < kChunk ? d : kChunk, 8);
    L.vCols = roundUp(dv < kVChunk ? dv : kVChunk, 8);
    int32_t const pad = 16 / elemBytes; // 16 bytes: rows start 16-byte aligned, fragment reads spread over banks
    L.qPitch = L.qCols + pad;
    L.vPitch = L.vCols + pad;
    L.qResident = d <= kChunk;
    uint32_t at = 0;
    auto take = [&at](uint32_t bytes) {
        uint32_t const offset = at;
        at += (bytes + 15u) / 16u * 16u;
        return offset;
    };
    uint32_t const rows = static_cast<uint32_t>(L.rows);
    L.q = take(rows * L.qPitch * elemBytes);
    L.k = take(kKeyTile * L.qPitch * elemBytes);
    L.v = take(kKeyTile * L.vPitch * elemBytes);
    L.ranges = take(rows * sizeof(RowRange));
    L.partial = take(rows * 2 * (sizeof(RowRange) > 2 * sizeof(float) ? sizeof(RowRange) : 2 * sizeof(float)));
    L.slots = take(rows * kMaxSlots * sizeof(Slot));
    L.thresholds = take(rows * RGBIR_TOPK_MAX_BRANCHES * sizeof(float));
    L.regions = take(rows * kMaxSlots * slotBytes); // histograms, key lists, then the output staging
    L.bytes = at;
    return L;
}

//! Tile shape for a launch. 64 query rows per block (32 when that leaves SMs idle, or nothing else fits); level-1
//! bins ~ N1 / 24 (256 to 1024) so a typical threshold bin holds few enough keys to collect at once. With 64 rows a
//! layout that lets two blocks share an SM (the 128-register budget allows two) comes first, then the largest that
//! fits one block; slot sizes shrink until the layout fits. ok == false: nothing fits.
struct TiledPlan
{
    TiledLayout layout;
    bool ok;
};

inline TiledPlan planTiled(int32_t elemBytes, int64_t n, int32_t n1, int32_t d, int32_t dv, int64_t batchHeads,
    size_t sharedPerBlock, size_t sharedPerSM, int32_t sms)
{
    bool const narrow = n1 <= 65535;
    int32_t bins = 256;
    while (bins < 1024 && bins * 24 < n1)
        bins *= 2;
    int32_t const slotBytes = narrow ? bins : (2 * bins < 1024 ? 2 * bins : 1024); // 2 * slotBytes hold bins counters
    size_t const half = sharedPerSM / 2 > 1024 ? sharedPerSM / 2 - 1024 : 0;       // 1 KB per block is reserved
    size_t const budgets[2] = {half < sharedPerBlock ? half : sharedPerBlock, sharedPerBlock};
    int32_t const rowWarps = (n + 63) / 64 * batchHeads < sms ? 2 : 4;
    for (int32_t rw = rowWarps; rw >= 2; rw -= 2)
        for (size_t budget : budgets)
            for (int32_t sb = slotBytes; sb >= 256; sb /= 2)
            {
                TiledLayout const L = tiledLayout(rw, sb, narrow, elemBytes, d, dv);
                if (L.bytes <= budget)
                    return TiledPlan{L, true};
            }
    return TiledPlan{TiledLayout{}, false};
}

//! Where a thread works: rows rowBase + g (+8) of the block, keys keyBase + 8 nt + 2 t (+1) of each key tile.
struct Place
{
    int32_t tid, warp, lane, half, rowBase, keyBase, g, t;

    RGBIR_HD int32_t row(int32_t e) const { return rowBase + g + ((e >> 1) << 3); } // fragment element e = 0..3
    RGBIR_HD int32_t key(int32_t nt, int32_t e) const { return keyBase + nt * 8 + 2 * t + (e & 1); }
};

RGBIR_HD Place placeOf(int32_t tid, int32_t rowWarps)
{
    int32_t const warp = tid >> 5, lane = tid & 31, half = warp / rowWarps;
    return Place{tid, warp, lane, half, 16 * (warp % rowWarps), 32 * half, lane >> 2, lane & 3};
}

RGBIR_HD void storeValue(float* p, float x)
{
    *p = x;
}

RGBIR_HD void storeValue(__half* p, float x)
{
    *p = __float2half_rn(x);
}

//! Scores and P.V for one warp's 16 x 32 block, in the m16n8 fragment layout. float: FFMA; __half: the context's
//! m16n8k8 mma (mma.sync on the GPU, a warp rendezvous in the CPU harness).
template <typename T>
struct TileMath;

template <>
struct TileMath<float>
{
    //! s[nt][e] += q[row(e)] . k[key(nt, e)] over `cols` staged channels, one fused multiply-add at a time.
    template <class Ctx>
    RGBIR_HD static void scores(Ctx&, float (&s)[4][4], float const* q, int32_t qPitch, float const* k, int32_t kPitch,
        int32_t cols, Place const& p)
    {
        float const* q0 = q + (p.rowBase + p.g) * qPitch;
        float const* q1 = q0 + 8 * qPitch;
        float const* kr = k + (p.keyBase + 2 * p.t) * kPitch;
        for (int32_t c = 0; c < cols; ++c)
        {
            float const a0 = q0[c], a1 = q1[c];
#pragma unroll
            for (int32_t nt = 0; nt < 4; ++nt)
            {
                float const b0 = kr[nt * 8 * kPitch + c], b1 = kr[(nt * 8 + 1) * kPitch + c];
                s[nt][0] = fmaRn(a0, b0, s[nt][0]);
                s[nt][1] = fmaRn(a0, b1, s[nt][1]);
                s[nt][2] = fmaRn(a1, b0, s[nt][2]);
                s[nt][3] = fmaRn(a1, b1, s[nt][3]);
            }
        }
    }

    //! acc[ct][e] += sum over the warp's 32 keys of w[row][key] * v[key][8 ct + 2 t + (e & 1)]; each lane fetches
    //! the weights of its rows from the three other lanes of its quad.
    template <class Ctx>
    RGBIR_HD static void pv(Ctx& ctx, float (&acc)[kVTiles][4], float const (&w)[4][4], float const* v, int32_t vPitch,
        int32_t cols, Place const& p)
    {
        int32_t const tiles = (cols + 7) / 8;
#pragma unroll
        for (int32_t nt = 0; nt < 4; ++nt)
        {
#pragma unroll
            for (int32_t kk = 0; kk < 8; ++kk)
            {
                int32_t const src = (p.lane & ~3) | (kk >> 1);
                float const x0 = bitsFloat(ctx.shflIdx(floatBits(w[nt][kk & 1]), src));
                float const x1 = bitsFloat(ctx.shflIdx(floatBits(w[nt][2 + (kk & 1)]), src));
                float const* vr = v + (p.keyBase + nt * 8 + kk) * vPitch + 2 * p.t;
#pragma unroll
                for (int32_t ct = 0; ct < kVTiles; ++ct)
                {
                    if (ct < tiles)
                    {
                        float const v0 = vr[ct * 8], v1 = vr[ct * 8 + 1];
                        acc[ct][0] = fmaRn(x0, v0, acc[ct][0]);
                        acc[ct][1] = fmaRn(x0, v1, acc[ct][1]);
                        acc[ct][2] = fmaRn(x1, v0, acc[ct][2]);
                        acc[ct][3] = fmaRn(x1, v1, acc[ct][3]);
                    }
                }
            }
        }
    }
};

//! Two consecutive halves as one 32-bit fragment register, the lower-indexed one in the low 16 bits (p 4-byte aligned).
RGBIR_HD uint32_t load32(__half const* p)
{
#ifdef __CUDA_ARCH__
    return *reinterpret_cast<uint32_t const*>(p);
#else
    uint32_t x;
    memcpy(&x, p, sizeof x);
    return x;
#endif
}

RGBIR_HD uint32_t halves(__half2 h)
{
#ifdef __CUDA_ARCH__
    return *reinterpret_cast<uint32_t const*>(&h);
#else
    uint32_t x;
    memcpy(&x, &h, sizeof x);
    return x;
#endif
}

//! PTX ISA, mma.m16n8k8 with .f16 inputs, g = lane >> 2, t = lane & 3: A (16x8, row) a0 = {A[g][2t], A[g][2t+1]},
//! a1 = {A[g+8][2t], A[g+8][2t+1]}; B (8x8, col) b = {B[2t][g], B[2t+1][g]}; C/D (f32) c0, c1 = row g, columns 2t,
//! 2t+1, c2, c3 = row g+8: D's element e is the float path's s[nt][e] / acc[ct][e] (rows row(e), keys key(nt, e)).
template <>
struct TileMath<__half>
{
    //! A fragment: q rows g, g+8 x channels 2t, 2t+1; B fragment: key g of each n-tile x the same channels.
    template <class Ctx>
    RGBIR_HD static void scores(Ctx& ctx, float (&s)[4][4], __half const* q, int32_t qPitch, __half const* k,
        int32_t kPitch, int32_t cols, Place const& p)
    {
        __half const* q0 = q + (p.rowBase + p.g) * qPitch + 2 * p.t;
        __half const* q1 = q0 + 8 * qPitch;
        __half const* kr = k + (p.keyBase + p.g) * kPitch + 2 * p.t;
        for (int32_t c = 0; c < cols; c += 8) // channels past d are staged as zeros
        {
            uint32_t const a0 = load32(q0 + c), a1 = load32(q1 + c);
#pragma unroll
            for (int32_t nt = 0; nt < 4; ++nt)
                ctx.mma16n8k8(s[nt], a0, a1, load32(kr + nt * 8 * kPitch + c));
        }
    }

    //! The score fragment of n-tile nt is the A fragment of one k-step (keys 8 nt .. 8 nt + 7), weights in fp16.
    template <class Ctx>
    RGBIR_HD static void pv(Ctx& ctx, float (&acc)[kVTiles][4], float const (&w)[4][4], __half const* v, int32_t vPitch,
        int32_t cols, Place const& p)
    {
        int32_t const tiles = (cols + 7) / 8;
#pragma unroll
        for (int32_t nt = 0; nt < 4; ++nt)
        {
            uint32_t const a0 = halves(__floats2half2_rn(w[nt][0], w[nt][1]));
            uint32_t const a1 = halves(__floats2half2_rn(w[nt][2], w[nt][3]));
            __half const* v0 = v + (p.keyBase + nt * 8 + 2 * p.t) * vPitch + p.g;
            __half const* v1 = v0 + vPitch;
#pragma unroll
            for (int32_t ct = 0; ct < kVTiles; ++ct)
                if (ct < tiles)
                    ctx.mma16n8k8(acc[ct], a0, a1, halves(__halves2half2(v0[ct * 8], v1[ct * 8])));
        }
    }
};

template <typename T, class Ctx>
class TiledCta
{
public:
    RGBIR_HD TiledCta(Ctx& ctx, TiledArgs const& args)
        : ctx(ctx)
        , a(args)
        , L(args.layout)
        , p(placeOf(ctx.thread(), args.layout.rowWarps))
        , smem(ctx.shared())
    {
        int32_t const block = ctx.block();
        int64_t const bh = block / a.tiles;
        int64_t const row0 = static_cast<int64_t>(block % a.tiles) * L.rows;
        rowsValid = a.n - row0 < L.rows ? static_cast<int32_t>(a.n - row0) : L.rows;
        q = static_cast<T const*>(a.q) + (bh * a.n + row0) * a.d;
        k = static_cast<T const*>(a.k) + bh * a.n1 * a.d;
        v = static_cast<T const*>(a.v) + bh * a.n1 * a.dv;
        out = static_cast<T*>(a.out) + (bh * a.n + row0) * a.dv;
    }

    RGBIR_HD void run()
    {
        stageResidentQ();
        findRanges();
        for (int32_t pair = 0; 2 * pair < a.branches.count; ++pair)
            selectPair(pair);
        writeOutput();
    }

    RGBIR_HD void stageResidentQ()
    {
        if (L.qResident)
            stage(qTile(), L.qPitch, q, a.d, L.rows, rowsValid, 0, L.qCols, a.d);
    }

    //! One selection sweep over all keys: ``visit(e, score)`` for every valid score this thread holds (``e``: its
    //! element of the 16x8 fragment; rows ``p.row(e)``). Every sweep recomputes the scores the same way.
    template <typename Visit>
    RGBIR_HD void forEachScore(Visit visit)
    {
        float s[4][4];
        for (int32_t key0 = 0; key0 < a.n1; key0 += kKeyTile)
        {
            scores(key0, s, -1);
            for (int32_t nt = 0; nt < 4; ++nt)
                for (int32_t e = 0; e < 4; ++e)
                    if (keyValid(key0, nt, e))
                        visit(e, s[nt][e]);
        }
    }

    //! Pass 1: each row's max, finite min and NaN flag (poisoned rows, and rows past N, skip selection).
    RGBIR_HD void findRanges()
    {
        RowRange r[2] = {emptyRange(), emptyRange()};
        forEachScore([&](int32_t e, float score) { addScore(r[e >> 1], score); });
        RowRange* partial = partialRanges();
        for (int32_t i = 0; i < 2; ++i)
        {
            r[i] = mergeRanges(r[i], shflXor(r[i], 1));
            r[i] = mergeRanges(r[i], shflXor(r[i], 2));
            if (p.t == 0)
                partial[p.half * L.rows + p.row(2 * i)] = r[i];
        }
        ctx.sync();
        for (int32_t row = p.tid; row < L.rows; row += L.threads)
        {
            RowRange m = mergeRanges(partial[row], partial[L.rows + row]);
            m.nan = m.nan || row >= rowsValid;
            ranges()[row] = m;
        }
        ctx.sync();
    }

    //! Exact thresholds of branches 2 pair and 2 pair + 1 for every row, into thresholds().
    RGBIR_HD void selectPair(int32_t pair)
    {
        for (int32_t i = p.tid; i < L.rows * kMaxSlots; i += L.threads)
        {
            int32_t const branch = kMaxSlots * pair + i % kMaxSlots;
            if (branch < a.branches.count)
                startSlot(slots()[i], a.branches.k[branch], poisoned(ranges()[i / kMaxSlots]));
            else
                resolve(slots()[i], NAN);
        }
        clearRegions();
        ctx.sync();
        level1Histogram();
        level1Scan();
        level1Brackets();
        while (ctx.syncOr(anyOpenSlot()))
            refinePass();
        for (int32_t i = p.tid; i < L.rows * kMaxSlots; i += L.threads)
        {
            int32_t const branch = kMaxSlots * pair + i % kMaxSlots;
            if (branch < a.branches.count)
                thresholds()[(i / kMaxSlots) * RGBIR_TOPK_MAX_BRANCHES + branch] = slots()[i].threshold;
        }
        ctx.sync();
    }

    //! Output, one kVChunk-channel chunk of v at a time: every pair of branches adds weight_i * acc_i / Z_i.
    RGBIR_HD void writeOutput()
    {
        for (int32_t v0 = 0; v0 < a.dv; v0 += kVChunk)
        {
            int32_t const cols = a.dv - v0 < kVChunk ? a.dv - v0 : kVChunk;
            float* staged = reinterpret_cast<float*>(smem + L.regions);
            for (int32_t i = p.tid; i < L.rows * L.vCols; i += L.threads)
                staged[i] = 0.f;
            ctx.sync();
            for (int32_t pair = 0; 2 * pair < a.branches.count; ++pair)
                accumulatePair(pair, v0, cols, staged);
            for (int32_t i = p.tid; i < rowsValid * cols; i += L.threads)
            {
                int32_t const row = i / cols, c = i - row * cols;
                storeValue(out + static_cast<size_t>(row) * a.dv + v0 + c, staged[row * L.vCols + c]);
            }
            ctx.sync();
        }
    }

    RGBIR_HD Slot* slots() { return reinterpret_cast<Slot*>(smem + L.slots); }
    RGBIR_HD float* thresholds() { return reinterpret_cast<float*>(smem + L.thresholds); }
    RGBIR_HD RowRange* ranges() { return reinterpret_cast<RowRange*>(smem + L.ranges); }

private:
    RGBIR_HD T* qTile() { return reinterpret_cast<T*>(smem + L.q); }
    RGBIR_HD T* kTile() { return reinterpret_cast<T*>(smem + L.k); }
    RGBIR_HD T* vTile() { return reinterpret_cast<T*>(smem + L.v); }
    RGBIR_HD RowRange* partialRanges() { return reinterpret_cast<RowRange*>(smem + L.partial); }
    RGBIR_HD float* partialSums() { return reinterpret_cast<float*>(smem + L.partial); } // [half][row][slot]
    RGBIR_HD uint32_t* rowRegion(int32_t row) // level-1 histogram: both slots' scratch
    {
        return reinterpret_cast<uint32_t*>(smem + L.regions + static_cast<size_t>(row) * kMaxSlots * L.slotBytes);
    }
    RGBIR_HD uint32_t* slotRegion(int32_t slot) // slot = row * kMaxSlots + branch % kMaxSlots
    {
        return reinterpret_cast<uint32_t*>(smem + L.regions + static_cast<size_t>(slot) * L.slotBytes);
    }

    RGBIR_HD bool keyValid(int32_t key0, int32_t nt, int32_t e) const { return key0 + p.key(nt, e) < a.n1; }

    RGBIR_HD float shflXor(float x, int32_t mask) { return bitsFloat(ctx.shflXor(floatBits(x), mask)); }

    RGBIR_HD RowRange shflXor(RowRange r, int32_t mask)
    {
        return RowRange{shflXor(r.max, mask), shflXor(r.minFinite, mask), ctx.shflXor(r.nan ? 1u : 0u, mask) != 0};
    }

    //! Rows [0, rows) x channels [c0, c0 + cols) of src into dst (zero outside the tensor).
    RGBIR_HD void stage(T* dst, int32_t pitch, T const* src, int32_t stride, int32_t rows, int32_t rowsAvail,
        int32_t c0, int32_t cols, int32_t colsAvail)
    {
        for (int32_t i = p.tid; i < rows * cols; i += L.threads)
        {
            int32_t const r = i / cols, c = i - r * cols;
            dst[r * pitch + c]
                = r < rowsAvail && c0 + c < colsAvail ? src[static_cast<size_t>(r) * stride + c0 + c] : T();
        }
    }

    //! The thread's 16 scores of key tile key0 (scale * q . k), the same instructions in every pass; v0 >= 0 also
    //! stages channels v0 .. v0 + kVChunk - 1 of the tile's v rows. Each staging starts with a barrier: the previous
    //! tile's readers are done.
    RGBIR_HD void scores(int32_t key0, float (&s)[4][4], int32_t v0)
    {
        for (int32_t nt = 0; nt < 4; ++nt)
            for (int32_t e = 0; e < 4; ++e)
                s[nt][e] = 0.f;
        for (int32_t c0 = 0; c0 < a.d; c0 += kChunk)
        {
            ctx.sync();
            if (!L.qResident)
                stage(qTile(), L.qPitch, q, a.d, L.rows, rowsValid, c0, L.qCols, a.d);
            stage(kTile(), L.qPitch, k + static_cast<size_t>(key0) * a.d, a.d, kKeyTile, a.n1 - key0, c0, L.qCols, a.d);
            if (v0 >= 0 && c0 == 0)
                stage(vTile(), L.vPitch, v + static_cast<size_t>(key0) * a.dv, a.dv, kKeyTile, a.n1 - key0, v0, L.vCols,
                    a.dv);
            ctx.sync();
            TileMath<T>::scores(ctx, s, qTile(), L.qPitch, kTile(), L.qPitch, a.d - c0 < kChunk ? a.d - c0 : kChunk, p);
        }
        for (int32_t nt = 0; nt < 4; ++nt)
            for (int32_t e = 0; e < 4; ++e)
                s[nt][e] = mulRn(s[nt][e], a.scale);
    }

    RGBIR_HD void clearRegions()
    {
        uint32_t* words = reinterpret_cast<uint32_t*>(smem + L.regions);
        int32_t const count = L.rows * kMaxSlots * L.slotBytes / 4;
        for (int32_t i = p.tid; i < count; i += L.threads)
            words[i] = 0u;
    }

    //! Pass: histogram of linear bins of each selecting row's finite scores.
    RGBIR_HD void level1Histogram()
    {
        LinearBins lb[2];
        bool active[2];
        for (int32_t i = 0; i < 2; ++i)
        {
            RowRange const r = ranges()[p.row(2 * i)];
            lb[i] = linearBins(r.minFinite, r.max, L.bins1);
            active[i] = !poisoned(r);
        }
        forEachScore([&](int32_t e, float score) {
            int32_t const i = e >> 1;
            if (active[i] && score >= lb[i].lo)
            {
                Counts const h{rowRegion(p.row(e)), L.narrow != 0};
                int32_t const bin = binOf(lb[i], score);
                ctx.atomicAdd(h.word(bin), h.one(bin));
            }
        });
        ctx.sync();
    }

    //! Each warp takes rows in turn: the level-1 bin of every waiting slot (or -inf when k exceeds the finite scores).
    RGBIR_HD void level1Scan()
    {
        int32_t const warps = L.threads / 32;
        for (int32_t row = p.warp; row < L.rows; row += warps)
            for (int32_t j = 0; j < kMaxSlots; ++j)
            {
                Slot& s = slots()[row * kMaxSlots + j];
                if (s.mode != kLevel1)
                    continue;
                RankBin const rb = warpFindRankBin(ctx, Counts{rowRegion(row), L.narrow != 0}, L.bins1, s.rank);
                if (p.lane != 0)
                    continue;
                if (rb.bin < 0)
                    resolve(s, -INFINITY); // the rest of a non-poisoned row is -inf
                else
                {
                    s.mode = kBracket;
                    s.bin = rb.bin;
                    s.rank = rb.rank;
                    s.count = rb.count;
                }
            }
        ctx.sync();
    }

    //! Level-1 bin -> exact key bracket (binary search on the same bin function), one slot per thread.
    RGBIR_HD void level1Brackets()
    {
        for (int32_t i = p.tid; i < L.rows * kMaxSlots; i += L.threads)
        {
            Slot& s = slots()[i];
            if (s.mode != kBracket)
                continue;
            RowRange const r = ranges()[i / kMaxSlots];
            LinearBins const lb = linearBins(r.minFinite, r.max, L.bins1);
            Bracket const b = binBracket(lb, s.bin, orderKey(r.minFinite), orderKey(r.max));
            narrowTo(s, b, s.rank, s.count, L.binsRefine);
        }
        ctx.sync();
    }

    RGBIR_HD bool anyOpenSlot()
    {
        bool open = false;
        for (int32_t i = p.tid; i < L.rows * kMaxSlots; i += L.threads)
            open = open || slots()[i].mode == kRefine || slots()[i].mode == kCollect;
        return open;
    }

    //! Pass: digit histograms of crowded brackets, key lists of small ones; then each slot narrows or resolves.
    RGBIR_HD void refinePass()
    {
        clearRegions();
        for (int32_t i = p.tid; i < L.rows * kMaxSlots; i += L.threads)
        {
            slots()[i].listed = 0;
            slots()[i].seenMin = 0xffffffffu;
            slots()[i].seenMax = 0u;
        }
        ctx.sync();
        Probe mine[2][kMaxSlots];
        for (int32_t i = 0; i < 2; ++i)
            for (int32_t j = 0; j < kMaxSlots; ++j)
                mine[i][j] = probeOf(slots()[p.row(2 * i) * kMaxSlots + j]);
        forEachScore([&](int32_t e, float score) { visitRefine(mine[e >> 1], p.row(e), orderKey(score)); });
        ctx.sync();
        int32_t const warps = L.threads / 32;
        for (int32_t i = p.warp; i < L.rows * kMaxSlots; i += warps)
            finishRefine(i);
        ctx.sync();
    }

    //! What a refine pass needs of a slot, in registers: open or not, its bracket, its digit shift.
    struct Probe
    {
        uint32_t mode, shift;
        Bracket bracket;
    };

    RGBIR_HD static Probe probeOf(Slot const& s)
    {
        bool const open = s.mode == kRefine || s.mode == kCollect;
        return Probe{open ? s.mode : static_cast<uint32_t>(kResolved), s.shift, s.bracket};
    }

    RGBIR_HD void visitRefine(Probe const (&row)[kMaxSlots], int32_t r, uint32_t key)
    {
        for (int32_t j = 0; j < kMaxSlots; ++j)
        {
            Probe const& s = row[j];
            if (s.mode == kResolved || !inBracket(s.bracket, key))
                continue;
            uint32_t* region = slotRegion(r * kMaxSlots + j);
            if (s.mode == kRefine)
            {
                Counts const h{region, L.narrow != 0};
                int32_t const digit = digitOf(s.bracket, s.shift, key);
                ctx.atomicAdd(h.word(digit), h.one(digit));
                ctx.atomicMin(&slots()[r * kMaxSlots + j].seenMin, key);
                ctx.atomicMax(&slots()[r * kMaxSlots + j].seenMax, key);
            }
            else
            {
                uint32_t const at = ctx.atomicAdd(&slots()[r * kMaxSlots + j].listed, 1u);
                if (at < static_cast<uint32_t>(kListCapacity))
                    region[at] = key;
            }
        }
    }

    //! One warp: narrow a refined slot to its digit's bracket, or pick the exact key from a collected list. A
    //! recount that disagrees with the previous pass (scores not recomputed bit-identically) gives NaN, not a
    //! silently wrong threshold.
    RGBIR_HD void finishRefine(int32_t i)
    {
        Slot& s = slots()[i];
        Slot const copy = s;
        if (copy.mode == kRefine)
        {
            RankBin const rb = warpFindRankBin(ctx, Counts{slotRegion(i), L.narrow != 0}, L.binsRefine, copy.rank);
            if (p.lane == 0 && rb.total != copy.count)
                resolve(s, NAN);
            else if (p.lane == 0)
                narrowTo(s, refinedBracket(copy, rb.bin), rb.rank, rb.count, L.binsRefine);
        }
        else if (copy.mode == kCollect)
        {
            bool const consistent = copy.listed == copy.count;
            uint32_t const key = consistent ? warpKthLargest(ctx, slotRegion(i), copy.listed, copy.rank) : 0u;
            if (p.lane == 0)
                resolve(s, consistent ? keyValue(key) : NAN);
        }
    }

    //! Pass for one pair and one v chunk: per-branch accumulators, normalisers, then the weighted sum into staged.
    RGBIR_HD void accumulatePair(int32_t pair, int32_t v0, int32_t cols, float* staged)
    {
        int32_t const ia = kMaxSlots * pair, ib = ia + 1;
        bool const hasB = ib < a.branches.count;
        float ta[2], tb[2], rowMax[2];
        for (int32_t i = 0; i < 2; ++i)
        {
            int32_t const row = p.row(2 * i);
            ta[i] = thresholds()[row * RGBIR_TOPK_MAX_BRANCHES + ia];
            tb[i] = hasB ? thresholds()[row * RGBIR_TOPK_MAX_BRANCHES + ib] : NAN;
            rowMax[i] = ranges()[row].max;
        }
        float accA[kVTiles][4] = {}, accB[kVTiles][4] = {};
        float za[2] = {0.f, 0.f}, zb[2] = {0.f, 0.f};
        float s[4][4], wa[4][4], wb[4][4];
        for (int32_t key0 = 0; key0 < a.n1; key0 += kKeyTile)
        {
            scores(key0, s, v0);
            for (int32_t nt = 0; nt < 4; ++nt)
                for (int32_t e = 0; e < 4; ++e)
                {
                    int32_t const i = e >> 1;
                    bool const valid = keyValid(key0, nt, e);
                    float const x = exp2f(mulRn(subRn(s[nt][e], rowMax[i]), kLog2e)); // exp(s - max), <= 1
                    wa[nt][e] = valid && s[nt][e] >= ta[i] ? x : 0.f;
                    wb[nt][e] = valid && s[nt][e] >= tb[i] ? x : 0.f;
                    za[i] += wa[nt][e];
                    zb[i] += wb[nt][e];
                }
            TileMath<T>::pv(ctx, accA, wa, vTile(), L.vPitch, cols, p);
            if (hasB)
                TileMath<T>::pv(ctx, accB, wb, vTile(), L.vPitch, cols, p);
        }
        float ca[2], cb[2];
        normalisers(za, zb, pair, ca, cb);
        addToStaged(accA, accB, ca, cb, hasB, cols, staged);
    }

    //! weight_i / Z_i for the thread's two rows: quad sums, then the two key halves through shared memory.
    RGBIR_HD void normalisers(float (&za)[2], float (&zb)[2], int32_t pair, float (&ca)[2], float (&cb)[2])
    {
        float* partial = partialSums();
        for (int32_t i = 0; i < 2; ++i)
        {
            za[i] += shflXor(za[i], 1);
            za[i] += shflXor(za[i], 2);
            zb[i] += shflXor(zb[i], 1);
            zb[i] += shflXor(zb[i], 2);
            if (p.t == 0)
            {
                float* at = partial + (p.half * L.rows + p.row(2 * i)) * 2;
                at[0] = za[i];
                at[1] = zb[i];
            }
        }
        ctx.sync();
        int32_t const ia = kMaxSlots * pair, ib = ia + 1;
        for (int32_t i = 0; i < 2; ++i)
        {
            float const* h0 = partial + p.row(2 * i) * 2;
            float const* h1 = partial + (L.rows + p.row(2 * i)) * 2;
            ca[i] = a.branches.weight[ia] / (h0[0] + h1[0]); // Z = 0 (poisoned row): 0 * inf = NaN, as intended
            cb[i] = ib < a.branches.count ? a.branches.weight[ib] / (h0[1] + h1[1]) : 0.f;
        }
        ctx.sync(); // partial is reused by the next pair
    }

    //! staged[row][c] += ca * accA + cb * accB; the two key halves one after the other (deterministic).
    RGBIR_HD void addToStaged(float const (&accA)[kVTiles][4], float const (&accB)[kVTiles][4], float const (&ca)[2],
        float const (&cb)[2], bool hasB, int32_t cols, float* staged)
    {
        for (int32_t half = 0; half < 2; ++half)
        {
            if (p.half == half)
                for (int32_t ct = 0; ct < kVTiles; ++ct)
                    for (int32_t e = 0; e < 4; ++e)
                    {
                        int32_t const c = ct * 8 + 2 * p.t + (e & 1);
                        if (c < cols)
                        {
                            float const b = hasB ? cb[e >> 1] * accB[ct][e] : 0.f;
                            staged[p.row(e) * L.vCols + c] += ca[e >> 1] * accA[ct][e] + b;
                        }
                    }
            ctx.sync();
        }
    }

    Ctx& ctx;
    TiledArgs const& a;
    TiledLayout const& L;
    Place const p;
    unsigned char* const smem;
    int32_t rowsValid;
    T const* q;
    T const* k;
    T const* v;
    T* out;
};
} // namespace rgbir::topk
