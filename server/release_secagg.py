"""SecAgg+ transport of the distributed-noise releases (Flower engine, issue #22).

Each release's shares travel through Flower's ``SecAggPlusWorkflow`` (Flower 1.23 has
SecAgg+ only on its legacy path: a ``LegacyContext`` and a legacy ``Strategy``). Every
device answers the fit stage with its *centered* integer share ``x_i`` (rounded
contribution plus ``Sk(mu / t)``; ``fedrec.client.release_secagg``) through
``secaggplus_mod``, which quantizes, masks and uploads it; the server unmasks only the
sum of the survivors' shares, which Flower hands to :class:`_SumStrategy` as a weighted
average. With the ranges of ``fedrec.shared.skellam.secagg_ranges`` (``Q = 2^bits``,
``c = Q / 2``, weight 1) that average times the survivors s is exactly ``sum x_i``
(``fedrec.server.distributed.decode_average``); the rest of the pipeline
(``fedrec.server.distributed.run``) is unchanged.

Reconstruction threshold = t, the survivor threshold (``--min-survivors``); every key is
shared with all n devices. Fewer than t devices completing the protocol halts it:
nothing is unmasked and the release is not made (``TooFewSurvivors``).

Flower 1.23's workflow halts on *any* device that drops out before its key shares reach
the others (at setup or share keys), however many survive: its unmask stage asks for,
and tries to rebuild, a key of every device sampled at setup, and nobody holds a share
of such a device's keys. :class:`DropoutTolerantSecAggPlus` forgets those devices once
share keys ends (they are in no mask and no sum); see docs/distributed-dp.md.

:class:`RecordingGrid` writes every payload the server receives (and the unmasked sums)
to ``secagg-transcript.jsonl`` in the run directory when ``secagg-transcript`` is set
(tests only: it needs ``--noise-seed``), so a test can look for un-noised aggregates.
"""

from __future__ import annotations

import base64
import json
import struct
import time
from pathlib import Path

from flwr.app import ConfigRecord, Context, RecordDict
from flwr.common import FitIns, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common import recorddict_compat as compat
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.common.secure_aggregation.secaggplus_constants import Key as SecAggKey
from flwr.server import LegacyContext, ServerConfig
from flwr.server.compat.grid_client_proxy import GridClientProxy
from flwr.server.strategy import Strategy
from flwr.server.workflow import SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD, Key

from fedrec.server.distributed import UnmaskedSum, decode_average
from fedrec.shared import protocol_releases as wire
from fedrec.shared import skellam

TRANSCRIPT = "secagg-transcript.jsonl"


class _SumStrategy(Strategy):
    """The legacy strategy the workflow talks to: every registered node gets the same
    fit instruction; ``aggregate_fit`` keeps the unmasked average and how many masked
    shares it holds (the results: the devices that uploaded one)."""

    def __init__(self) -> None:
        self.fitins: FitIns | None = None
        self.reset()

    def reset(self) -> None:
        self.average, self.survivors = None, 0

    def initialize_parameters(self, client_manager):
        return None

    def configure_fit(self, server_round, parameters, client_manager):
        return [(proxy, self.fitins) for proxy in client_manager.all().values()]

    def aggregate_fit(self, server_round, results, failures):
        self.survivors = len(results)
        if results:
            self.average = parameters_to_ndarrays(results[0][1].parameters)[0]
        return None, {}

    def configure_evaluate(self, server_round, parameters, client_manager):
        return []

    def aggregate_evaluate(self, server_round, results, failures):
        return None, {}

    def evaluate(self, server_round, parameters):
        return None


class DropoutTolerantSecAggPlus(SecAggPlusWorkflow):
    """Flower's ``SecAggPlusWorkflow`` that survives devices lost before or during share
    keys.

    After share keys, only the devices that completed it (``active_node_ids``) sent
    encrypted key shares, so only they are in the survivors' pairwise masks (a device's
    mod masks with the sources of the shares it received) and only their keys can be
    rebuilt. Flower's unmask stage still lists every device sampled at setup as dead
    (``sampled_node_ids - active``) and as a neighbour: the survivors fail looking up its
    share (``KeyError``) and the server finds no share of it ("Not enough shares"). This
    drops the devices lost so far from ``sampled_node_ids`` and from every neighbour set;
    the server then asks for nothing more than Flower would (for each device either the
    private-mask seed or the mask key, never both), and devices lost later (after their
    shares went out) are handled by Flower as before.
    """

    def share_keys_stage(self, grid, context, state) -> bool:
        ok = super().share_keys_stage(grid, context, state)
        keep = set(state.active_node_ids)
        lost = set(state.sampled_node_ids) - keep
        state.sampled_node_ids = keep
        state.nid_to_neighbours = {nid: set(nbrs) - lost
                                   for nid, nbrs in state.nid_to_neighbours.items()
                                   if nid in keep}
        return ok


