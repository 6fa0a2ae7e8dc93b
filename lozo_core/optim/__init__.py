"""Zeroth-order optimizers in the style of ``torch.optim``: a direction × an update rule × an
engine (:mod:`.directions`, :mod:`.rules`, :mod:`.engines`), composed in :mod:`.optimizer`, named
in :mod:`.named`, listed once in :mod:`.table`."""

from lozo_core.optim.engines import PairedClosure
from lozo_core.optim.forward_grad import ForwardGrad
from lozo_core.optim.named import (
    LOZO,
    LOZOAdam,
    LOZOOfficialStream,
    MeZO,
    ZOAdam,
    ZOSGDCons,
    ZOSGDMomentum,
    ZOSGDSign,
)
from lozo_core.optim.optimizer import ZeroOrderOptimizer

__all__ = [
    "LOZO", "ForwardGrad", "LOZOAdam", "LOZOOfficialStream", "MeZO", "PairedClosure",
    "ZOAdam", "ZOSGDCons", "ZOSGDMomentum", "ZOSGDSign", "ZeroOrderOptimizer",
]  # fmt: skip
