"""SecAgg+ on the device for the distributed-noise releases (Flower engine, issue #22).

The server's ``SecAggPlusWorkflow`` (``fedrec.server.release_secagg``) sends the fit stage
as a legacy fit instruction carrying the contribute request; Flower's ``secaggplus_mod``
(composed around the release ClientApp's train handler) calls :func:`answer`, which
returns the device's *centered* integer share ``x_i`` (its rounded contribution plus
``Sk(mu / t)``, ``fedrec.client.releases.centered_share``) as one float64 array of exact
integers, weight 1. The mod then quantizes it (exactly: the ranges of
``fedrec.shared.skellam.secagg_ranges`` make Flower's quantizer 1), masks it and uploads it.

Range: Flower clips to ``[-c, c]`` silently, ``c = 2^(bits-1)``. ``bits`` is sized so that
n rounded contributions plus the largest noise of the sum stay within ``c`` except with
probability 2^-40 (``fedrec.shared.skellam.bits_needed``), and one device's share is at
most 1/n of that contribution bound plus a noise share more concentrated than the sum's,
so a share beyond ``c`` cannot happen in practice; should one occur (or should the
server's SecAgg+ setup differ from those ranges), the device refuses with an error (it
drops out of that release) rather than let a clipped share into the sum.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Context, Message
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common import recorddict_compat as compat
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_STATE

from fedrec.client import releases as device
from fedrec.shared import protocol_releases as wire
from fedrec.shared import skellam
from fedrec.shared.federated_data import ClientData
from fedrec.shared.release_config import ReleaseConfig


class ShareRefused(RuntimeError):
    """The device will not hand this share to SecAgg+ (it would be clipped or misread)."""


class SimulatedDropout(RuntimeError):
    """``--release-dropout``: this device fails in this release (a simulation)."""


def check_share(x: np.ndarray, bits: int, devices: int, threshold: int,
                setup: dict | None) -> None:
    """Refuse a share outside ``[-c, c]`` (Flower would clip it silently), or a SecAgg+
    setup whose ranges are not ``secagg_ranges(bits, devices)`` (it would round or wrap)
    or whose reconstruction threshold is not the ``threshold`` t the noise is sized for."""
    q, c, m = skellam.secagg_ranges(bits, devices)
    if x.size and int(np.max(np.abs(x))) > c:
        raise ShareRefused(f"share coordinate {int(np.max(np.abs(x)))} beyond the SecAgg+ "
                           f"range {c} (2^(bits-1)): refused rather than clipped")
    if setup is not None:
        want = (q, float(c), m, 1.0, threshold)
        got = tuple(setup.get(k) for k in ("target_range", "clipping_range", "mod_range",
                                           "max_weight", "threshold"))
        if got != want:
            raise ShareRefused(f"SecAgg+ setup (Q, c, M, max weight, threshold) = {got}, "
                               f"expected {want}: refused")


def answer(msg: Message, context: Context, cfg: ReleaseConfig, data: ClientData,
           partition: int, devices: int) -> Message:
    """The fit stage's reply: this device's centered share as a legacy ``FitRes``."""
    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    statistic, request = wire.secagg_request_of(parameters_to_ndarrays(fitins.parameters),
                                                dict(fitins.config))
    release = cfg.releases.index(statistic) + 1
    if partition in device.simulated_dropouts(cfg.release_dropout, devices, cfg.seed, release):
        raise SimulatedDropout(f"device {partition} fails in release {release} (simulated)")
    seed = None if cfg.noise_seed < 0 else cfg.noise_seed
    rng = device.noise_generator(seed, device.share_stream(release, devices, partition))
    x = device.centered_share(statistic, request, data, rng)
    setup = context.state.config_records.get(RECORD_KEY_STATE)
    check_share(x, int(request[wire.NOISE_BITS]), devices, cfg.survivor_threshold(devices),
                None if setup is None else dict(setup))
    result = FitRes(Status(Code.OK, ""), ndarrays_to_parameters([x.astype(np.float64)]), 1, {})
    return Message(compat.fitres_to_recorddict(result, keep_input=False), reply_to=msg)
