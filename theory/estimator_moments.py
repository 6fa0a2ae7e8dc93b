"""Exact symbolic checks of the estimator formulas in theory/01_estimator.md and 02_subspace.md.

Every expectation here is computed exactly: a polynomial in Gaussian variables is expanded and
each monomial replaced by its moment (E[x^k] = (k-1)!! for even k, 0 for odd k). Run it as
``python theory/estimator_moments.py``; it prints each result and exits non-zero if any
closed form in ``lozo_core.moments`` disagrees with the exact value.
"""

from __future__ import annotations

import itertools
import sys

import sympy as sp

from lozo_core.moments import (
    lge_bias,
    lge_entry_kernel,
    lge_persistent_second_moment,
    lge_second_moment,
    refresh_alignment,
    refresh_energy,
    rge_bias,
    rge_second_moment,
)


def gaussian_moment(k: int) -> int:
    """E[x^k] for x ~ N(0, 1)."""
    return 0 if k % 2 else int(sp.factorial2(k - 1))


def expectation(expr: sp.Expr, gaussians: list[sp.Symbol]) -> sp.Expr:
    """Exact expectation of a polynomial in independent standard normal ``gaussians``."""
    poly = sp.Poly(sp.expand(expr), *gaussians)
    total = sp.Integer(0)
    for powers, coeff in poly.terms():
        weight = sp.Integer(1)
        for k in powers:
            weight *= gaussian_moment(k)
            if weight == 0:
                break
        total += coeff * weight
    return sp.expand(total)


def factors(m: int, n: int, r: int):
    U = sp.Matrix(m, r, lambda i, k: sp.Symbol(f"u{i}_{k}"))
    V = sp.Matrix(n, r, lambda j, k: sp.Symbol(f"v{j}_{k}"))
    return U, V, list(U) + list(V)


def symbolic_matrix(name: str, m: int, n: int) -> sp.Matrix:
    return sp.Matrix(m, n, lambda i, j: sp.Symbol(f"{name}{i}_{j}"))


def inner(A: sp.Matrix, B: sp.Matrix) -> sp.Expr:
    return sum(a * b for a, b in zip(A, B, strict=True))


def lge_second_moment_exact(m: int, n: int, r: int, G: sp.Matrix) -> sp.Expr:
    """E||<G, UV^T> UV^T / r||^2, computed exactly."""
    U, V, gs = factors(m, n, r)
    Z = U * V.T
    return expectation(inner(G, Z) ** 2 * inner(Z, Z), gs) / r**2


def conditional_mean_exact(m: int, n: int, r: int, G: sp.Matrix) -> sp.Matrix:
    """E[<G, UV^T> UV^T / r | V], expectation over U only."""
    U, V, _ = factors(m, n, r)
    Z = U * V.T
    return (inner(G, Z) * Z).applyfunc(lambda e: expectation(e, list(U))) / r


def entry_second_moments_exact(m: int, n: int, r: int, G: sp.Matrix) -> sp.Matrix:
    """E[g_hat_ab^2] for every entry, computed exactly."""
    U, V, gs = factors(m, n, r)
    Z = U * V.T
    c = inner(G, Z)
    return Z.applyfunc(lambda z: expectation(c**2 * z**2, gs) / r**2)


def cubic_bias_exact(G0: sp.Matrix, cubic, r: int | None, eps: sp.Symbol) -> sp.Matrix:
    """E[g_hat] - G at W = 0 for f = <G0, W> + cubic(W), exactly (RGE if r is None).

    The central difference of a cubic is exact through eps^2: <G0, Z> + eps^2 cubic(Z).
    """
    m, n = G0.shape
    if r is None:
        Z = symbolic_matrix("z", m, n)
        gs, scale = list(Z), 1
    else:
        U, V, gs = factors(m, n, r)
        Z, scale = U * V.T, r
    c = inner(G0, Z) + eps**2 * cubic(Z)
    return Z.applyfunc(lambda z: expectation(c * z, gs) / scale) - G0


