// Runs the tiled TopKSparseAttention block code (topkTiledCta.cuh / topkSelect.cuh, the exact functions the kernel
// calls) on the CPU: every thread of a block is a cooperative fiber, __syncthreads and warp shuffles/ballots are
// rendezvous points of the fibers (checked: a collective that not every lane reaches is reported as a deadlock), and
// shared memory starts as garbage. Between rendezvous the fibers run in a seeded order, so a missing barrier shows up
// as a result that depends on the seed. The float16 path's mma.sync m16n8k8 is a warp rendezvous too: the lanes' A,
// B and C fragments are gathered by the PTX ISA layout, D is computed in float64 from the float16 inputs, rounded to
// float32 and handed back by the same layout. Used by tests/test_plugins.py.
//
//   topk_select_harness selftest
//   topk_select_harness plan ELEM_BYTES N N1 D DV BATCH_HEADS SHARED_PER_BLOCK SHARED_PER_SM SMS
//   topk_select_harness run PARAMS OUT      (PARAMS / OUT: see readParams / main)
#include "topk_sparse_attention/topkTiledCta.cuh"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <ucontext.h>
#include <vector>

namespace
{
using namespace rgbir::topk;

[[noreturn]] void fail(std::string const& message)
{
    std::fprintf(stderr, "harness: %s\n", message.c_str());
    std::exit(3);
}

// ---- an emulated thread block ----------------------------------------------------------------------------------

enum Kind
{
    kBarrier,
    kBarrierOr,
    kShflIdx,
    kShflXor,
    kShflDown,
    kBallot,
    kMma
};

//! One lane's operands of mma.m16n8k8.row.col.f32.f16.f16.f32 (c in, d out).
struct MmaLane
{
    uint32_t a0, a1, b;
    float c[4];
};

class Block
{
public:
    Block(int32_t threads, size_t sharedBytes, uint64_t seed)
        : mThreads(threads)
        , mShared(sharedBytes + 16)
        , mContexts(threads)
        , mStacks(threads)
        , mState(threads)
        , mRequest(threads)
        , mResult(threads)
        , mMma(threads)
        , mRandom(seed)
        , mSeed(seed)
    {
        for (auto& byte : mShared)
            byte = static_cast<unsigned char>(mRandom()); // shared memory is not initialised on a GPU either
    }

    unsigned char* shared() { return mShared.data(); }

    //! __syncthreads_or barriers that returned true (for TiledCta: refine/collect passes).
    int64_t trueOrBarriers() const { return mTrueOr; }

    //! Runs body(tid) for every thread to completion.
    void run(std::function<void(int32_t)> body)
    {
        mBody = std::move(body);
        for (int32_t t = 0; t < mThreads; ++t)
        {
            mStacks[t].reset(new char[kStack]);
            getcontext(&mContexts[t]);
            mContexts[t].uc_stack.ss_sp = mStacks[t].get();
            mContexts[t].uc_stack.ss_size = kStack;
            mContexts[t].uc_link = &mMain;
            makecontext(&mContexts[t], reinterpret_cast<void (*)()>(&Block::entry), 1, t);
            mState[t] = kRunnable;
        }
        std::vector<int32_t> order(mThreads);
        for (int32_t t = 0; t < mThreads; ++t)
            order[t] = t;
        while (true)
        {
            if (mSeed != 0)
                std::shuffle(order.begin(), order.end(), mRandom);
            for (int32_t t : order)
                if (mState[t] == kRunnable)
                {
                    sCurrent = this;
                    swapcontext(&mMain, &mContexts[t]);
                }
            if (allDone())
                break;
            bool const released = releaseWarps() | releaseBlock();
            if (!released)
                deadlock();
        }
    }

    uint32_t collective(int32_t tid, Kind kind, uint32_t value, int32_t param)
    {
        mRequest[tid] = Request{kind, value, param};
        mState[tid] = kWaiting;
        swapcontext(&mContexts[tid], &mMain);
        return mResult[tid];
    }

