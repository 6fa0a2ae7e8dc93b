r"""Zeroth-order optimizers in the style of ``torch.optim``.

An optimizer is a direction × an update rule × an engine:

* direction — dense Gaussian :math:`z` per parameter (MeZO and the ZO-Bench optimizers), or
  LOZO's low-rank :math:`UV^\top` per matrix with ``V`` redrawn every ``interval`` steps;
* update rule — applied to the estimate in its natural coordinates: the dense
  :math:`\hat g = \frac1q\sum_j c_j z_j`, or for LOZO the subspace coordinates
  :math:`\hat g_B = \frac{1}{qr}\sum_j c_j U_j` (so that :math:`\hat g = \hat g_B V^\top`):
  SGD, sign, momentum, conservative, Adam;
* engine — :class:`~lozo_core.perturb.InPlace` (MeZO's seed trick) or, for low-rank
  directions, :class:`~lozo_core.perturb.SidePath`.

``step(closure)`` runs under ``torch.no_grad()``; ``closure()`` returns the scalar loss and is
called twice per query (once, over a doubled batch, for a
:class:`~lozo_core.perturb.PairedClosure` on the side-path engine). ``step`` returns the mean of
the perturbed losses, an :math:`O(\varepsilon^2)` estimate of :math:`f(\theta)`.

Randomness: the query ``j`` of block ``b`` at step ``k`` draws from ``stream(seed, k, 0, b, j)``,
LOZO's ``V`` from ``stream(seed, k, 1)``, sparse masks from ``stream(seed, k // mask_interval, 2)``.
The update replays the perturbation's draws, so the applied direction is the measured one on
every step, ``V``-refresh steps included (the official LOZO code's is not: see PAPERS.md).
All state is in ``self.state`` and ``param_groups``; ``state_dict()`` round-trips and a
resumed run is bit-identical. Weight decay applies to matrices only (``p.ndim >= 2``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import replace

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from lozo_core.estimators import check_count, check_positive
from lozo_core.perturb import Directions, InPlace, SidePath
from lozo_core.rng import stream
from lozo_core.subspace import merge_, project_coordinates, refresh_due

DIRECTION_KEY, V_KEY, MASK_KEY = 0, 1, 2
PROJECTED_STATE = ("momentum_buffer", "exp_avg")
BASIS_FREE_STATE = ("exp_avg_sq",)


def _check_nonnegative(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_unit_interval(name: str, value: float, *, closed: bool = False) -> None:
    upper_ok = value <= 1 if closed else value < 1
    if not (isinstance(value, int | float) and value >= 0 and upper_ok):
        raise ValueError(f"{name} must be in [0, 1{']' if closed else ')'}, got {value!r}")


def accumulator_dtype(p: Tensor) -> torch.dtype:
    """float32, or the parameter's dtype if wider: what updates and factors are kept in."""
    return torch.promote_types(p.dtype, torch.float32)


def named_parameters(params) -> list[tuple[str, Tensor]]:
    """``(name, tensor)`` pairs from a module, named pairs, or plain tensors (named by index)."""
    if isinstance(params, nn.Module):
        return [(n, p) for n, p in params.named_parameters() if p.requires_grad]
    items = list(params)
    if not items:
        raise ValueError("optimizer got an empty parameter list")
    if all(isinstance(item, tuple) and len(item) == 2 for item in items):
        return [(str(n), p) for n, p in items]
    if all(isinstance(item, Tensor) for item in items):
        return [(f"param{i}", p) for i, p in enumerate(items)]
    raise ValueError(
        "params must be an nn.Module, an iterable of tensors, or of (name, tensor) pairs"
    )


def sgd_rule(g: Tensor, state: dict, group: dict, t: int) -> Tensor:
    r"""Plain step direction: :math:`\hat g`."""
    return g


def momentum_rule(g: Tensor, state: dict, group: dict, t: int) -> Tensor:
    r""":math:`N \leftarrow \beta N + (1-\tau)\hat g` (buffer starts at 0; ``dampening`` τ)."""
    buf = state.get("momentum_buffer")
    if buf is None:
        buf = state["momentum_buffer"] = torch.zeros_like(g)
    return buf.mul_(group["momentum"]).add_(g, alpha=1 - group["dampening"])


def adam_hyperparameters(betas: tuple[float, float], adam_eps: float) -> dict:
    """Validated Adam settings for a param group."""
    for i, beta in enumerate(betas):
        _check_unit_interval(f"betas[{i}]", beta)
    check_positive("adam_eps", adam_eps)
    return {"betas": tuple(betas), "adam_eps": adam_eps}


