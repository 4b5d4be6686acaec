"""Shared test machinery: logits families, histories, comparison against transformers, and the
margins that decide when exact equality with transformers is not defined.

Large arrays are not drawn element by element: hypothesis draws the shape, the family and a seed,
and NumPy generates the array from the seed (shrinking still works on the shape and the family).

Why margins: transformers computes probabilities with torch's float32 softmax; fastlogits computes
the same quantities with a different (also ~1e-7 accurate) summation. When a cumulative mass or a
logit lies within ~1e-6 of a threshold, or values tie exactly at a top-p / typical boundary (torch's
sort is unstable), the two can legitimately decide differently. Tests reject such examples with
`assume`, using margins computed here in float64 from the inputs alone (not from either result).
The margins grow with V because torch's float32 softmax is itself less accurate for large V (see
`mass_tol`): for a flat distribution over 60,000 tokens the top-p / typical boundary is only defined
to within a token or two, and such examples are rejected rather than compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import assume
from hypothesis import strategies as st

FAMILIES = ("peaked", "typical", "flat")


@dataclass
class Case:
    scores: np.ndarray  # (B, V) float32
    ids: np.ndarray  # (B, L) int64

    @property
    def B(self) -> int:
        return self.scores.shape[0]

    @property
    def V(self) -> int:
        return self.scores.shape[1]


def make_scores(
    rng: np.random.Generator, B: int, V: int, family: str, neg_inf: float, all_inf_row: bool
) -> np.ndarray:
    """peaked: entropy ~0.5 nats; typical: Zipf 1.5 over a shuffled vocabulary (~3 nats);
    flat: N(0, sigma) with sigma in [0.3, 1] (~ln V, like a random-init GPT-2)."""
    out = np.empty((B, V), np.float64)
    for b in range(B):
        if family == "peaked":
            row = rng.normal(0.0, 1.0, V) * rng.uniform(1.0, 3.0)
            row[rng.integers(V)] += rng.uniform(8.0, 14.0)
        elif family == "typical":
            row = np.empty(V)
            row[rng.permutation(V)] = -1.5 * np.log(np.arange(1, V + 1)) + rng.normal(0.0, 0.05, V)
            row += rng.normal(0.0, 3.0)
        else:
            row = rng.normal(0.0, rng.uniform(0.3, 1.0), V)
        out[b] = row
    s = out.astype(np.float32)
    if neg_inf > 0:
        finite = s.copy()
        s[rng.random((B, V)) < neg_inf] = -np.inf
        for b in np.nonzero(np.isneginf(s).all(axis=1))[0]:  # keep >= 1 finite entry per row...
            j = rng.integers(V)
            s[b, j] = finite[b, j]
    if all_inf_row and B > 1:  # ...unless an all -inf row is asked for
        s[rng.integers(B)] = -np.inf
    return s


def make_ids(rng: np.random.Generator, B: int, L: int, V: int, repeats: bool) -> np.ndarray:
    hi = min(V, 6) if repeats else V
    return rng.integers(0, hi, size=(B, L)).astype(np.int64)


@st.composite
def cases(
    draw,
    max_b: int = 16,
    max_v: int = 60000,
    max_l: int = 300,
    min_v: int = 1,
    neg_inf: bool = True,
    all_inf_rows: bool = True,
) -> Case:
    B = draw(st.integers(1, max_b))
    V = draw(
        st.one_of(
            st.integers(min_v, 64), st.integers(max(min_v, 65), 5000), st.integers(max(min_v, 5001), max_v)
        )
        if max_v > 5000
        else st.integers(min_v, max_v)
    )
    L = draw(st.integers(0, max_l))
    family = draw(st.sampled_from(FAMILIES))
    frac = draw(st.sampled_from([0.0, 0.0, 0.01, 0.3])) if neg_inf else 0.0
    all_inf = draw(st.booleans()) if neg_inf and all_inf_rows else False
    repeats = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    return Case(make_scores(rng, B, V, family, frac, all_inf), make_ids(rng, B, L, V, repeats))


# ----------------------------------------------------------------------------------------------
# Running both implementations


def run_hf(proc, ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return proc(torch.from_numpy(ids.copy()), torch.from_numpy(scores.copy())).numpy()


def run_fl(proc, ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return np.asarray(proc(ids.copy(), scores.copy()))


def assert_same(ref: np.ndarray, got: np.ndarray, rtol: float = 1e-6) -> None:
    """Identical -inf mask; finite values equal within `rtol` relative (filter values included)."""
    assert ref.shape == got.shape
    mref, mgot = np.isneginf(ref), np.isneginf(got)
    if not np.array_equal(mref, mgot):
        rows, cols = np.nonzero(mref != mgot)
        raise AssertionError(
            f"-inf masks differ at {len(rows)} positions, e.g. (row, col, ref, got) "
            f"{[(int(r), int(c), float(ref[r, c]), float(got[r, c])) for r, c in zip(rows[:5], cols[:5])]}"
        )
    fin = ~mref
    np.testing.assert_allclose(got[fin], ref[fin], rtol=rtol, atol=0)


# ----------------------------------------------------------------------------------------------
# Margins (float64, from the inputs)

LOGIT_TOL = 2e-6  # logit units, relative to max(1, |threshold|)
KEY_TOL = 2e-5  # typical-decoding keys (torch computes them from a float32 entropy ~ 10)


def mass_tol(V: int) -> float:
    """torch's float32 softmax sums V terms in float32: its probabilities carry a common relative error
    that grows with V (measured 1.1e-6 at V = 55k for the full sum, 1.4e-5 on a partial cumsum). A
    cumulative mass closer than this to a threshold is not decidable against it."""
    return max(1e-6, 5e-10 * V)


def softmax64(row: np.ndarray) -> np.ndarray:
    r = row.astype(np.float64)
    m = r.max()
    e = np.exp(r - m)
    return e / e.sum()


def finite_rows(scores: np.ndarray):
    for row in scores:
        if np.isfinite(row).any():
            yield row


def assume_top_p_margin(scores: np.ndarray, top_p: float, min_keep: int = 1) -> None:
    c = 1.0 - float(np.float32(1.0 - top_p))  # torch compares with float32(1 - top_p)
    for row in finite_rows(scores):
        order = np.argsort(-row.astype(np.float64), kind="stable")
        p = softmax64(row)[order]
        above = np.concatenate([[0.0], np.cumsum(p)[:-1]])
        assume(np.min(np.abs(above - c)) > mass_tol(len(row)))
        # The boundary token must not tie with the next one (torch's order among ties is arbitrary).
        j = int(np.searchsorted(above, c)) - 1  # last kept by mass
        j = max(j, min_keep - 1)
        v = row[order]
        if 0 <= j < len(v) - 1:
            assume(v[j] != v[j + 1])  # -inf == -inf counts: which -inf tokens torch keeps is arbitrary


def assume_logit_margin(row: np.ndarray, thr: float, tol: float = LOGIT_TOL) -> None:
    fin = row[np.isfinite(row)].astype(np.float64)
    if len(fin) and np.isfinite(thr):
        assume(np.min(np.abs(fin - thr)) > tol * max(1.0, abs(thr)))


def assume_kth_gap(scores: np.ndarray, k: int) -> None:
    """No tie at the k-th largest value (where transformers' `topk` picks an arbitrary subset)."""
    for row in finite_rows(scores):
        v = np.sort(row)[::-1]
        if k < len(v):
            assume(v[k - 1] != v[k])  # -inf == -inf counts too


def assume_min_p_margin(scores: np.ndarray, min_p: float, min_keep: int = 1) -> None:
    for row in finite_rows(scores):
        if np.float32(min_p) > 0:
            assume_logit_margin(row, float(np.max(row)) + np.log(float(np.float32(min_p))))
    if min_keep > 1:
        assume_kth_gap(scores, min_keep)


def entropy64(row: np.ndarray) -> float:
    p = softmax64(row)
    nz = p > 0
    return float(-(p[nz] * np.log(p[nz])).sum())


def assume_prob_floor_margin(scores: np.ndarray, floor_of_row) -> None:
    """Epsilon / eta: prob < floor  <=>  x < max + log(floor) + log(sum(exp(x - max)))."""
    for row in finite_rows(scores):
        r = row.astype(np.float64)
        m = r.max()
        ln_z = np.log(np.exp(r[np.isfinite(r)] - m).sum())
        floor = floor_of_row(row)
        thr = m + np.log(floor) + ln_z
        # torch's probabilities (and eta's float32 entropy) carry the normalization error of mass_tol.
        assume_logit_margin(row, thr, max(LOGIT_TOL, mass_tol(len(row))))


def assume_top_h_margin(scores: np.ndarray, top_h: float) -> None:
    """Top-h (transformers 5.23): no tie at the 100th place (``torch.topk`` picks an arbitrary one), no
    cumulative entropy within float32 rounding of the threshold, no probability at the float32 underflow
    edge (transformers' ``0 * log 0`` is NaN: such tokens are never kept)."""
    for row in finite_rows(scores):
        v = np.sort(row.astype(np.float64))[::-1]
        n = min(100, len(v))
        if n < len(v):
            assume(v[n - 1] != v[n])  # (-inf == -inf counts)
        top = v[:n]
        top = top[np.isfinite(top)]
        d = top - top[0]
        assume(not np.any((d < -80.0) & (d > -120.0)))  # p between ~1e-35 and ~1e-52: the f32 exp's edge
        p = np.exp(d) / np.exp(d).sum()
        logp = d - np.log(np.exp(d).sum())
        ent = -(p * logp).sum()
        tau = np.float32(ent) * np.float32(top_h)
        live = p > np.exp(-100.0)
        cum = np.cumsum(np.where(live, -p * np.log(np.where(live, p, 1.0)), 0.0))[live]
        if len(cum) > 1:
            assume(np.min(np.abs(cum[1:] - tau)) > 1e-5 * max(1.0, float(tau)))


def assume_typical_margin(scores: np.ndarray, mass: float, min_keep: int = 1) -> None:
    m32 = float(np.float32(mass))
    for row in finite_rows(scores):
        r = row.astype(np.float64)
        m = r.max()
        fin = np.isfinite(r)
        logp = np.full(len(r), -np.inf)
        logp[fin] = (r[fin] - m) - np.log(np.exp(r[fin] - m).sum())
        p = np.exp(logp)
        ent = -(p[fin] * logp[fin]).sum()
        key = np.abs(-logp - ent)
        order = np.argsort(key, kind="stable")
        cum = np.cumsum(p[order])
        assume(np.min(np.abs(cum - m32)) > mass_tol(len(row)))
        j = max(int(np.searchsorted(cum, m32, side="left")), min_keep - 1)  # the boundary position
        k = key[order]
        # torch's keys carry ~1e-6 of rounding: a near-tie on either side of the boundary token can swap
        # it with a neighbour of another mass and move the crossing. (inf - inf is NaN: rejected too.)
        if j + 1 < len(k):
            assume(k[j + 1] - k[j] > KEY_TOL)
        if 0 < j < len(k):
            assume(k[j] - k[j - 1] > KEY_TOL)