    //! The warp's mma: d = a * b + c, every lane's fragments in and out.
    void mma(int32_t tid, float (&d)[4], uint32_t a0, uint32_t a1, uint32_t b)
    {
        mMma[tid] = MmaLane{a0, a1, b, {d[0], d[1], d[2], d[3]}};
        collective(tid, kMma, 0, 0);
        for (int32_t i = 0; i < 4; ++i)
            d[i] = mMma[tid].c[i];
    }

private:
    static constexpr size_t kStack = 256 * 1024;
    enum State
    {
        kRunnable,
        kWaiting,
        kDone
    };
    struct Request
    {
        Kind kind;
        uint32_t value;
        int32_t param;
    };

    static void entry(int32_t tid)
    {
        Block* self = sCurrent;
        self->mBody(tid);
        self->mState[tid] = kDone;
    }

    static bool warpKind(Kind k) { return k != kBarrier && k != kBarrierOr; }

    bool allDone() const
    {
        for (State s : mState)
            if (s != kDone)
                return false;
        return true;
    }

    //! A warp whose 32 lanes all wait on the same shuffle/ballot gets its results.
    bool releaseWarps()
    {
        bool released = false;
        for (int32_t base = 0; base < mThreads; base += 32)
        {
            bool ready = true;
            for (int32_t l = 0; l < 32 && ready; ++l)
                ready = mState[base + l] == kWaiting && warpKind(mRequest[base + l].kind);
            if (!ready)
                continue;
            Kind const kind = mRequest[base].kind;
            for (int32_t l = 0; l < 32; ++l)
                if (mRequest[base + l].kind != kind)
                    fail("lanes of warp " + std::to_string(base / 32) + " disagree on a warp collective");
            if (kind == kMma)
            {
                warpMma(base);
                released = true;
                continue;
            }
            uint32_t ballot = 0;
            for (int32_t l = 0; l < 32; ++l)
            {
                Request const& r = mRequest[base + l];
                if (r.kind != kind || ((kind == kShflXor || kind == kShflDown) && r.param != mRequest[base].param))
                    fail("lanes of warp " + std::to_string(base / 32) + " disagree on a warp collective");
                ballot |= (r.value != 0u ? 1u : 0u) << l;
            }
            for (int32_t l = 0; l < 32; ++l)
            {
                Request const& r = mRequest[base + l];
                int32_t src = l;
                if (kind == kShflIdx)
                    src = r.param & 31;
                else if (kind == kShflXor)
                    src = l ^ (r.param & 31);
                else if (kind == kShflDown)
                    src = l + r.param < 32 ? l + r.param : l;
                mResult[base + l] = kind == kBallot ? ballot : mRequest[base + src].value;
                mState[base + l] = kRunnable;
            }
            released = true;
        }
        return released;
    }

    //! PTX ISA fragments of m16n8k8 (.f16 A and B, .f32 C and D), g = lane >> 2, t = lane & 3: a0 = {A[g][2t],
    //! A[g][2t+1]}, a1 = {A[g+8][2t], A[g+8][2t+1]}, b = {B[2t][g], B[2t+1][g]} (low half first), c0, c1 = C[g][2t],
    //! C[g][2t+1], c2, c3 = C[g+8][2t], C[g+8][2t+1].
    void warpMma(int32_t base)
    {
        auto half = [](uint32_t bits) {
            __half_raw raw{};
            raw.x = static_cast<unsigned short>(bits & 0xffffu);
            return static_cast<double>(__half2float(__half(raw)));
        };
        double a[16][8], b[8][8], c[16][8];
        for (int32_t l = 0; l < 32; ++l)
        {
            MmaLane const& m = mMma[base + l];
            int32_t const g = l >> 2, t = l & 3;
            for (int32_t i = 0; i < 2; ++i)
            {
                a[g][2 * t + i] = half(m.a0 >> (16 * i));
                a[g + 8][2 * t + i] = half(m.a1 >> (16 * i));
                b[2 * t + i][g] = half(m.b >> (16 * i));
                c[g][2 * t + i] = m.c[i];
                c[g + 8][2 * t + i] = m.c[2 + i];
            }
        }
        for (int32_t l = 0; l < 32; ++l)
        {
            int32_t const g = l >> 2, t = l & 3;
            for (int32_t e = 0; e < 4; ++e)
            {
                int32_t const row = g + 8 * (e >> 1), col = 2 * t + (e & 1);
                double sum = c[row][col];
                for (int32_t kk = 0; kk < 8; ++kk)
                    sum += a[row][kk] * b[kk][col];
                mMma[base + l].c[e] = static_cast<float>(sum);
            }
            mState[base + l] = kRunnable;
        }
    }

