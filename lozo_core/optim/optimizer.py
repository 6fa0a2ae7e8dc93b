r"""The zeroth-order optimizer: a direction × an update rule × an engine, in ``torch.optim`` form.

One step :math:`k` of :class:`ZeroOrderOptimizer`, for each block of parameters (one block unless
``blocks > 1``, ZO-Bench's block-wise estimation):

1. the direction may redraw its basis (LOZO's ``V`` at :math:`k \equiv 0 \bmod \nu`); the rule
   re-expresses its state in the new basis;
2. ``q`` two-point queries: the engine measures :math:`f_\pm^{(j)} = f(\theta \pm \varepsilon Z_j)`;
3. per parameter, :math:`\hat g = \frac1q\sum_j \phi\!\big(\tfrac{f_+^{(j)}-f_-^{(j)}}{2\varepsilon}\big)
   D_j` with :math:`D_j` the direction (:math:`z_j`, or LOZO's :math:`U_j/r` in subspace
   coordinates) and :math:`\phi` the rule's coefficient map (identity, or sign);
4. :math:`\theta \leftarrow (1-\eta\lambda)\,\theta - \eta\cdot\text{rule}(\hat g)`, written by the
   engine (for LOZO, :math:`W \leftarrow (1-\eta\lambda)W - \eta\,\text{rule}(\hat g_B)V^\top`).

The contract, as ``torch.optim``'s: ``step(closure)`` runs under ``torch.no_grad()`` and calls the
closure ``2q`` times per block (once per query over a doubled batch for a
:class:`~lozo_core.optim.engines.PairedClosure` on a side-path engine) plus the rule's extra
forwards; afterwards the parameters hold the trained weights (except with the opt-in
``engine="sidepath-deferred"``); every param group's ``lr``, ``eps`` and ``weight_decay`` are
honoured (a group may also set ``backprop=True`` to train its parameters by plain SGD on the
closure's gradient, ZO-Bench's hybrid scheme); ``state_dict()`` round-trips, so a resumed run
is bit-identical. Per parameter, :math:`\varepsilon` is its group's: the estimate
:math:`\frac{f_+-f_-}{2}\frac{z}{\varepsilon_p}` stays unbiased when groups differ.

A step is determined by the run seed, the step number and the scalars it measured, which
``last_record`` holds after each step (``{"step": k, "losses": [[f+, f-], …] per block and
query, …}``); :meth:`replay_step` applies a recorded step without a single forward pass.

Data parallelism (:mod:`lozo_core.distributed`). With a ``process_group`` of :math:`N` processes,
each holding an equal shard of the batch (loss :math:`f_i`, so :math:`f = \frac1N\sum_i f_i`),
step 2 measures :math:`f_{i,\pm}^{(j)}` locally and replaces them by their group means
:math:`f_\pm^{(j)}` in one all-reduce of the block's :math:`2q` scalars; the conservative rule's
three losses and the hybrid groups' gradients are averaged the same way. Every process then
applies the identical update, and ``last_record`` holds the global scalars: a run replays and
resumes at any world size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from lozo_core.distributed import default_group, reduce_mean, reduce_mean_
from lozo_core.estimators import check_count, check_positive
from lozo_core.optim.engines import InPlace, make_engine


def check_nonnegative(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def module_parameters(params):
    """``named_parameters`` of a module (trainable only), or ``params`` as given."""
    if isinstance(params, nn.Module):
        return [(n, p) for n, p in params.named_parameters() if p.requires_grad]
    return params


GROUP_KEYS = ("lr", "eps", "weight_decay", "backprop")


class ZeroOrderOptimizer(torch.optim.Optimizer):
    """Composes a direction, an update rule and an engine (see the module docstring).

    Args:
        params: an ``nn.Module``, an iterable of tensors or ``(name, tensor)`` pairs, or of param
            group dicts (``params`` plus any of ``lr``, ``eps``, ``weight_decay``, ``backprop``).
        direction: :class:`~lozo_core.optim.directions.Gaussian` or ``LazyLowRank``.
        rule: an update rule from :mod:`lozo_core.optim.rules`.
        engine: ``"inplace"``, ``"sidepath"`` or ``"sidepath-deferred"`` (side paths need
            low-rank directions for matrices).
        lr: step size :math:`\\eta \\ge 0`.
        eps: perturbation scale :math:`\\varepsilon > 0`.
        q: queries averaged per step.
        weight_decay: decoupled decay :math:`\\lambda \\ge 0`, applied to every parameter of the
            group (put biases and norms in a group with ``weight_decay=0``:
            :func:`lozo_core.models.decay_groups`).
        seed: run seed; every draw is a function of ``(seed, step, …)``.
        blocks: split the zeroth-order parameters, in order, into this many contiguous blocks,
            each estimated with its own ``q`` queries and updated in turn (``2q·blocks`` forwards;
            ZO-Bench's ``coordinate_perturbation`` variant, whose blocks are modules).
        keep_directions: hold each step's draws in memory (:meth:`Query.keep
            <lozo_core.optim.directions.Query.keep>`) instead of regenerating them for every
            pass over the weights: identical numbers, fewer draws (MeZO: one per step instead of
            four), and one more model's size of memory for dense directions — so not MeZO's
            "memory of inference". A run-time choice, like the thread count.
        process_group: average the measured scalars over this ``torch.distributed`` group (each
            process evaluating the closure on its shard of the batch); default: the default group
            when ``torch.distributed`` is initialized with more than one process, else none.
    """

    def __init__(
        self,
        params,
        *,
        direction,
        rule,
        engine: str = "inplace",
        lr: float,
        eps: float = 1e-3,
        q: int = 1,
        weight_decay: float = 0.0,
        seed: int = 0,
        blocks: int = 1,
        keep_directions: bool = False,
        process_group=None,
    ):
        check_nonnegative("lr", lr)
        check_positive("eps", eps)
        check_nonnegative("weight_decay", weight_decay)
        check_count("q", q)
        check_count("seed", seed, minimum=0)
        check_count("blocks", blocks)
        self.direction, self.rule, self.q, self.seed, self.blocks = direction, rule, q, seed, blocks
        self.keep_directions = bool(keep_directions)
        self.engine: InPlace = make_engine(engine, direction.lowrank)
        self.process_group = process_group if process_group is not None else default_group()
        self.last_record: dict | None = None
        defaults = dict(lr=lr, eps=eps, weight_decay=weight_decay, backprop=False)
        super().__init__(module_parameters(params), defaults)
        self._layout()

    def add_param_group(self, param_group: dict) -> None:
        """As ``torch.optim``'s; only ``lr``, ``eps``, ``weight_decay`` and ``backprop`` may vary."""
        unknown = sorted(set(param_group) - {"params", "param_names", *GROUP_KEYS})
        if unknown:
            raise ValueError(
                f"{type(self).__name__}: param group keys {unknown} are not per-group settings; "
                f"a group may set {', '.join(GROUP_KEYS)}"
            )
        for key in ("lr", "weight_decay"):
            if key in param_group:
                check_nonnegative(key, param_group[key])
        if "eps" in param_group:
            check_positive("eps", param_group["eps"])
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group["step"] = self.param_groups[0].get("step", 0)
        if hasattr(self, "_blocks"):
            self._layout()

    def _layout(self) -> None:
        """Name the parameters, bind the engine, split blocks, create direction state."""
        self.names, self._group_index = {}, {}
        zo, self.backprop_params = [], []
        for g, group in enumerate(self.param_groups):
            names = group.get("param_names") or [
                f"group{g}.param{i}" for i in range(len(group["params"]))
            ]
            for name, p in zip(names, group["params"], strict=True):
                self.names[id(p)], self._group_index[id(p)] = name, g
                (self.backprop_params if group["backprop"] else zo).append(p)
        if not zo:
            raise ValueError("no parameters left for zeroth-order training")
        if self.blocks > len(zo):
            raise ValueError(
                f"blocks must be <= the number of zeroth-order parameters ({len(zo)}), "
                f"got {self.blocks}"
            )
        new = [i for i, p in enumerate(zo) if not self.state[p]]
        for i in new:
            self.direction.init_state(zo[i], self.state[zo[i]])
        self._draw_current_basis(zo, new)
        self.engine.bind(zo, self.names)
        bounds = [round(i * len(zo) / self.blocks) for i in range(self.blocks + 1)]
        self._blocks = [zo[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]

    def _draw_current_basis(self, zo: list[Tensor], new: list[int]) -> None:
        """Give parameters added mid-interval (``add_param_group``) the ``V`` they would hold had
        they been there from the start: the draw of the last refresh, at their index. Without it a
        new matrix would keep its zero ``V``, and so stay frozen, until the next refresh."""
        k = self.steps_taken
        if not new or k == 0 or self.direction.refresh_due(k):
            return
        last = next(j for j in range(k - 1, -1, -1) if self.direction.refresh_due(j))
        self.direction.refresh(last, [zo[i] for i in new], [self.state[zo[i]] for i in new],
                               self.seed, indices=new)  # fmt: skip

    @property
    def steps_taken(self) -> int:
        return self.param_groups[0]["step"]

    def _advance(self) -> None:
        for group in self.param_groups:
            group["step"] += 1

    def _group(self, p: Tensor) -> dict:
        """``p``'s param group as it is now (``load_state_dict`` replaces the group dicts)."""
        return self.param_groups[self._group_index[id(p)]]

    def _eps(self, p: Tensor) -> float:
        return self._group(p)["eps"]

    def _queries(self, k: int, b: int) -> list:
        block = self._blocks[b]
        states = [self.state[p] for p in block]
        eps = [self._eps(p) for p in block]
        queries = [
            self.direction.query(block, states, eps, self.seed, k, b, j) for j in range(self.q)
        ]
        if self.keep_directions:
            for query in queries:
                query.keep()
        return queries

    def _refresh(self, k: int) -> None:
        if not self.direction.refresh_due(k):
            return
        self.engine.merge()
        zo = [p for block in self._blocks for p in block]
        for state, V_old, V_new in self.direction.refresh(
            k, zo, [self.state[p] for p in zo], self.seed
        ):
            if k > 0:
                self.rule.rebase(state, V_old, V_new)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor]) -> Tensor:  # type: ignore[override]
        if closure is None:
            raise ValueError(f"{type(self).__name__}.step needs a closure that returns the loss")
        k = self.steps_taken
        if self.backprop_params:
            self._backprop_step(closure)
        self._refresh(k)
        record = {"step": k, "losses": [], "choices": []}
        for b in range(len(self._blocks)):
            queries = self._queries(k, b)
            local = [f for query in queries for f in self.engine.two_point(closure, query)]
            measured = reduce_mean(local, self.process_group)
            losses = [measured[i : i + 2] for i in range(0, len(measured), 2)]
            for plus, minus in losses:
                if not (math.isfinite(plus) and math.isfinite(minus)):
                    raise FloatingPointError(
                        f"non-finite loss at step {k}: f(θ+εZ)={plus}, f(θ-εZ)={minus}; "
                        "no update was applied"
                    )
            record["losses"].append(losses)
            record["choices"].append(self._update(queries, losses, k, closure=closure))
        self._advance()
        self.last_record = record
        flat = [f for block in record["losses"] for pair in block for f in pair]
        return torch.tensor(sum(flat) / len(flat), dtype=torch.float64)

    @torch.no_grad()
    def replay_step(self, record: dict) -> None:
        """Apply a step recorded in ``last_record`` without evaluating anything."""
        k = self.steps_taken
        if record["step"] != k:
            raise ValueError(f"replay: record is for step {record['step']}, optimizer is at {k}")
        if self.backprop_params:
            raise ValueError("replay: parameters trained by backpropagation cannot be replayed")
        self._refresh(k)
        for b, (losses, choice) in enumerate(zip(record["losses"], record["choices"], strict=True)):
            queries = self._queries(k, b)
            for query in queries:
                self.engine.retrace(query)
            self._update(queries, losses, k, choice=choice)
        self._advance()
        self.last_record = record

    def _estimates(self, queries, losses):
        """Per parameter: ``(p, ĝ, V)``, ĝ dense or in subspace coordinates when V is set."""
        for draws in zip(*queries, strict=True):
            p, _, _, V = draws[0]
            eps = self._eps(p)
            g = None
            for (plus, minus), (_, z, u, _) in zip(losses, draws, strict=True):
                c = self.rule.coefficient((plus - minus) / (2 * eps))
                term = self.direction.estimate(c, z, u, V)
                g = term if g is None else g.add_(term)
            yield p, g.div_(len(queries)), V

    def _update(self, queries, losses, k: int, *, closure=None, choice=None):
        for p, group in ((p, self._group(p)) for p in queries[0].params):
            if group["weight_decay"]:
                V = self.state[p].get("V")
                self.engine.decay(p, 1 - group["lr"] * group["weight_decay"], V)

        def shift(scale: float) -> None:
            for p, g, V in self._estimates(queries, losses):
                step = self.rule(g, self.state[p], k + 1)
                self.engine.write(p, step, V, scale * self._group(p)["lr"])

        def at_trained_weights() -> Tensor:
            with self.engine.effective_weights():
                return closure()

        if choice is not None:
            return self.rule.replay(shift, choice)
        return self.rule.apply(
            shift, at_trained_weights, lambda fs: reduce_mean(fs, self.process_group)
        )

    def _backprop_step(self, closure: Callable[[], Tensor]) -> None:
        with torch.enable_grad(), self.engine.effective_weights():
            grads = torch.autograd.grad(closure(), self.backprop_params, allow_unused=True)
        reduce_mean_([g for g in grads if g is not None], self.process_group)
        for p, g in zip(self.backprop_params, grads, strict=True):
            if g is not None:
                p.add_(g, alpha=-self._group(p)["lr"])

    def hyperparameters(self) -> dict:
        """The settings that are not per param group (those are in ``defaults``): ``q``,
        ``blocks`` and the direction's and the rule's own, code defaults included."""
        return {
            "q": self.q,
            "blocks": self.blocks,
            **self.direction.hyperparameters(),
            **self.rule.hyperparameters(),
        }

    def merge(self) -> None:
        """Export step for ``engine="sidepath-deferred"``: write pending updates into the
        weights (a no-op for the other engines, whose parameters are always current)."""
        self.engine.merge()

    def effective_weights(self):
        """Context in which the model computes with its trained weights (needed only with
        ``engine="sidepath-deferred"``)."""
        return self.engine.effective_weights()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "engine": self.engine.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        """As ``torch.optim``'s, keeping each state tensor's saved dtype (fp32 accumulators);
        loads across engines unless deferred updates are pending (then ``ValueError``)."""
        engine_state = state_dict.get("engine", {})
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "engine"})
        params = [p for group in self.param_groups for p in group["params"]]
        for index, saved in state_dict["state"].items():
            p = params[index]
            for key, value in saved.items():
                if isinstance(value, Tensor):
                    self.state[p][key] = value.detach().clone().to(device=p.device)
        self.engine.load_state_dict(engine_state)
