"""Secure aggregation of the training rounds: Flower's SecAgg+ (``SecAggPlusWorkflow``).

Flower 1.23 has SecAgg+ only on its legacy path (``flwr.server.workflow`` with a
``LegacyContext`` and a legacy ``flwr.server.strategy`` strategy); its Message-API
strategies have none. So with ``secagg`` on, :class:`SecAggTrainer` runs each round's
*training* through ``SecAggPlusWorkflow`` over a legacy ``FedAvg`` wrapped in Flower's
legacy ``DifferentialPrivacyClientSideFixedClipping``: each device clips its own update
(``fixedclipping_mod``) and masks it (``secaggplus_mod``; ``fedrec.client.secagg``), the server
unmasks only the sum of the survivors' updates, averages it and adds the Gaussian noise.
Evaluation, checkpoints, ledgers and the run directory stay as on the Message API.

What it protects: the server never holds one device's update, only the sum (the
``aggregate_fit`` it runs receives the unmasked average, the same object for every
device: logged per round as ``secagg_distinct_updates`` = 1). What it does not: the
server sees who took part and their metrics; it adds the DP noise itself after
unmasking, so it sees the un-noised average (user-level DP protects against everyone
after the server); it cannot validate single updates (``max-update-norm``,
``fedrec.server.validate``): the bound on an update is the devices' clipping.

Quantization: a device's weights are clipped to ±``secagg-clipping-range`` (R) and
quantized to ``secagg-quantization-range`` (Q, 2^22) levels before masking; the sum is
taken modulo 2^32. The server knows the global weights, and every update's L2 norm is at
most ``clip``, so before each round it checks max|w| + clip against the range (beyond it
weights would be clipped silently) and stops with a clear reason. A cohort whose sum can
wrap the modulus (more than 1023 clients per round at Q = 2^22) is refused before the
run, and the stochastic rounding's error (at most ``rho = sqrt(d) 2R/Q`` in L2 per
device) is added to the clip in the accounting (``fedrec.server.secagg_bounds``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, RecordDict
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common import recorddict_compat as compat
from flwr.server import LegacyContext, ServerConfig
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg, Strategy
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key

from fedrec.server.ddp import SkellamSum
from fedrec.server.secagg_bounds import check_no_wrap, rounding_l2
from fedrec.shared.config import RunConfig
from fedrec.shared.errors import ConfigError
from fedrec.shared.protocol import CLIENT_SECONDS, TRAIN_LOSS, to_record, with_array_names


class _Recorder(Strategy):
    """The legacy strategy the workflow talks to: everything goes to ``strategy``; the
    aggregation runs inside ``aggregating(round)`` (the DP noise generator installed:
    ``ServerPrivacy.aggregating``), and what aggregation received is recorded."""

    def __init__(self, strategy: Strategy,
                 aggregating: Callable[[int], AbstractContextManager]) -> None:
        self.strategy = strategy
        self.aggregating = aggregating
        self.reset()

    def reset(self) -> None:
        self.sampled, self.results, self.failures = [], [], 0
        self.distinct_updates, self.aggregated = 0, False

    def initialize_parameters(self, client_manager):
        return None

    def configure_fit(self, server_round, parameters, client_manager):
        self.sampled = self.strategy.configure_fit(server_round, parameters, client_manager)
        return self.sampled

    def aggregate_fit(self, server_round, results, failures):
        self.results, self.failures = list(results), len(failures)
        self.distinct_updates = len({id(res.parameters) for _, res in results})
        with self.aggregating(server_round):
            params, metrics = self.strategy.aggregate_fit(server_round, results, failures)
        self.aggregated = params is not None
        return params, metrics

    def configure_evaluate(self, server_round, parameters, client_manager):
        return []

    def aggregate_evaluate(self, server_round, results, failures):
        return None, {}

    def evaluate(self, server_round, parameters):
        return None


class _CountingGrid:
    """The run's grid, counting the bytes of every message the workflow exchanges."""

    def __init__(self, grid) -> None:
        self._grid = grid
        self.down = self.up = 0

    def send_and_receive(self, messages, *, timeout=None):
        messages = list(messages)
        self.down += sum(_size(m) for m in messages)
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        self.up += sum(_size(m) for m in replies if not m.has_error())
        return replies

    def __getattr__(self, name):
        return getattr(self._grid, name)