    //! When every thread waits at __syncthreads (or __syncthreads_or), all proceed.
    bool releaseBlock()
    {
        uint32_t any = 0;
        for (int32_t t = 0; t < mThreads; ++t)
        {
            if (mState[t] != kWaiting || warpKind(mRequest[t].kind))
                return false;
            if (mRequest[t].kind != mRequest[0].kind)
                fail("threads disagree on __syncthreads vs __syncthreads_or");
            any |= mRequest[t].value;
        }
        for (int32_t t = 0; t < mThreads; ++t)
        {
            mResult[t] = any != 0u ? 1u : 0u;
            mState[t] = kRunnable;
        }
        mTrueOr += mRequest[0].kind == kBarrierOr && any != 0u;
        return true;
    }

    [[noreturn]] void deadlock() const
    {
        int32_t counts[3] = {0, 0, 0}, warpWaits = 0;
        for (int32_t t = 0; t < mThreads; ++t)
        {
            ++counts[mState[t]];
            warpWaits += mState[t] == kWaiting && warpKind(mRequest[t].kind);
        }
        fail("deadlock: " + std::to_string(counts[kWaiting]) + " threads waiting (" + std::to_string(warpWaits)
            + " on warp collectives), " + std::to_string(counts[kDone]) + " finished");
    }

    static inline Block* sCurrent = nullptr;
    int32_t mThreads;
    std::vector<unsigned char> mShared;
    std::vector<ucontext_t> mContexts;
    std::vector<std::unique_ptr<char[]>> mStacks;
    std::vector<State> mState;
    std::vector<Request> mRequest;
    std::vector<uint32_t> mResult;
    std::vector<MmaLane> mMma;
    std::function<void(int32_t)> mBody;
    ucontext_t mMain{};
    std::mt19937_64 mRandom;
    uint64_t mSeed;
    int64_t mTrueOr{0};
};

//! The context topkTiledCta.cuh / topkSelect.cuh call: one per emulated thread.
struct HostCtx
{
    Block* b;
    int32_t tid;
    int32_t blockIndex;
    unsigned char* base; // 16-byte aligned shared memory

    int32_t thread() const { return tid; }
    int32_t block() const { return blockIndex; }
    int32_t lane() const { return tid & 31; }
    unsigned char* shared() const { return base; }
    void sync() const { b->collective(tid, kBarrier, 0, 0); }
    bool syncOr(bool p) const { return b->collective(tid, kBarrierOr, p ? 1u : 0u, 0) != 0; }
    uint32_t shflIdx(uint32_t x, int32_t src) const { return b->collective(tid, kShflIdx, x, src); }
    uint32_t shflXor(uint32_t x, int32_t mask) const { return b->collective(tid, kShflXor, x, mask); }
    uint32_t shflDown(uint32_t x, int32_t delta) const { return b->collective(tid, kShflDown, x, delta); }
    uint32_t ballot(bool p) const { return b->collective(tid, kBallot, p ? 1u : 0u, 0); }
    uint32_t atomicAdd(uint32_t* at, uint32_t x) const // fibers never interleave inside it
    {
        uint32_t const old = *at;
        *at = old + x;
        return old;
    }
    void atomicMin(uint32_t* at, uint32_t x) const { *at = x < *at ? x : *at; }
    void atomicMax(uint32_t* at, uint32_t x) const { *at = x > *at ? x : *at; }
    void mma16n8k8(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t b0) const { b->mma(tid, d, a0, a1, b0); }
};

unsigned char* aligned16(unsigned char* p)
{
    return reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(p) + 15) & ~uintptr_t{15});
}