def adam_rule(g: Tensor, state: dict, group: dict, t: int) -> Tensor:
    r"""Adam: :math:`\hat m_t/(\sqrt{\hat v_t}+\delta)` with bias-corrected moments."""
    beta1, beta2 = group["betas"]
    if "exp_avg" not in state:
        state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(g), torch.zeros_like(g)
    m, v = state["exp_avg"], state["exp_avg_sq"]
    m.mul_(beta1).add_(g, alpha=1 - beta1)
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    m_hat = m / (1 - beta1**t)
    v_hat = v / (1 - beta2**t)
    return m_hat / (v_hat.sqrt() + group["adam_eps"])


class ZeroOrderOptimizer(torch.optim.Optimizer):
    r"""Shared machinery: blocks of parameters, ``q`` two-point queries each, then the rule.

    Args:
        params: an ``nn.Module`` (names enable ``fo_params``) or an iterable of tensors.
        lr: step size :math:`\eta \ge 0`.
        eps: perturbation scale :math:`\varepsilon > 0`.
        q: queries averaged per step.
        weight_decay: L2 decay on matrices, :math:`\hat g \leftarrow \hat g + \lambda W`.
        seed: run seed; every draw is a function of ``(seed, step, ...)``.
        engine: ``"inplace"`` (or ``"sidepath"`` for low-rank directions).
        blocks: ZO-Bench block-wise estimation: parameters are split (in order) into this many
            contiguous blocks, each estimated with its own queries and updated in turn
            (``2 q blocks`` forwards per step). This is ZO-Bench's ``coordinate_perturbation``
            variant (``zo-bench/trainer.py``, ``zo_step_with_module_wise_perturbation_coordinate``);
            ZO-Bench forms its blocks from module names (transformer layer, attention/MLP, or
            single linear layer) rather than a count.
        sparsity: ZO-Bench sparse perturbation (its ``sparse_gradient_group="layer"``): each entry
            of a dense direction is zeroed with this probability; the mask is redrawn every
            ``mask_interval`` steps (ZO-Bench's ``sparse_gradient_resample_steps``). The estimate
            is then unbiased for :math:`M\odot\nabla f`, not :math:`\nabla f`. ZO-Bench's own mask
            (``fast_random_mask_like``) zeroes the entries where a standard normal draw falls
            below the ratio, i.e. a fraction :math:`\Phi(\text{sparsity})`, not ``sparsity``.
        fo_params: names of parameters trained by backpropagation (hybrid ZO/FO): each step
            first takes an SGD step with ``fo_lr`` on them, then the ZO step on the rest.
    """

    lowrank = False
    rule: Callable[[Tensor, dict, dict, int], Tensor] = staticmethod(sgd_rule)
    engines = ("inplace",)

    def __init__(
        self,
        params,
        *,
        lr: float,
        eps: float = 1e-3,
        q: int = 1,
        weight_decay: float = 0.0,
        seed: int = 0,
        engine: str = "inplace",
        blocks: int = 1,
        sparsity: float = 0.0,
        mask_interval: int = 1,
        fo_params: Iterable[str] = (),
        fo_lr: float | None = None,
        **hyper,
    ):
        _check_nonnegative("lr", lr)
        check_positive("eps", eps)
        check_count("q", q)
        _check_nonnegative("weight_decay", weight_decay)
        check_count("seed", seed, minimum=0)
        check_count("blocks", blocks)
        _check_unit_interval("sparsity", sparsity)
        check_count("mask_interval", mask_interval)
        if engine not in self.engines:
            raise ValueError(
                f"engine must be one of {self.engines} for {type(self).__name__}, got {engine!r}"
            )
        if sparsity and self.lowrank:
            raise ValueError(
                f"sparsity applies to dense directions; {type(self).__name__} uses low-rank ones"
            )
        named = named_parameters(params)
        fo_names = set(fo_params)
        unknown = fo_names - {n for n, _ in named}
        if unknown:
            raise ValueError(f"fo_params names unknown parameters: {sorted(unknown)}")
        fo_lr = lr if fo_lr is None else fo_lr
        _check_nonnegative("fo_lr", fo_lr)
        zo = [(n, p) for n, p in named if n not in fo_names]
        if not zo:
            raise ValueError("no parameters left for zeroth-order training")
        if blocks > len(zo):
            raise ValueError(
                f"blocks must be <= the number of ZO parameters ({len(zo)}), got {blocks}"
            )
        self.fo_params = [p for n, p in named if n in fo_names]
        self.names = {id(p): n for n, p in named}
        defaults = dict(
            lr=lr, eps=eps, q=q, weight_decay=weight_decay, seed=seed, engine=engine, blocks=blocks,
            sparsity=sparsity, mask_interval=mask_interval, fo_lr=fo_lr, step=0, **hyper,
        )  # fmt: skip
        super().__init__([p for _, p in zo], defaults)
        self._init_state()
        zo_params = self.param_groups[0]["params"]
        self.engine = SidePath(self) if engine == "sidepath" else InPlace()
        bounds = [round(i * len(zo_params) / blocks) for i in range(blocks + 1)]
        self._blocks = [zo_params[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]

    def _init_state(self) -> None:
        """Hook for state that must exist before the first step."""

    def _V(self, p: Tensor) -> Tensor | None:
        """The fixed right factor of ``p``'s direction, or None for a dense direction."""
        return None

    def _coefficient(self, c: float) -> float:
        return c

    def _begin_step(self, k: int) -> None:
        """Hook run at the start of step ``k`` (LOZO refreshes ``V`` here)."""

    def _directions(self, block: list[Tensor], k: int, b: int, j: int) -> Directions:
        group = self.param_groups[0]
        seed, sparsity = group["seed"], group["sparsity"]
        return Directions(
            block,
            [self._V(p) for p in block],
            (seed, k, DIRECTION_KEY, b, j),
            density=1.0 - sparsity,
            mask_keys=(seed, k // group["mask_interval"], MASK_KEY),
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> Tensor:  # type: ignore[override]
        if closure is None:
            raise ValueError(f"{type(self).__name__}.step needs a closure that returns the loss")
        group = self.param_groups[0]
        k = group["step"]
        if self.fo_params:
            self._fo_step(closure, group["fo_lr"])
        self._begin_step(k)
        losses = []
        for b, block in enumerate(self._blocks):
            queries = []
            for j in range(group["q"]):
                directions = self._directions(block, k, b, j)
                plus, minus = self.engine.two_point(closure, directions, group["eps"])
                if not (math.isfinite(plus) and math.isfinite(minus)):
                    raise FloatingPointError(
                        f"non-finite loss at step {k}: f(θ+εZ)={plus}, f(θ-εZ)={minus}; no update was applied"
                    )
                queries.append((self._coefficient((plus - minus) / (2 * group["eps"])), directions))
                losses += [plus, minus]
            self._update(queries, closure, k)
        group["step"] = k + 1
        return torch.tensor(sum(losses) / len(losses), dtype=torch.float64)

    def _fo_step(self, closure: Callable[[], Tensor], fo_lr: float) -> None:
        with torch.enable_grad(), self.engine.effective_weights():
            grads = torch.autograd.grad(closure(), self.fo_params, allow_unused=True)
        for p, g in zip(self.fo_params, grads, strict=True):
            if g is not None:
                p.add_(g, alpha=-fo_lr)

    def _estimates(self, queries):
        """Per parameter: ``(p, ĝ, V)`` with ĝ dense, or in subspace coordinates when V is set."""
        q = len(queries)
        for draws in zip(*(d for _, d in queries), strict=True):
            p, _, _, V = draws[0]
            if V is None:
                g = sum(c * z for (c, _), (_, z, _, _) in zip(queries, draws, strict=True)) / q
            else:
                g = sum(c * u for (c, _), (_, _, u, _) in zip(queries, draws, strict=True)) / (
                    q * V.shape[1]
                )
            yield p, g, V

    def _update(self, queries, closure, k: int) -> None:
        group = self.param_groups[0]
        lr, wd = group["lr"], group["weight_decay"]
        for p, g, V in self._estimates(queries):
            state = self.state[p]
            decay = wd if p.ndim >= 2 else 0.0
            if V is None:
                if decay:
                    g = g + decay * p.float()
                self._apply_dense(p, self.rule(g, state, group, k + 1), lr)
            else:
                self._apply_lowrank(p, self.rule(g, state, group, k + 1), V, lr, decay)

    def _apply_dense(self, p: Tensor, step: Tensor, lr: float) -> None:
        if "delta" in self.state[p]:
            self.state[p]["delta"].add_(step, alpha=-lr)
        else:
            p.add_(step.to(p.dtype), alpha=-lr)

    def _apply_lowrank(self, p: Tensor, step: Tensor, V: Tensor, lr: float, decay: float) -> None:
        raise NotImplementedError

    def merge(self) -> None:
        """Write pending side-path updates into the weights (a no-op for the in-place engine)."""

    def effective_weights(self):
        """Context in which the model computes with its current (trained) weights."""
        return self.engine.effective_weights()

    def load_state_dict(self, state_dict: dict) -> None:
        """As ``torch.optim``'s, but keep each state tensor's saved dtype (fp32 accumulators)."""
        super().load_state_dict(state_dict)
        params = self.param_groups[0]["params"]
        for index, saved in state_dict["state"].items():
            p = params[index]
            for key, value in saved.items():
                if isinstance(value, Tensor):
                    self.state[p][key] = value.detach().clone().to(device=p.device)


class MeZO(ZeroOrderOptimizer):
    r"""ZO-SGD with the two-point Gaussian estimator (MeZO, Malladi et al. 2023).

    .. math:: \theta \leftarrow \theta - \eta\,(\hat g + \lambda\theta_{\text{matrices}}),\quad
       \hat g = \tfrac1q\textstyle\sum_j c_j z_j.
    """


class ZOSGDSign(MeZO):
    r"""ZO-SGD-Sign (ZO-Bench): :math:`\theta \leftarrow \theta - \eta\,\operatorname{sign}(c)\,z`.

    The sign is of the scalar difference :math:`c`, not element-wise, as in ZO-Bench's code.
    """

    def _coefficient(self, c: float) -> float:
        return float(math.copysign(1.0, c)) if c != 0 else 0.0


class ZOSGDMomentum(ZeroOrderOptimizer):
    r"""ZO-SGD-MMT (ZO-Bench): :math:`N \leftarrow \beta N + \hat g`, :math:`\theta \leftarrow \theta-\eta N`."""

    rule = staticmethod(momentum_rule)

    def __init__(self, params, *, lr: float, momentum: float = 0.9, **kwargs):
        _check_unit_interval("momentum", momentum)
        super().__init__(params, lr=lr, momentum=momentum, dampening=0.0, **kwargs)


class ZOAdam(ZeroOrderOptimizer):
    r"""ZO-Adam (ZO-Bench): Adam on :math:`\hat g`; state :math:`m, v` of full size (memory ×3)."""

    rule = staticmethod(adam_rule)

    def __init__(
        self,
        params,
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        **kwargs,
    ):
        super().__init__(params, lr=lr, **adam_hyperparameters(betas, adam_eps), **kwargs)


class ZOSGDCons(MeZO):
    r"""ZO-SGD-Cons (ZO-Bench): evaluate :math:`f` at :math:`\theta`, :math:`\theta-\eta\hat g` and
    :math:`\theta+\eta\hat g`; keep the lowest. Three more forwards per step."""

    def _update(self, queries, closure, k: int) -> None:
        group = self.param_groups[0]
        lr, wd = group["lr"], group["weight_decay"]

        def shift(scale: float) -> None:
            for p, g, _ in self._estimates(queries):
                if wd and p.ndim >= 2:
                    g = g + wd * p.float()
                p.add_(g.to(p.dtype), alpha=scale)

        here = float(closure())
        shift(-lr)
        descent = float(closure())
        shift(2 * lr)
        ascent = float(closure())
        best = min((here, 0), (descent, -1), (ascent, 1))[1]
        if best != 1:
            shift(-lr if best == 0 else -2 * lr)


class LOZO(ZeroOrderOptimizer):
    r"""LOZO (Chen et al., ICLR 2025), and LOZO-M when ``momentum > 0``.

    Each matrix :math:`W\in\mathbb R^{m\times n}` is perturbed by :math:`\varepsilon UV^\top`;
    ``U`` (m×rank) is drawn every step, ``V`` (n×rank) every ``interval`` steps; vectors get
    dense Gaussian directions (MeZO). With :math:`c` the two-point difference,

    .. math::
       \hat g_B = c\,U / r, \qquad N \leftarrow \beta N + (1-\beta)\hat g_B \;(\text{LOZO-M}),
       \qquad W \leftarrow (1-\eta\lambda)W - \eta\, N V^\top,

    (:math:`N=\hat g_B` without momentum). At a refresh, :math:`N \leftarrow N V_{old}^\top V_{new}/n`.
    Our :math:`\hat g` carries :math:`1/r` (it is unbiased); the official code's does not, so a
    paper learning rate :math:`\eta_{paper}` corresponds to ``lr = rank * eta_paper`` here.

    ``engine="sidepath"`` (default) never writes ``W`` between refreshes: updates go to
    ``B`` (m×r, fp32), weight decay to a scalar :math:`\alpha`, and :math:`W \leftarrow \alpha W +
    BV^\top` is written once per interval (and by :meth:`merge`).
    """

    lowrank = True
    engines = ("sidepath", "inplace")

    def __init__(
        self, params, *, lr: float, rank: int = 2, interval: int = 50, momentum: float = 0.0,
        engine: str = "sidepath", **kwargs,
    ):  # fmt: skip
        check_count("rank", rank)
        check_count("interval", interval)
        _check_unit_interval("momentum", momentum)
        super().__init__(
            params, lr=lr, rank=rank, interval=interval, momentum=momentum, dampening=momentum,
            engine=engine, **kwargs,
        )  # fmt: skip
        self.rule = momentum_rule if momentum > 0 else sgd_rule

    def _init_state(self) -> None:
        group = self.param_groups[0]
        for p in group["params"]:
            state, dtype = self.state[p], accumulator_dtype(p)
            if p.ndim == 2:
                state["V"] = torch.zeros(p.shape[1], group["rank"], device=p.device, dtype=dtype)
                if group["engine"] == "sidepath":
                    state["B"] = torch.zeros(
                        p.shape[0], group["rank"], device=p.device, dtype=dtype
                    )
                    state["scale"] = 1.0
            elif group["engine"] == "sidepath":
                state["delta"] = torch.zeros(p.shape, device=p.device, dtype=dtype)

    def _V(self, p: Tensor) -> Tensor | None:
        return self.state[p].get("V")

    def _begin_step(self, k: int) -> None:
        group = self.param_groups[0]
        if not refresh_due(k, group["interval"]):
            return
        self.merge()
        params = group["params"]
        g = stream(group["seed"], k, V_KEY, device=params[0].device)
        for p in params:
            state = self.state[p]
            if p.ndim != 2:
                continue
            V_new = torch.randn((p.shape[1], group["rank"]), generator=g, device=p.device)
            V_new = V_new.to(accumulator_dtype(p))
            for key in PROJECTED_STATE:
                if key in state and k > 0:
                    state[key] = project_coordinates(state[key], state["V"], V_new)
            for key in BASIS_FREE_STATE:
                if key in state:
                    state[key] = state[key].mean(dim=1, keepdim=True).expand_as(state[key]).clone()
            state["V"] = V_new

    def _apply_lowrank(self, p: Tensor, step: Tensor, V: Tensor, lr: float, decay: float) -> None:
        state = self.state[p]
        if "B" in state:
            if decay:
                state["scale"] *= 1 - lr * decay
                state["B"].mul_(1 - lr * decay)
            state["B"].add_(step, alpha=-lr)
        else:
            if decay:
                p.mul_(1 - lr * decay)
            p.addmm_(step.to(p.dtype), V.T.to(p.dtype), alpha=-lr)

    @torch.no_grad()
    def merge(self) -> None:
        """:math:`W \\leftarrow \\alpha W + BV^\\top` and vectors :math:`b \\leftarrow b + \\delta`; B, δ ← 0."""
        for p in self.param_groups[0]["params"]:
            state = self.state[p]
            if "B" in state:
                merge_(p, state["B"], state["V"], state["scale"])
                state["scale"] = 1.0
            elif "delta" in state:
                p.add_(state["delta"].to(p.dtype))
                state["delta"].zero_()


class LOZOAdam(LOZO):
    r"""LOZO with Adam moments kept in the subspace coordinates (our answer to the limitation the
    LOZO authors name: combining LOZO with Adam).

    With :math:`\hat g_B = cU/r`: :math:`M \leftarrow \beta_1 M + (1-\beta_1)\hat g_B`,
    :math:`S \leftarrow \beta_2 S + (1-\beta_2)\hat g_B^{\odot 2}`,
    :math:`W \leftarrow W - \eta\,\frac{\hat M}{\sqrt{\hat S}+\delta}V^\top` (bias-corrected).
    State per matrix: two m×r tensors, O((m+n)r) with ``V``. At a refresh ``M`` is projected like
    LOZO-M's momentum; ``S`` is not: :math:`(cU)_{ik}^2` has the same law in every basis (c is a
    scalar and U isotropic), so each row keeps its mean, :math:`S_{i\cdot} \leftarrow \bar S_i`.
    Vectors use ordinary Adam on their dense estimates.
    """

    def __init__(
        self,
        params,
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        **kwargs,
    ):
        super().__init__(params, lr=lr, **adam_hyperparameters(betas, adam_eps), **kwargs)
        self.rule = adam_rule


class LOZOOfficialStream(LOZO):
    """LOZO with the official code's random-stream mismatch, reproduced for comparison only.

    On ``V``-refresh steps the official update re-seeds and draws ``U`` where the perturbation had
    drawn ``V`` first, so the applied direction is not the measured one (PAPERS.md). Here the
    update on refresh steps replays a different stream than the perturbation used; elsewhere it
    is :class:`LOZO`. Do not train with it.
    """

    def _update(self, queries, closure, k: int) -> None:
        if refresh_due(k, self.param_groups[0]["interval"]):
            queries = [(c, replace(d, keys=(*d.keys, 1))) for c, d in queries]
        super()._update(queries, closure, k)


class ForwardGrad(torch.optim.Optimizer):
    r"""Forward gradient (ZO-Bench's Forward-Grad): :math:`\theta \leftarrow \theta - \eta(\nabla f\cdot v)v`.

    :math:`v \sim \mathcal N(0, I)` from ``stream(seed, step, 0, 0, 0)``; the directional derivative
    comes from one forward-mode pass (``torch.func.jvp``), no backpropagation; attention runs on
    the math SDPA kernel, the fused ones having no forward-mode derivative. Needs the
    ``nn.Module`` so the closure can be differentiated through ``torch.func.functional_call``.
    """

    def __init__(self, model: nn.Module, *, lr: float, weight_decay: float = 0.0, seed: int = 0):
        if not isinstance(model, nn.Module):
            raise ValueError(f"ForwardGrad needs the nn.Module, got {type(model).__name__}")
        _check_nonnegative("lr", lr)
        _check_nonnegative("weight_decay", weight_decay)
        check_count("seed", seed, minimum=0)
        named = named_parameters(model)
        self.model, self.param_names = model, [n for n, _ in named]
        super().__init__(
            [p for _, p in named], dict(lr=lr, weight_decay=weight_decay, seed=seed, step=0)
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> Tensor:  # type: ignore[override]
        if closure is None:
            raise ValueError("ForwardGrad.step needs a closure that returns the loss")
        group = self.param_groups[0]
        params, k = group["params"], group["step"]
        g = stream(group["seed"], k, DIRECTION_KEY, 0, 0, device=params[0].device)
        tangents = tuple(
            torch.randn(p.shape, generator=g, device=p.device).to(p.dtype) for p in params
        )
        call = _ClosureModule(self.model, closure)
        keys = [f"model.{n}" for n in self.param_names]

        def loss_of(*tensors):
            return torch.func.functional_call(call, dict(zip(keys, tensors, strict=True)), ())

        with sdpa_kernel(SDPBackend.MATH):
            loss, directional = torch.func.jvp(loss_of, tuple(p.detach() for p in params), tangents)
        if not (torch.isfinite(loss) and torch.isfinite(directional)):
            raise FloatingPointError(
                f"non-finite loss or derivative at step {k}: {float(loss)}, {float(directional)}"
            )
        d = float(directional)
        for p, v in zip(params, tangents, strict=True):
            if group["weight_decay"] and p.ndim >= 2:
                p.mul_(1 - group["lr"] * group["weight_decay"])
            p.add_(v, alpha=-group["lr"] * d)
        group["step"] = k + 1
        return loss.detach()


class _ClosureModule(nn.Module):
    """Lets ``functional_call`` swap the model's parameters while the closure runs."""

    def __init__(self, model: nn.Module, closure: Callable[[], Tensor]):
        super().__init__()
        self.model, self.closure = model, closure

    def forward(self) -> Tensor:
        return self.closure()


OPTIMIZERS = {
    "mezo": MeZO,
    "zo-sgd": MeZO,
    "zo-sgd-sign": ZOSGDSign,
    "zo-sgd-mmt": ZOSGDMomentum,
    "zo-sgd-cons": ZOSGDCons,
    "zo-adam": ZOAdam,
    "lozo": LOZO,
    "lozo-m": LOZO,
    "lozo-adam": LOZOAdam,
    "forward-grad": ForwardGrad,
}
