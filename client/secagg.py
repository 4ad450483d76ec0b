"""SecAgg+ on the device: Flower's ``secaggplus_mod`` around fedrec's ClientApp.

Flower 1.23 offers secure aggregation only on its legacy path: the server's
``SecAggPlusWorkflow`` sends the protocol's four stages as train messages, the fit
stage in the legacy record format (``fitins.*``), and ``secaggplus_mod`` masks the legacy
``FitRes`` that the app inside it returns. :func:`secagg_mod` composes the two rather
than forking either: a train message of a SecAgg+ round goes through ``secaggplus_mod``,
whose inner app translates the legacy fit message into fedrec's own (the arrays' names
come back from the round config, legacy parameters being an unnamed list), runs the rest
of the app (so ``fedrec.client.mods.optional_fixedclipping_mod`` still clips the update to the
norm the server's DP wrapper asked for, on the device, before it is masked), and turns
the reply back into a ``FitRes``. Every other message passes straight through.

What still leaves the device in clear: the reply's metrics (number of examples, which is
1 under user-level DP, the train loss and the seconds spent). A device that declines a
round cannot take part in the protocol's sum; it answers with an error and counts as
dropped out.

With ``dp = distributed`` (the fit config carries ``skellam-*`` keys) the device does
not hand its weights to ``secaggplus_mod`` but its clipped update as integers plus its
Skellam noise share (``fedrec.client.ddp``): the server then unmasks only the noisy sum.
"""

from __future__ import annotations

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common import recorddict_compat as compat
from flwr.common.constant import MessageType
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

from fedrec.client import ddp
from fedrec.client.seeding import allows_seeded_noise
from fedrec.shared.protocol import (
    ARRAYS,
    CONFIG,
    METRICS,
    NODE_ALLOW_SEEDED,
    NODE_DEVICE_INDEX,
    NODE_PARTITION_ID,
    NUM_EXAMPLES,
    SKELLAM_PREFIX,
    LocalSettings,
    declined_reason,
    server_round,
    split_array_names,
    to_record,
)


class DeclinedUnderSecAgg(RuntimeError):
    """The app declined a SecAgg+ round: the device drops out of that round's sum."""


def secagg_mod(msg: Message, context: Context, call_next) -> Message:
    """``secaggplus_mod`` for the train messages of a SecAgg+ round (module docstring)."""
    if (msg.metadata.message_type != MessageType.TRAIN
            or RECORD_KEY_CONFIGS not in msg.content.config_records):
        return call_next(msg, context)
    return secaggplus_mod(msg, context, lambda m, c: _legacy_fit(m, c, call_next))


def _legacy_fit(msg: Message, context: Context, call_next) -> Message:
    """Legacy fit message in, fedrec's app in the middle, legacy ``FitRes`` out."""
    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    names, config = split_array_names(fitins.config)
    arrays = dict(zip(names, parameters_to_ndarrays(fitins.parameters), strict=True))
    original = msg.content
    inner = {k: v for k, v in config.items() if not k.startswith(SKELLAM_PREFIX)}
    msg.content = RecordDict({ARRAYS: to_record(arrays), CONFIG: ConfigRecord(inner)})
    try:
        reply = call_next(msg, context)
    finally:
        msg.content = original
    if reply.has_error():
        return reply
    if ARRAYS not in reply.content:
        raise DeclinedUnderSecAgg(f"declined a SecAgg+ round: {declined_reason(reply.content)}")
    metrics = dict(reply.content[METRICS])
    weights = reply.content[ARRAYS]
    new = [weights[n].numpy() for n in names]
    if ddp.is_distributed(config):     # the clipped update, integer, plus the noise share
        new = ddp.encode_update([arrays[n] for n in names], new, config,
                                *_generators(config, context))
        metrics[NUM_EXAMPLES] = 1      # every device weighs 1 (max_weight = 1)
    result = FitRes(Status(Code.OK, ""), ndarrays_to_parameters(new),
                    int(metrics.get(NUM_EXAMPLES, 1)), metrics)
    reply.content = compat.fitres_to_recorddict(result, keep_input=False)
    return reply


def _generators(config, context: Context):
    """The device's rounding and noise generators for this round (``fedrec.client.ddp``);
    a seeded round only where the device's node config allows it."""
    settings = LocalSettings.from_record(config)
    node = context.node_config
    if settings.noise_seed >= 0 and not allows_seeded_noise(node):
        raise DeclinedUnderSecAgg(f"refused: the server seeded this round's noise (noise-seed "
                                  f"{settings.noise_seed}); allowed only with "
                                  f"{NODE_ALLOW_SEEDED} = true in the node config")
    user = int(node.get(NODE_PARTITION_ID, node.get(NODE_DEVICE_INDEX, -1)))
    return ddp.generators(settings.noise_seed, int(context.run_config.get("seed", 0)), user,
                          server_round(config))