//! Runs one warp's body(ctx) in an emulated 32-thread block.
void onWarp(uint64_t seed, std::function<void(HostCtx&)> const& body)
{
    Block block(32, 16, seed);
    block.run([&](int32_t tid) {
        HostCtx ctx{&block, tid, 0, aligned16(block.shared())};
        body(ctx);
    });
}
} // namespace

// ---- the "table" element type: scores read from a given matrix, through the kernel's own staging -------------------

//! q holds global row ids and k key ids (d = 1); TileMath<TableScore>::scores looks the score up instead of q.k, so
//! any score matrix (ties, -0.0, NaN, inf) reaches the selection exactly. v and the output are plain float32.
struct TableScore
{
    float x;
};

inline void storeValue(TableScore* p, float x) // found by argument-dependent lookup from TiledCta
{
    p->x = x;
}

namespace
{
float const* gTable = nullptr;
int64_t gTableKeys = 0;
} // namespace

namespace rgbir::topk
{
template <>
struct TileMath<TableScore>
{
    template <class Ctx>
    static void scores(Ctx&, float (&s)[4][4], TableScore const* q, int32_t qPitch, TableScore const* k, int32_t kPitch,
        int32_t, Place const& p)
    {
        for (int32_t nt = 0; nt < 4; ++nt)
            for (int32_t e = 0; e < 4; ++e)
            {
                auto const row = static_cast<int64_t>(q[p.row(e) * qPitch].x);
                auto const key = static_cast<int64_t>(k[p.key(nt, e) * kPitch].x);
                s[nt][e] = gTable[row * gTableKeys + key];
            }
    }

    template <class Ctx>
    static void pv(Ctx& ctx, float (&acc)[kVTiles][4], float const (&w)[4][4], TableScore const* v, int32_t vPitch,
        int32_t cols, Place const& p)
    {
        TileMath<float>::pv(ctx, acc, w, reinterpret_cast<float const*>(v), vPitch, cols, p);
    }
};
} // namespace rgbir::topk

