"""Float64 reference for TopKSparseAttention and a checker that knows where float32 may legitimately differ.

Selection is discontinuous: a kernel computes scores in float32, so near a threshold it may keep a key that the
exact (float64) scores drop, or drop one they keep. ``check_attention`` bounds each score's float32 error, calls a
row *ambiguous* when some key's keep/drop decision can flip within those bounds, and then accepts the row if it
matches the reference computed with one of the possible selections. Clean rows must match the single exact
reference. Poisoned rows (a NaN score, a +inf score, or no finite score) must be NaN throughout, as in the ONNX
function and PyTorch. Everything here runs on the CPU or the GPU (torch tensors, float64).

Score error bound for key j (``arithmetic``):
  "float"  (d + 8) 2^-24 scale sum_c |q_c k_jc| + 2^-24 |s_j|: a float32 FMA chain or tensor-core products of exact
           float16 inputs accumulated in float32 (truncating adds included), then one rounding by the scale;
  "exact"  2^-23 |s_j|: inputs whose products and sums are exact in float32 (small dyadic values), only the scale
           rounds; equal exact sums give equal float32 scores, so float64 ties are ties for the kernel too;
  "none"   0: the scores are given exactly (the CPU harness's table mode).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch

ARITHMETIC = ("float", "exact", "none")
AMBIGUOUS_RATE = 0.05  # the share of ambiguous rows the tests' inputs are chosen to stay under (about 2% at N1 1600)


def most_ambiguous(rows: int, rate: float = AMBIGUOUS_RATE, tail: float = 1e-6) -> int:
    """The most ambiguous rows a sample of ``rows`` may show when rows are ambiguous at ``rate``: the count a
    binomial sample exceeds with probability at most ``tail``. So the bound holds on any seed, and inputs or error
    bounds far more ambiguous than ``rate`` still fail (about 5.9% of 12800 rows, 8.5% of 1024, 16% of 128)."""
    counts = torch.arange(rows + 1, dtype=torch.float64)
    p = torch.distributions.Binomial(rows, torch.tensor(rate, dtype=torch.float64)).log_prob(counts).exp()
    above = torch.cat([p.flip(0).cumsum(0).flip(0)[1:], torch.zeros(1, dtype=torch.float64)])  # P(count > k)
    return int((above <= tail).nonzero()[0])


def branch_counts(n1: int, divisors) -> list[int]:
    return [max(n1 // int(d), 1) for d in divisors]


def poisoned_rows(scores: torch.Tensor) -> torch.Tensor:
    """Rows whose output is NaN by the op's policy: a NaN score, a +inf score or no finite score."""
    top = torch.where(scores.isnan(), torch.full_like(scores, -torch.inf), scores).amax(-1)
    return scores.isnan().any(-1) | ~torch.isfinite(top)


def thresholds(scores: torch.Tensor, divisors) -> torch.Tensor:
    """Exact tie-inclusive thresholds (..., branches): the k_i-th largest score; NaN on poisoned rows."""
    counts = branch_counts(scores.shape[-1], divisors)
    ordered = scores.sort(-1, descending=True).values
    out = torch.stack([ordered[..., c - 1] for c in counts], -1)
    return out.masked_fill(poisoned_rows(scores)[..., None], torch.nan)


def score_error(q: torch.Tensor, k: torch.Tensor, scores: torch.Tensor, scale: float, arithmetic: str) -> torch.Tensor:
    """Per-score bound on |float32 kernel score - exact score| (rows x keys)."""
    if arithmetic == "none":
        return torch.zeros_like(scores)
    if arithmetic == "exact":
        return torch.where(torch.isfinite(scores), 2.0**-23 * scores.abs(), 0.0)
    d = q.shape[-1]
    bound = (d + 8) * 2.0**-24 * abs(scale) * (q.abs() @ k.abs().transpose(-1, -2)) + 2.0**-24 * scores.abs()
    return torch.where(torch.isfinite(scores), bound, 0.0)  # an infinite (or NaN) score is what it is


@dataclass
class Report:
    rows: int = 0
    ambiguous: int = 0
    poisoned: int = 0
    failures: list = field(default_factory=list)  # (flat row, reason)
    worst_clean: float = 0.0  # max |out - ref| / magnitude over clean rows

    @property
    def ambiguous_fraction(self) -> float:
        return self.ambiguous / max(self.rows, 1)

    def merge(self, other: Report) -> None:
        self.failures += [(row + self.rows, why) for row, why in other.failures]
        self.rows += other.rows
        self.ambiguous += other.ambiguous
        self.poisoned += other.poisoned
        self.worst_clean = max(self.worst_clean, other.worst_clean)

    def summary(self) -> str:
        return (f"{self.rows} rows, {self.ambiguous} ambiguous ({100 * self.ambiguous_fraction:.2f}%), "
                f"{self.poisoned} poisoned, worst clean error {self.worst_clean:.3g} of magnitude, "
                f"{len(self.failures)} failures {self.failures[:5]}")


def _branch_terms(e: torch.Tensor, v: torch.Tensor, kept: torch.Tensor):
    """Per-row numerator (dv), |numerator| (dv) and denominator of one branch: sums over the kept keys."""
    w = e * kept
    return w @ v, w @ v.abs(), w.sum(-1)