class RecordingGrid:
    """The run's grid; counts the masked shares uploaded and, with a ``transcript``
    path, appends every received payload (base64 of its bytes) to it."""

    def __init__(self, grid, transcript: Path | None = None) -> None:
        self._grid = grid
        self.transcript = transcript
        self.uploads = 0

    def send_and_receive(self, messages, *, timeout=None):
        replies = list(self._grid.send_and_receive(list(messages), timeout=timeout))
        for reply in replies:
            if reply.has_error():
                continue
            configs = reply.content.config_records.get(RECORD_KEY_CONFIGS, {})
            self.uploads += SecAggKey.MASKED_PARAMETERS in configs
            self.write({"node": reply.metadata.src_node_id,
                        "payloads": [base64.b64encode(b).decode() for b in _payloads(reply)]})
        return replies

    def write(self, entry: dict) -> None:
        if self.transcript is not None:
            with self.transcript.open("a") as f:
                f.write(json.dumps(entry) + "\n")

    def __getattr__(self, name):
        return getattr(self._grid, name)


def _payloads(msg) -> list[bytes]:
    """Every value a message carries, as bytes (arrays: their serialized data)."""
    out: list[bytes] = []
    for record in msg.content.values():
        for value in record.values():
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, bytes):
                    out.append(v)
                elif isinstance(v, str):
                    out.append(v.encode())
                elif hasattr(v, "data"):
                    out.append(bytes(v.data))
                else:
                    out.append(struct.pack("<d", float(v)))
    return out


class SecAggCollect:
    """``collect`` of ``fedrec.server.distributed.run`` over SecAgg+: one workflow per
    release, every node of ``nodes`` asked, reconstruction threshold ``threshold`` (t)."""

    def __init__(self, grid, nodes: list[int], threshold: int, timeout: float | None,
                 transcript: Path | None = None) -> None:
        self.grid = RecordingGrid(grid, transcript)
        self.devices, self.threshold, self.timeout = len(nodes), threshold, timeout
        self.strategy = _SumStrategy()
        empty = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config={})
        self.context = LegacyContext(context=empty, config=ServerConfig(num_rounds=1),
                                     strategy=self.strategy)
        run_id = getattr(getattr(grid, "run", None), "run_id", 0)
        for node in nodes:
            self.context.client_manager.register(GridClientProxy(node, grid, run_id))
        self.rounds = 0

    def workflow(self, bits: int) -> SecAggPlusWorkflow:
        """Flower's workflow (:class:`DropoutTolerantSecAggPlus`) with fedrec's ranges;
        ``num_shares`` 1.0: all n devices."""
        q, c, m = skellam.secagg_ranges(bits, self.devices)
        return DropoutTolerantSecAggPlus(
            num_shares=1.0, reconstruction_threshold=int(self.threshold), max_weight=1.0,
            clipping_range=float(c), quantization_range=q, modulus_range=m,
            timeout=self.timeout)

    def __call__(self, statistic: str, request: dict) -> UnmaskedSum:
        arrays, config = wire.secagg_request(statistic, request)
        self.strategy.fitins = FitIns(ndarrays_to_parameters(arrays), config)
        self.strategy.reset()
        self.rounds += 1
        state = self.context.state
        state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
            ndarrays_to_parameters([]), keep_input=True)
        state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord(
            {Key.CURRENT_ROUND: self.rounds, Key.START_TIME: time.time()})
        self.grid.uploads = 0
        self.workflow(int(request[wire.NOISE_BITS]))(self.grid, self.context)
        if self.strategy.average is None:          # halted: fewer than t completed
            return UnmaskedSum(None, self.grid.uploads)
        total = decode_average(self.strategy.average, self.strategy.survivors)
        self.grid.write({"unmasked": statistic, "survivors": self.strategy.survivors,
                         "total": total.tolist()})
        return UnmaskedSum(total, self.strategy.survivors)