namespace
{
// ---- self-test of the primitives against brute force ------------------------------------------------------------

float randomFloat(std::mt19937_64& rng)
{
    static float const specials[] = {0.f, -0.f, 1.f, -1.f, 1e-40f, -1e-40f, 3.4e38f, -3.4e38f, INFINITY, -INFINITY};
    if (rng() % 8 == 0)
        return specials[rng() % 10];
    float const f = bitsFloat(static_cast<uint32_t>(rng()));
    return f == f ? f : 1.5f;
}

int selftest()
{
    std::mt19937_64 rng(7);
    int64_t checks = 0;
    // order keys: monotone, inverse, -0 == +0
    for (int32_t i = 0; i < 200000; ++i, ++checks)
    {
        float const a = randomFloat(rng), b = randomFloat(rng);
        if ((a < b) != (orderKey(a) < orderKey(b)) || (a == b) != (orderKey(a) == orderKey(b)))
            fail("orderKey is not monotone");
        if (!(keyValue(orderKey(a)) == a))
            fail("keyValue does not invert orderKey");
    }
    if (orderKey(-0.f) != orderKey(0.f) || floatBits(keyValue(orderKey(-0.f))) != 0u)
        fail("-0.0 must share +0.0's key");
    // linear bins: monotone; a bin's bracket is exactly the keys that land in it
    for (int32_t i = 0; i < 3000; ++i)
    {
        float lo = randomFloat(rng), hi = randomFloat(rng);
        if (!(lo > -INFINITY && lo < INFINITY && hi > -INFINITY && hi < INFINITY))
            continue;
        if (lo > hi)
            std::swap(lo, hi);
        if (rng() % 4 == 0)
            hi = bitsFloat(floatBits(lo) + static_cast<uint32_t>(rng() % 5000)); // narrow ranges, few keys
        if (!(hi >= lo) || hi == INFINITY)
            continue;
        int32_t const bins = 32 << (rng() % 6);
        LinearBins const lb = linearBins(lo, hi, bins);
        uint32_t const kmin = orderKey(lo), kmax = orderKey(hi);
        float const mid = keyValue(kmin + static_cast<uint32_t>(rng() % (uint64_t(kmax - kmin) + 1)));
        int32_t const bin = binOf(lb, mid);
        Bracket const b = binBracket(lb, bin, kmin, kmax);
        ++checks;
        if (binOf(lb, keyValue(b.lo)) != bin || binOf(lb, keyValue(b.hi)) != bin || !inBracket(b, orderKey(mid)))
            fail("binBracket misses its own bin");
        if ((b.lo > kmin && binOf(lb, keyValue(b.lo - 1)) >= bin)
            || (b.hi < kmax && binOf(lb, keyValue(b.hi + 1)) <= bin))
            fail("binBracket is not the whole bin");
        if (binOf(lb, lo) > binOf(lb, mid) || binOf(lb, mid) > binOf(lb, hi))
            fail("binOf is not monotone");
        // digits of a bracket cover it exactly, in order
        int32_t const rbins = 32 << (rng() % 5);
        uint32_t const shift = digitShift(b, rbins);
        int32_t const last = digitOf(b, shift, b.hi);
        Bracket const top = digitBracket(b, shift, last);
        if (last >= rbins || top.hi != b.hi || digitBracket(b, shift, 0).lo != b.lo
            || (last > 0 && digitBracket(b, shift, last - 1).hi + 1 != top.lo))
            fail("digit brackets do not tile their bracket");
    }
    // warp steps against brute force
    for (int32_t i = 0; i < 300; ++i)
    {
        bool const narrow = rng() % 2;
        int32_t const bins = 32 << (rng() % 6);
        std::vector<uint32_t> words(bins), counts(bins);
        uint32_t total = 0;
        int32_t const sparse = static_cast<int32_t>(rng() % 3);
        for (int32_t bin = 0; bin < bins; ++bin)
        {
            uint32_t const c
                = sparse == 0 ? static_cast<uint32_t>(rng() % 9) : (rng() % (4 * sparse) == 0 ? rng() % 200 : 0);
            counts[bin] = c;
            total += c;
            Counts const h{words.data(), narrow};
            *h.word(bin) += c * h.one(bin);
        }
        uint32_t const rank = 1 + static_cast<uint32_t>(rng() % (total + 3));
        RankBin got{};
        onWarp(rng() | 1, [&](HostCtx& ctx) {
            RankBin const r = warpFindRankBin(ctx, Counts{words.data(), narrow}, bins, rank);
            if (ctx.lane() == 0)
                got = r;
        });
        ++checks;
        uint32_t above = 0;
        int32_t want = -1;
        for (int32_t bin = bins - 1; bin >= 0 && want < 0; --bin)
            if (above + counts[bin] >= rank)
                want = bin;
            else
                above += counts[bin];
        if (got.total != total || got.bin != want
            || (want >= 0 && (got.rank != rank - above || got.count != counts[want])))
            fail("warpFindRankBin disagrees with a serial scan");
    }
    for (int32_t i = 0; i < 300; ++i)
    {
        uint32_t const count = 1 + static_cast<uint32_t>(rng() % kListCapacity);
        std::vector<uint32_t> keys(count);
        for (auto& key : keys)
            key = static_cast<uint32_t>(rng() % (1 + rng() % 40)); // many ties
        uint32_t const rank = 1 + static_cast<uint32_t>(rng() % count);
        uint32_t got = 0;
        onWarp(rng() | 1, [&](HostCtx& ctx) {
            uint32_t const key = warpKthLargest(ctx, keys.data(), count, rank);
            if (ctx.lane() == 0)
                got = key;
        });
        std::vector<uint32_t> sorted = keys;
        std::sort(sorted.rbegin(), sorted.rend());
        ++checks;
        if (got != sorted[rank - 1])
            fail("warpKthLargest disagrees with sorting");
    }
    std::printf("selftest ok %lld\n", static_cast<long long>(checks));
    return 0;
}

int plan(char** argv)
{
    TiledPlan const p = planTiled(std::atoi(argv[0]), std::atoll(argv[1]), std::atoi(argv[2]), std::atoi(argv[3]),
        std::atoi(argv[4]), std::atoll(argv[5]), static_cast<size_t>(std::atoll(argv[6])),
        static_cast<size_t>(std::atoll(argv[7])), std::atoi(argv[8]));
    std::printf("ok %d rows %d threads %d slot_bytes %d bins1 %d narrow %d bytes %u\n", p.ok ? 1 : 0, p.layout.rows,
        p.layout.threads, p.layout.slotBytes, p.layout.bins1, p.layout.narrow, p.layout.bytes);
    return 0;
}

// ---- whole blocks ------------------------------------------------------------------------------------------------

//! PARAMS: int32 header[16] = {table, B, H, N, N1, D, DV, branches, row_warps, slot_bytes, narrow, seed,
//! select_only, half, 0, 0}, float32 scale, int32 divisors[branches], float32 weights[branches], then float32 arrays:
//! table == 0: q (B,H,N,D), k (B,H,N1,D), v (B,H,N1,DV); table == 1: scores (B,H,N,N1), v (B,H,N1,DV). half == 1
//! (table == 0 only): q, k and v are rounded to float16 and the block runs the float16 path (mma emulated); the
//! output is float16, written back as float32.
struct Params
{
    int32_t h[16];
    float scale;
    std::vector<int32_t> divisors;
    std::vector<float> weights;
    std::vector<float> q, k, v, table;
};

template <typename T>
void readInto(std::FILE* f, std::vector<T>& into, size_t count)
{
    into.resize(count);
    if (count && std::fread(into.data(), sizeof(T), count, f) != count)
        fail("PARAMS is too short");
}

Params readParams(char const* path)
{
    Params p{};
    std::FILE* f = std::fopen(path, "rb");
    if (!f || std::fread(p.h, sizeof p.h, 1, f) != 1 || std::fread(&p.scale, sizeof p.scale, 1, f) != 1)
        fail("cannot read PARAMS");
    size_t const bh = size_t(p.h[1]) * p.h[2], n = p.h[3], n1 = p.h[4], d = p.h[5], dv = p.h[6];
    readInto(f, p.divisors, p.h[7]);
    readInto(f, p.weights, p.h[7]);
    if (p.h[0])
        readInto(f, p.table, bh * n * n1);
    else
    {
        readInto(f, p.q, bh * n * d);
        readInto(f, p.k, bh * n1 * d);
    }
    readInto(f, p.v, bh * n1 * dv);
    std::fclose(f);
    return p;
}

//! Every block of the launch, one after the other; out (B,H,N,DV) and thresholds (B,H,N,branches). Returns the
//! number of refine/collect passes run.
template <typename T>
int64_t runBlocks(Params const& P, TiledArgs args, std::vector<float>& out, std::vector<float>& thresholds)
{
    int64_t passes = 0;
    int64_t const bh = int64_t(P.h[1]) * P.h[2];
    int32_t const n = P.h[3], branches = P.h[7];
    bool const selectOnly = P.h[12] != 0;
    for (int64_t blockIndex = 0; blockIndex < bh * args.tiles; ++blockIndex)
    {
        Block block(args.layout.threads, args.layout.bytes, static_cast<uint64_t>(P.h[11]) + blockIndex);
        unsigned char* base = aligned16(block.shared());
        block.run([&](int32_t tid) {
            HostCtx ctx{&block, tid, static_cast<int32_t>(blockIndex), base};
            TiledCta<T, HostCtx> cta(ctx, args);
            if (!selectOnly)
            {
                cta.run();
                return;
            }
            cta.stageResidentQ();
            cta.findRanges();
            for (int32_t pair = 0; 2 * pair < branches; ++pair)
                cta.selectPair(pair);
        });
        passes += block.trueOrBarriers();
        int64_t const row0 = (blockIndex % args.tiles) * args.layout.rows, head = blockIndex / args.tiles;
        auto const* t = reinterpret_cast<float const*>(base + args.layout.thresholds);
        for (int32_t r = 0; r < args.layout.rows && row0 + r < n; ++r)
            for (int32_t i = 0; i < branches; ++i)
                thresholds[((head * n) + row0 + r) * branches + i] = t[r * RGBIR_TOPK_MAX_BRANCHES + i];
    }
    return passes;
}

int runParams(char const* in, char const* outPath)
{
    Params P = readParams(in);
    int32_t const batch = P.h[1], heads = P.h[2], n = P.h[3], n1 = P.h[4], d = P.h[5], dv = P.h[6];
    int32_t const branches = P.h[7], rowWarps = P.h[8], slotBytes = P.h[9];
    bool const table = P.h[0] != 0, half = !table && P.h[13] != 0;
    TiledArgs args{};
    if (checkLaunch(batch, heads, n, n1, table ? 1 : d, dv, P.divisors.data(), P.weights.data(), branches, half ? 1 : 0,
            true, args.branches)
        != RGBIR_TOPK_OK)
        fail("bad launch arguments");
    args.layout = tiledLayout(rowWarps, slotBytes, P.h[10] != 0, half ? 2 : 4, table ? 1 : d, dv);
    args.n = n;
    args.n1 = n1;
    args.d = table ? 1 : d;
    args.dv = dv;
    args.scale = table ? 1.f : P.scale;
    args.tiles = (n + args.layout.rows - 1) / args.layout.rows;
    int64_t const bh = int64_t(batch) * heads;
    if (table)
    {
        gTable = P.table.data();
        gTableKeys = n1;
        P.q.resize(bh * n);
        P.k.resize(bh * n1);
        for (int64_t r = 0; r < bh * n; ++r)
            P.q[r] = static_cast<float>(r); // global row id
        for (int64_t j = 0; j < bh * n1; ++j)
            P.k[j] = static_cast<float>(j % n1); // key id inside the head
    }
    args.q = P.q.data();
    args.k = P.k.data();
    args.v = P.v.data();
    std::vector<float> out(bh * n * dv, NAN), thresholds(bh * n * branches, NAN);
    args.out = out.data();
    auto toHalf = [](std::vector<float> const& x) {
        std::vector<__half> h(x.size());
        for (size_t i = 0; i < x.size(); ++i)
            h[i] = __float2half_rn(x[i]);
        return h;
    };
    std::vector<__half> qh, kh, vh, outh;
    if (half)
    {
        qh = toHalf(P.q);
        kh = toHalf(P.k);
        vh = toHalf(P.v);
        outh = toHalf(out);
        args.q = qh.data();
        args.k = kh.data();
        args.v = vh.data();
        args.out = outh.data();
    }
    int64_t const passes = table ? runBlocks<TableScore>(P, args, out, thresholds)
        : half                   ? runBlocks<__half>(P, args, out, thresholds)
                                 : runBlocks<float>(P, args, out, thresholds);
    for (size_t i = 0; i < outh.size(); ++i)
        out[i] = __half2float(outh[i]);
    std::printf("refine_passes %lld\n", static_cast<long long>(passes));
    std::FILE* f = std::fopen(outPath, "wb");
    if (!f)
        fail("cannot write OUT");
    std::fwrite(out.data(), sizeof(float), out.size(), f);
    std::fwrite(thresholds.data(), sizeof(float), thresholds.size(), f);
    std::fclose(f);
    return 0;
}
} // namespace

int main(int argc, char** argv)
{
    std::string const mode = argc > 1 ? argv[1] : "";
    if (mode == "selftest")
        return selftest();
    if (mode == "plan" && argc == 11)
        return plan(argv + 2);
    if (mode == "run" && argc == 4)
        return runParams(argv[2], argv[3]);
    std::fprintf(stderr, "usage: %s selftest | plan EB N N1 D DV BH SHARED SHARED_SM SMS | run PARAMS OUT\n", argv[0]);
    return 2;
}