def contractions_symbolic(cubic, m: int, n: int) -> tuple[sp.Matrix, sp.Matrix]:
    """grad(Laplacian) and the mixed contraction K_pq = sum_ab T_ab,aq,pb of T = D^3 cubic."""
    W = symbolic_matrix("w", m, n)
    f = cubic(W)
    d3 = lambda a, b, c: sp.diff(f, W[a], W[b], W[c])
    idx = lambda i, j: i * n + j
    lap = sp.Matrix(
        m,
        n,
        lambda p, q: sum(d3(idx(a, b), idx(a, b), idx(p, q)) for a in range(m) for b in range(n)),
    )
    mixed = sp.Matrix(
        m,
        n,
        lambda p, q: sum(d3(idx(a, b), idx(a, q), idx(p, b)) for a in range(m) for b in range(n)),
    )
    return lap, mixed


def check(name: str, ok: bool, detail: str) -> bool:
    print(f"[{'ok' if ok else 'FAIL'}] {name}: {detail}")
    return ok


def main() -> int:
    results = []

    for d in (1, 2, 3, 4):
        g = sp.Matrix(d, 1, lambda i, _: sp.Symbol(f"g{i}"))
        z = sp.Matrix(d, 1, lambda i, _: sp.Symbol(f"z{i}"))
        exact = expectation(inner(g, z) ** 2 * inner(z, z), list(z))
        mean = z.applyfunc(lambda e, g=g, z=z: expectation(inner(g, z) * e, list(z)))
        results.append(
            check(
                f"RGE d={d}",
                sp.simplify(exact - rge_second_moment(d, inner(g, g))) == 0 and mean == g,
                f"E g_hat = G and E||g_hat||^2 = {sp.factor(exact)}",
            )
        )

    for m, n, r in [(1, 1, 1), (2, 2, 1), (2, 3, 1), (1, 2, 2), (2, 2, 2), (2, 1, 3)]:
        G = symbolic_matrix("G", m, n)
        exact = lge_second_moment_exact(m, n, r, G)
        closed = lge_second_moment(m, n, r, inner(G, G))
        results.append(
            check(
                f"LGE second moment m={m} n={n} r={r}",
                sp.simplify(exact - closed) == 0,
                f"{sp.factor(exact / inner(G, G))} * ||G||^2",
            )
        )

    m_, n_, r_ = sp.symbols("m n r", positive=True, integer=True)
    basis = [m_ * n_ * r_, m_ * n_, m_ * r_, n_ * r_, m_, n_, r_, sp.Integer(1)]
    coeffs = sp.symbols(f"c0:{len(basis)}")
    ansatz = sum(c * b for c, b in zip(coeffs, basis, strict=True))
    G_fixed = {}
    equations = []
    for m, n, r in itertools.product((1, 2), (1, 2), (1, 2, 3)):
        G = sp.Matrix(m, n, lambda i, j: (i + 2 * j) % 3 + 1)
        G_fixed[(m, n)] = G
        value = r * lge_second_moment_exact(m, n, r, G) / inner(G, G)
        equations.append(sp.Eq(ansatz.subs({m_: m, n_: n, r_: r}), value))
    solution = sp.solve(equations, coeffs, dict=True)
    derived = sp.factor(ansatz.subs(solution[0]) / r_) if solution else None
    target = lge_second_moment(m_, n_, r_)
    results.append(
        check(
            "LGE general rank (consistency fit of exact values to r*E = sum c_k m^a n^b r^c)",
            derived is not None and sp.simplify(derived - target) == 0,
            f"E||g_hat||^2 / ||G||^2 = {derived}",
        )
    )
    gap = sp.simplify(lge_second_moment(m_, n_, r_) - rge_second_moment(m_ * n_))
    results.append(
        check(
            "LGE minus RGE second moment",
            sp.simplify(gap - 2 * (m_ + n_ + 1) / r_) == 0,
            f"{gap} * ||G||^2  (> 0 for every r: LGE never has the smaller variance)",
        )
    )

    for m, n, r in [(2, 2, 1), (2, 3, 2)]:
        G = symbolic_matrix("G", m, n)
        _, V, _ = factors(m, n, r)
        results.append(
            check(
                f"E[g_hat | V] = G V V^T / r, m={m} n={n} r={r}",
                (conditional_mean_exact(m, n, r, G) - G * V * V.T / r).expand() == sp.zeros(m, n),
                "holds exactly",
            )
        )

    for m, n, r in [(2, 2, 1), (2, 3, 2)]:
        G = symbolic_matrix("G", m, n)
        exact = entry_second_moments_exact(m, n, r, G)
        K = sp.Matrix(lge_entry_kernel(m, n, r).tolist()).applyfunc(sp.nsimplify)
        closed = (K * sp.Matrix([g**2 for g in G])).reshape(m, n)
        results.append(
            check(
                f"LGE entry-wise second moment m={m} n={n} r={r}",
                (exact - closed).expand() == sp.zeros(m, n),
                "E[g_hat (.) g_hat] = K vec(G (.) G)",
            )
        )

    for m, n, r in [(2, 3, 1), (2, 3, 2)]:
        G = symbolic_matrix("G", m, n)
        _, V, _ = factors(m, n, r)
        persistent = expectation(inner(G * V * V.T, G * V * V.T), list(V)) / r**2
        aligned = expectation(inner(G * V * V.T, G), list(V)) / n
        energy = expectation(inner(G * V * V.T, G * V * V.T), list(V)) / n**2
        sq = inner(G, G)
        results.append(
            check(
                f"lazy split and refresh, n={n} r={r}",
                sp.expand(persistent - lge_persistent_second_moment(n, r, sq)) == 0
                and sp.expand(aligned - refresh_alignment(n, r) * sq) == 0
                and sp.expand(energy - sp.nsimplify(refresh_energy(n, r)) * sq) == 0,
                f"E||G V V^T||^2/r^2 = {sp.factor(persistent / sq)} ||G||^2; "
                f"after a refresh <M',M> = {sp.factor(aligned / sq)}, ||M'||^2 = {sp.factor(energy / sq)} (x ||M||^2)",
            )
        )

    eps = sp.Symbol("epsilon", positive=True)
    G0 = sp.Matrix([[1, -2], [3, sp.Rational(1, 2)]])
    cubic = lambda W: (
        W[0, 0] ** 3
        + 2 * W[0, 0] * W[0, 1] * W[1, 0]
        - W[1, 1] ** 2 * W[0, 1]
        + 3 * W[1, 0] ** 2 * W[1, 1]
    )
    lap, mixed = contractions_symbolic(cubic, 2, 2)
    for r in (None, 1, 2):
        exact = cubic_bias_exact(G0, cubic, r, eps)
        predicted = rge_bias(lap, eps) if r is None else lge_bias(lap, mixed, eps, r)
        results.append(
            check(
                f"bias of {'RGE' if r is None else f'LGE r={r}'} on a cubic in 2x2",
                (exact - predicted).expand() == sp.zeros(2, 2),
                f"E g_hat - G = {list(exact)}",
            )
        )

    x = sp.Symbol("x")
    for name, f in [("quadratic", 3 * x**2 + 2 * x), ("cubic", x**3), ("sin", sp.sin(x))]:
        z = sp.Symbol("z")
        difference = sp.series(
            (f.subs(x, x + eps * z) - f.subs(x, x - eps * z)) / (2 * eps), eps, 0, 4
        )
        bias = sp.simplify(expectation(sp.expand(difference.removeO() * z), [z]) - sp.diff(f, x))
        predicted = eps**2 / 2 * sp.diff(f, x, 3)
        results.append(
            check(
                f"bias of RGE for f = {name} (through eps^2)",
                sp.simplify(bias - predicted) == 0,
                f"E g_hat - f'(x) = {bias}  (= eps^2 f'''(x) E[z^4]/6)",
            )
        )

    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
