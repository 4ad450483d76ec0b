"""Server momentum after the noise: FedAvgM's update on a DP wrapper's *released* average.

Under user-level DP, Flower's DP wrappers noise the output of the strategy they wrap. With
Flower's FedAvgM inside, the momentum would be built from the *un-noised* average and
carry it into later rounds, outside what each round's Gaussian accounts for (so fedrec
refuses ``strategy = fedavgm`` inside the wrapper). This wrapper goes *outside* it
instead: it only sees the noised average that the DP wrapper releases, so whatever it
computes from it is post-processing and costs no privacy. ε is unchanged; only how the
released averages are combined into the next global model changes.

Why it can help: the noise of successive rounds is independent while the signal is not,
so momentum β adds up the signal about 1 / (1 - β)-fold and the noise only
1 / sqrt(1 - β^2)-fold. With the server learning rate η = 1 - β the signal moves the model
as far as plain FedAvg would, with sqrt((1 - β) / (1 + β)) of its noise (β = 0.9: a
quarter), once the momentum has built up (about 1 / (1 - β) rounds). On MovieLens-100k
at user ε = 8 that start-up cost more than the noise saved (README, "Accuracy against ε").
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy


class ServerMomentumAfterNoise(Strategy):
    """Wrap any strategy (a DP wrapper) and apply FedAvgM's server update to its output.

    The update is Flower's FedAvgM's (``flwr/serverapp/strategy/fedavgm.py``), taken on
    the wrapped strategy's result x̃ instead of the plain average: pseudo-gradient
    Δ = x − x̃ (x: the arrays the round was sent), momentum m = β m + Δ (m = Δ in the first
    round), new arrays x − η m. With η = 1 and β = 0 it returns x̃ unchanged.

    Parameters
    ----------
    strategy : Strategy
        The strategy whose aggregate is post-processed, e.g. Flower's
        ``DifferentialPrivacyServerSideFixedClipping`` around ``FedAvg``.
    server_learning_rate : float
        η > 0, the step taken along the momentum (Flower's ``server_learning_rate``).
    server_momentum : float
        β in [0, 1) (Flower's ``server_momentum``).
    """

    def __init__(self, strategy: Strategy, server_learning_rate: float,
                 server_momentum: float) -> None:
        super().__init__()
        if not server_learning_rate > 0:
            raise ValueError("The server learning rate should be a positive value.")
        if not 0 <= server_momentum < 1:
            raise ValueError("The server momentum should be in [0, 1).")
        self.strategy = strategy
        self.server_learning_rate = server_learning_rate
        self.server_momentum = server_momentum
        self.current_arrays: ArrayRecord | None = None
        #: m, one array per weight (checkpointed with the model: ``fedrec.server.strategy``)
        self.momentum_vector: list[np.ndarray] | None = None

    def __repr__(self) -> str:
        return (f"ServerMomentumAfterNoise(eta={self.server_learning_rate}, "
                f"beta={self.server_momentum}, {self.strategy!r})")

    def summary(self) -> None:
        self.strategy.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Remember the arrays the round starts from (x), then delegate."""
        self.current_arrays = arrays
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """The wrapped strategy's aggregate, then one momentum step from x towards it."""
        released, metrics = self.strategy.aggregate_train(server_round, replies)
        if released is None:
            return released, metrics
        if self.current_arrays is None:
            raise RuntimeError("configure_train must run before aggregate_train")
        old = self.current_arrays.to_numpy_ndarrays()
        pseudo = [x - new for x, new in zip(old, released.to_numpy_ndarrays())]
        if self.momentum_vector is None:
            self.momentum_vector = pseudo
        else:
            self.momentum_vector = [self.server_momentum * m + d
                                    for m, d in zip(self.momentum_vector, pseudo)]
        updated = [Array(x - self.server_learning_rate * m)
                   for x, m in zip(old, self.momentum_vector)]
        self.current_arrays = ArrayRecord(OrderedDict(zip(released.keys(), updated)))
        return self.current_arrays, metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]
                           ) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)