def _size(msg) -> int:
    """Payload bytes of a message (SecAgg+ records hold lists of bytes, which Flower's
    ``count_bytes`` does not take)."""
    return sum(_value_bytes(v) for record in msg.content.values() for v in record.values())


def _value_bytes(value) -> int:
    if isinstance(value, (list, tuple)):
        return sum(_value_bytes(v) for v in value)
    if isinstance(value, (bytes, str)):
        return len(value)
    if hasattr(value, "data"):                # an Array
        return len(value.data)
    return 8


class SecAggTrainer:
    """One SecAgg+ training round at a time, over the run's (ordered) grid.

    Args:
        cfg: the run (``secagg``: dp = server with client-fixed clipping, validated there).
        grid: the ServerApp's grid (an ``OrderedGrid``: positions, stable node order).
        n_clients: N, nodes in the federation.
        sampled: clients drawn per round (without replacement, as the accountant assumes).
        dp: the server's user-level ledger (its ``rounding_l2`` is set here).
        n_weights: d, weights in the global model (every one of them is summed).
    """

    def __init__(self, cfg: RunConfig, grid, n_clients: int, sampled: int, dp,
                 n_weights: int) -> None:
        if sampled < 3:
            raise ValueError(f"secagg needs at least 3 clients per round, got {sampled}")
        self.cfg, self.dp = cfg, dp
        self.distributed = cfg.distributed_dp
        #: dp = distributed: called with (round, fields) before the round's shares are
        #: drawn, to log its event durably (the run's write-ahead; set by the ServerApp)
        self.before_shares: Callable[[int, dict[str, Any]], None] | None = None
        self.grid = _CountingGrid(grid)
        self.fedavg = FedAvg(fraction_fit=sampled / n_clients, fraction_evaluate=0.0,
                             min_fit_clients=sampled, min_evaluate_clients=0,
                             min_available_clients=n_clients)
        if self.distributed:        # devices add the noise; the server only sums
            self.wrapper = SkellamSum(self.fedavg, dp.plan)
            self.recorder = _Recorder(self.wrapper, lambda rnd: contextlib.nullcontext())
        else:
            check_no_wrap(sampled, cfg.secagg_quantization_range)
            self.set_rounding(n_weights)
            self.wrapper = DifferentialPrivacyClientSideFixedClipping(
                self.fedavg, cfg.noise_multiplier, cfg.clip, sampled)
            self.recorder = _Recorder(self.wrapper,
                                      lambda rnd: self.dp.aggregating(self.wrapper, rnd))
        empty = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})
        self.context = LegacyContext(context=empty, config=ServerConfig(num_rounds=cfg.rounds),
                                     strategy=self.recorder)
        run_id = getattr(getattr(grid, "run", None), "run_id", 0)
        for node in grid.get_node_ids():   # the OrderedGrid's stable order: seeded draws repeat
            self.context.client_manager.register(GridClientProxy(node, grid, run_id))
        shares = cfg.secagg_shares or 1.0      # 0: every sampled client holds a share
        if self.distributed:   # integers pass exactly; fewer than t survivors: no sum
            q, c, m = dp.plan.ranges()
            ranges = dict(reconstruction_threshold=max(dp.plan.threshold, 2),
                          clipping_range=float(c), quantization_range=q, modulus_range=m)
        else:
            ranges = dict(reconstruction_threshold=cfg.secagg_threshold,
                          clipping_range=cfg.secagg_clipping_range,
                          quantization_range=cfg.secagg_quantization_range)
        try:
            self.workflow = SecAggPlusWorkflow(num_shares=shares, max_weight=1.0,
                                               timeout=cfg.round_timeout, **ranges)
        except ValueError as err:      # Flower's own checks (threshold vs shares)
            raise ConfigError(f"secagg settings: {err}") from None

    def set_rounding(self, n_weights: int) -> None:
        """Tell the ledger how far quantization can move one update (``rounding_l2``)."""
        self.dp.rounding_l2 = rounding_l2(n_weights, self.cfg.secagg_clipping_range,
                                          self.cfg.secagg_quantization_range)

    def check_range(self, rnd: int, weights: list[np.ndarray]) -> None:
        """Refuse a round whose weights SecAgg+ would clip silently (module docstring)."""
        largest = max(float(np.max(np.abs(w))) for w in weights if w.size)
        if largest + self.cfg.clip > self.cfg.secagg_clipping_range:
            raise RuntimeError(
                f"round {rnd}: SecAgg+ would clip weights silently: max |w| {largest:.3g} + clip "
                f"{self.cfg.clip:g} > secagg-clipping-range {self.cfg.secagg_clipping_range:g}")

    def train(self, rnd: int, arrays: ArrayRecord, config: ConfigRecord
              ) -> tuple[ArrayRecord | None, dict[str, Any], float]:
        """Run round ``rnd``; return the new arrays (None: no aggregate), the round's
        metrics fields and the clients' compute seconds."""
        names = list(arrays.keys())
        weights = [arrays[n].numpy() for n in names]
        if not self.distributed:
            self.check_range(rnd, weights)
            self.set_rounding(sum(int(w.size) for w in weights))
        fit_config = with_array_names(dict(config), names)
        self.fedavg.on_fit_config_fn = lambda _round: dict(fit_config)
        state = self.context.state
        state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
            ndarrays_to_parameters(weights), keep_input=True)
        state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord(
            {Key.CURRENT_ROUND: rnd, Key.START_TIME: time.time()})
        self.recorder.reset()
        self.grid.down = self.grid.up = 0
        if self.distributed:       # write-ahead: the event before any share is drawn
            planned = self.dp.record_planned(rnd)
            if self.before_shares is not None:
                self.before_shares(rnd, planned)
        self.workflow(self.grid, self.context)
        rec = self.recorder
        metrics = [dict(res.metrics) for _, res in rec.results]
        line = {"clients_sampled": len(rec.sampled), "clients_replied": len(rec.results),
                "clients_failed": rec.failures, "clients_declined": 0, "clients_rejected": 0,
                "clients_timed_out": len(rec.sampled) - len(rec.results) - rec.failures,
                "train_loss": (float(np.mean([m.get(TRAIN_LOSS, np.nan) for m in metrics]))
                               if metrics else None),
                "bytes_down": self.grid.down, "bytes_up": self.grid.up,
                "secagg_distinct_updates": rec.distinct_updates}
        seconds = float(sum(m.get(CLIENT_SECONDS, 0.0) for m in metrics))
        averaged = (sorted(self.grid.position(proxy.node_id) for proxy, _ in rec.results)
                    if rec.aggregated else [])     # Flower's DP wrapper drops a round with failures
        line.update({"participants": averaged, "declined": [], "rejected": []})
        if self.distributed:       # survivors: a count; a round with s < t is not aggregated
            line.update(self.dp.after_round(self.wrapper.survivors))
        if not rec.aggregated:
            return None, line, seconds
        if not self.distributed:
            line.update(self.dp.after_aggregation(self.wrapper, rnd, len(rec.results)))
        new = parameters_to_ndarrays(compat.arrayrecord_to_parameters(
            state.array_records[MAIN_PARAMS_RECORD], keep_input=True))
        return to_record({n: a.astype(w.dtype) for n, a, w in zip(names, new, weights)}), line, seconds
