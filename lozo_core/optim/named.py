r"""The named optimizers: thin compositions of a direction, an update rule and an engine.

Every one takes ``params`` and the common keywords of
:class:`~lozo_core.optim.optimizer.ZeroOrderOptimizer` (``lr``, ``eps``, ``q``,
``weight_decay``, ``seed``, ``blocks``, ``engine``, ``keep_directions``); a misspelt keyword
raises ``TypeError``.
With :math:`\lambda` the decoupled weight decay and :math:`c_j = (f_+^{(j)}-f_-^{(j)})/2\varepsilon`:

============== ======================================= ============= ===================
optimizer      step                                    direction     engines
============== ======================================= ============= ===================
MeZO / ZO-SGD  :math:`\hat g = \frac1q\sum c_j z_j`     Gaussian      inplace
ZOSGDSign      :math:`\frac1q\sum \mathrm{sign}(c_j) z_j` Gaussian    inplace
ZOSGDMomentum  heavy-ball :math:`N\leftarrow\beta N+\hat g` Gaussian  inplace
ZOSGDCons      best of :math:`\theta, \theta\mp\eta\hat g` Gaussian   inplace
ZOAdam         Adam on :math:`\hat g` (state 2× model)  Gaussian     inplace
LOZO           :math:`\hat g_B = \frac1{qr}\sum c_j U_j` LazyLowRank  sidepath, inplace
LOZO-M         averaged :math:`N\leftarrow\beta N+(1-\beta)\hat g_B` LazyLowRank  same
LOZOAdam       Adam on :math:`\hat g_B` (state O(mr))   LazyLowRank   same
============== ======================================= ============= ===================
"""

from __future__ import annotations

from dataclasses import replace

from lozo_core.optim import rules
from lozo_core.optim.directions import Gaussian, LazyLowRank
from lozo_core.optim.optimizer import ZeroOrderOptimizer


class MeZO(ZeroOrderOptimizer):
    r"""ZO-SGD with the two-point Gaussian estimator (MeZO, Malladi et al. 2023).

    .. math:: \theta \leftarrow (1-\eta\lambda)\theta - \eta\,\hat g,\qquad
       \hat g = \tfrac1q\textstyle\sum_j c_j z_j.

    For SGD decoupled and L2-coupled decay coincide: MeZO's code's
    :math:`\theta - \eta(\hat g + \lambda\theta)` is the same update.
    ``sparsity``/``mask_interval``: ZO-Bench's sparse perturbation
    (:class:`~lozo_core.optim.directions.Gaussian`); ZO-Bench's own mask
    (``fast_random_mask_like``) zeroes a fraction :math:`\Phi(\text{sparsity})`, not ``sparsity``.
    """

    rule_class = rules.SGD

    def __init__(
        self, params, *, lr: float, sparsity: float = 0.0, mask_interval: int = 1, **common
    ):
        super().__init__(
            params,
            direction=Gaussian(sparsity, mask_interval),
            rule=self.rule_class(),
            lr=lr,
            **common,
        )


class ZOSGDSign(MeZO):
    r"""ZO-SGD-Sign (ZO-Bench): :math:`\theta \leftarrow (1-\eta\lambda)\theta - \eta\,\operatorname{sign}(c)\,z`.

    The sign is of the scalar difference :math:`c`, not element-wise, as in ZO-Bench's code.
    """

    rule_class = rules.Sign


class ZOSGDCons(MeZO):
    r"""ZO-SGD-Cons (ZO-Bench): evaluate :math:`f` at :math:`\theta`, :math:`\theta-\eta\hat g` and
    :math:`\theta+\eta\hat g`; keep the lowest. Three more forwards per step."""

    rule_class = rules.Conservative


class ZOSGDMomentum(ZeroOrderOptimizer):
    r"""ZO-SGD-MMT (ZO-Bench), heavy-ball momentum:
    :math:`N \leftarrow \beta N + \hat g`, :math:`\theta \leftarrow (1-\eta\lambda)\theta - \eta N`."""

    def __init__(self, params, *, lr: float, momentum: float = 0.9, **common):
        super().__init__(
            params,
            direction=Gaussian(),
            rule=rules.Momentum(momentum, dampening=0.0),
            lr=lr,
            **common,
        )