def check_rows(q, k, v, out, scale, divisors, weights, arithmetic="float", tol=1e-5, max_undecided=10) -> Report:
    """Check out (rows, dv) against q (rows, d), k (n1, d), v (n1, dv) of one (batch, head); float64 inside."""
    q, k, v, out = (t.double() for t in (q, k, v, out))
    scores = scale * (q @ k.T)
    return check_scores(scores, v, out, divisors, weights, score_error(q, k, scores, scale, arithmetic),
                        arithmetic, tol, max_undecided)


def check_scores(scores, v, out, divisors, weights, error, arithmetic="none", tol=1e-5, max_undecided=10) -> Report:
    """As check_rows, from float64 scores (rows, n1) and their error bounds."""
    rows, n1 = scores.shape
    report = Report(rows=rows)
    bad = poisoned_rows(scores)
    report.poisoned = int(bad.sum())
    for r in bad.nonzero().flatten().tolist():
        if not out[r].isnan().all():
            report.failures.append((r, "poisoned row is not NaN"))
    fine = ~bad
    if not fine.any():
        return report
    idx = fine.nonzero().flatten()
    s, err, got = scores[idx], error[idx], out[idx]
    e = (s - s.amax(-1, keepdim=True)).exp()
    counts = branch_counts(n1, divisors)
    ordered = s.sort(-1, descending=True).values
    ref = torch.zeros_like(got)
    magnitude = torch.zeros_like(got)
    clean = torch.ones(len(idx), dtype=torch.bool, device=s.device)
    bands = []
    for count, weight in zip(counts, weights):
        t = ordered[:, count - 1 : count]
        kept = s >= t
        num, mag, den = _branch_terms(e, v, kept)
        ref += weight * num / den[:, None]
        magnitude += abs(weight) * mag / den[:, None]
        low_in = torch.where(kept, s - err, torch.inf).amin(-1, keepdim=True)
        high_out = torch.where(kept, -torch.inf, s + err).amax(-1, keepdim=True)
        undecided = ((kept & (s - err <= high_out)) | (~kept & (s + err >= low_in))) & ~kept.all(-1, keepdim=True)
        exact_ties = arithmetic != "float" or bool((err == 0).all())
        separated = (low_in[:, 0] > high_out[:, 0]) | kept.all(-1)  # a -inf threshold keeps everything
        clean &= separated & ((kept.sum(-1) == count) | exact_ties)
        bands.append((kept, undecided))
    ratio = ((got - ref).abs() / (magnitude + 1e-300)).amax(-1)
    ok = ratio <= tol
    if clean.any():
        report.worst_clean = float(ratio[clean].max())
    for i in (clean & ~ok).nonzero().flatten().tolist():
        report.failures.append((int(idx[i]), f"clean row off by {float(ratio[i]):.3g} of its magnitude"))
    for i in (~clean).nonzero().flatten().tolist():
        report.ambiguous += 1
        why = _match_alternatives(e[i], v, got[i], counts, weights, [(kept[i], und[i]) for kept, und in bands], tol,
                                  max_undecided)
        if why:
            report.failures.append((int(idx[i]), why))
    return report


def _match_alternatives(e, v, got, counts, weights, bands, tol, max_undecided) -> str:
    """'' when got matches the reference for some selection the error bounds allow, else the reason. The exact
    selection comes first (it usually matches); the row moves to the CPU (small tensors, many combinations)."""
    e, v, got = e.cpu(), v.cpu(), got.cpu()
    options = []
    for (kept, undecided), count in zip(bands, counts):
        kept, undecided = kept.cpu(), undecided.cpu()
        keys = undecided.nonzero().flatten().tolist()
        if len(keys) > max_undecided:
            return f"{len(keys)} undecided keys: too ambiguous to check"
        certain = kept & ~undecided
        sets = [kept]
        for size in range(max(count - int(certain.sum()), 0), len(keys) + 1):
            for chosen in itertools.combinations(keys, size):
                mask = certain.clone()
                mask[list(chosen)] = True
                if not torch.equal(mask, kept):
                    sets.append(mask)
        options.append([((e * m) @ v, (e * m) @ v.abs(), (e * m).sum()) for m in sets])
    best = float("inf")
    for terms in itertools.product(*options):
        cand = sum(w * num / den for (num, _, den), w in zip(terms, weights))
        mag = sum(abs(w) * mag / den for (_, mag, den), w in zip(terms, weights))
        best = min(best, float(((got - cand).abs() / (mag + 1e-300)).max()))
        if best <= tol:
            return ""
    return f"ambiguous row matches no allowed selection (best {best:.3g} of its magnitude)"


def check_attention(q, k, v, out, scale, divisors, weights, arithmetic="float", tol=1e-5, row_chunk=512) -> Report:
    """check_rows over every (batch, head), in chunks of rows (memory stays bounded at large N1)."""
    assert arithmetic in ARITHMETIC
    report = Report()
    b, h = q.shape[:2]
    for bi in range(b):
        for hi in range(h):
            for r0 in range(0, q.shape[2], row_chunk):
                sl = slice(r0, r0 + row_chunk)
                report.merge(check_rows(q[bi, hi, sl], k[bi, hi], v[bi, hi], out[bi, hi, sl], scale, divisors,
                                        weights, arithmetic, tol))
    return report
