r"""The lazy low-rank subspace: LOZO as subspace optimization.

Within one lazy interval of :math:`\nu` steps the right factor :math:`V\in\mathbb R^{n\times r}`
of every matrix is fixed, so every update has the form :math:`W = W_0 + BV^\top` with
coordinates :math:`B\in\mathbb R^{m\times r}`. LOZO's step
:math:`W \leftarrow W - \eta\, c\, UV^\top / r` is then exactly ZO-SGD with step
:math:`\eta / r` on the :math:`mr`-dimensional problem :math:`h(B) = f(W_0 + BV^\top)`:
:math:`h(B\pm\varepsilon U) = f(W_0 + BV^\top \pm \varepsilon UV^\top)`. At a refresh,
:math:`B` is merged (:math:`W_0 \leftarrow W_0 + BV^\top`, :math:`B\leftarrow 0`) and a new
:math:`V` is drawn.

State carried across a refresh in subspace coordinates (momentum :math:`N`, Adam moments) is
re-expressed in the new basis by :func:`project_coordinates`:
:math:`N \leftarrow N V_{old}^\top V_{new} / n`, LOZO-M's rule.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lozo_core.estimators import check_count


def refresh_due(step: int, interval: int) -> bool:
    """True at steps 0, ν, 2ν, ...: where LOZO draws a new ``V``."""
    check_count("interval", interval)
    return step % interval == 0


def project_coordinates(N: Tensor, V_old: Tensor, V_new: Tensor) -> Tensor:
    r"""LOZO-M's carry-over of subspace coordinates: :math:`N V_{old}^\top V_{new} / n`.

    :math:`N V_{old}^\top` is the full-size momentum; multiplying by :math:`V_{new}/n` gives its
    coordinates in the new basis (exact if :math:`V_{new}^\top V_{new} = nI`, which holds in
    expectation). A random new basis keeps about :math:`r/n` of the momentum's energy.
    """
    n = V_old.shape[0]
    return N @ (V_old.T @ V_new) / n


def captured_energy(G: Tensor, V: Tensor) -> float:
    r"""Share of :math:`\|G\|_F^2` in the row space of :math:`V^\top`: :math:`\|G P_V\|^2/\|G\|^2`.

    :math:`P_V` is the orthogonal projector onto span(V). For Gaussian V the expectation is
    :math:`r/n` (:func:`lozo_core.moments.subspace_energy_fraction`).
    """
    Q, _ = torch.linalg.qr(V.to(G.dtype))
    return float((G @ Q).pow(2).sum() / G.pow(2).sum())