class ZOAdam(ZeroOrderOptimizer):
    r"""ZO-Adam (ZO-Bench): Adam on :math:`\hat g`, decoupled decay (AdamW-style); state
    :math:`m, v` of full size (memory ×3)."""

    def __init__(
        self, params, *, lr: float, betas: tuple[float, float] = (0.9, 0.999), adam_eps: float = 1e-8,
        **common,
    ):  # fmt: skip
        super().__init__(
            params, direction=Gaussian(), rule=rules.Adam(betas, adam_eps), lr=lr, **common
        )


class LOZO(ZeroOrderOptimizer):
    r"""LOZO (Chen et al., ICLR 2025), and LOZO-M when ``momentum > 0``.

    Each matrix :math:`W\in\mathbb R^{m\times n}` is perturbed by :math:`\varepsilon UV^\top`;
    ``U`` (m×rank) is drawn every step, ``V`` (n×rank) every ``interval`` steps; vectors get
    dense Gaussian directions (MeZO). With :math:`c` the two-point difference,

    .. math::
       \hat g_B = c\,U / r, \qquad N \leftarrow \beta N + (1-\beta)\hat g_B \;(\text{LOZO-M}),
       \qquad W \leftarrow (1-\eta\lambda)W - \eta\, N V^\top,

    (:math:`N=\hat g_B` without momentum). LOZO-M's momentum is the paper's *averaged* form
    (dampening β): with step η it moves like heavy-ball with step :math:`\eta(1-\beta)`, so its
    effective step is η, not :math:`\eta/(1-\beta)`. At a refresh
    :math:`N \leftarrow N V_{old}^\top V_{new}/n`. Our :math:`\hat g` carries :math:`1/r` (it is
    unbiased); the official code's does not, so a paper learning rate :math:`\eta_{paper}`
    corresponds to ``lr = rank * eta_paper`` here.

    ``engine="sidepath"`` (default) perturbs through the forward pass (exact restore, one forward
    over a doubled batch with a :class:`~lozo_core.optim.engines.PairedClosure`) and writes each
    update as one rank-r ``addmm`` per matrix; ``"sidepath-deferred"`` keeps updates in fp32
    coordinates until a refresh (for bf16/fp16 weights); ``"inplace"`` is the reference.
    """

    def __init__(
        self, params, *, lr: float, rank: int = 2, interval: int = 50, momentum: float = 0.0,
        engine: str = "sidepath", **common,
    ):  # fmt: skip
        rules.check_unit_interval("momentum", momentum)
        rule = rules.Momentum(momentum, dampening=momentum) if momentum > 0 else rules.SGD()
        super().__init__(
            params, direction=LazyLowRank(rank, interval), rule=rule, engine=engine, lr=lr, **common
        )


class LOZOAdam(ZeroOrderOptimizer):
    r"""LOZO with Adam moments kept in the subspace coordinates (our answer to the limitation the
    LOZO authors name: combining LOZO with Adam).

    With :math:`\hat g_B = cU/r`: :math:`M \leftarrow \beta_1 M + (1-\beta_1)\hat g_B`,
    :math:`S \leftarrow \beta_2 S + (1-\beta_2)\hat g_B^{\odot 2}`,
    :math:`W \leftarrow (1-\eta\lambda)W - \eta\,\frac{\hat M}{\sqrt{\hat S}+\delta}V^\top`
    (bias-corrected). State per matrix: two m×r tensors, O((m+n)r) with ``V``. At a refresh
    ``M`` is projected like LOZO-M's momentum; ``S`` keeps each row's mean (its law is the same
    in every basis). Vectors use ordinary Adam on their dense estimates.
    """

    def __init__(
        self, params, *, lr: float, rank: int = 2, interval: int = 50,
        betas: tuple[float, float] = (0.9, 0.999), adam_eps: float = 1e-8, engine: str = "sidepath",
        **common,
    ):  # fmt: skip
        super().__init__(
            params, direction=LazyLowRank(rank, interval), rule=rules.Adam(betas, adam_eps),
            engine=engine, lr=lr, **common,
        )  # fmt: skip


class LOZOOfficialStream(LOZO):
    """LOZO with the official code's random-stream mismatch, reproduced for comparison only.

    On ``V``-refresh steps the official update re-seeds and draws ``U`` where the perturbation had
    drawn ``V`` first, so the applied direction is not the measured one (PAPERS.md). Here the
    update on refresh steps replays a different stream than the perturbation used; elsewhere it
    is :class:`LOZO`. Do not train with it.
    """

    def _update(self, queries, losses, k: int, **kwargs):
        if self.direction.refresh_due(k):
            queries = [replace(query, keys=(*query.keys, 1)) for query in queries]
        return super()._update(queries, losses, k, **kwargs)
