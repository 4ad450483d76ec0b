"""The Flower ServerApp: federated averaging of the hybrid model's *global* weights.

The round loop drives a Flower strategy one round at a time (``configure_train`` ->
``grid.send_and_receive`` -> ``aggregate_train`` -> evaluation), instead of
``strategy.start``, so that after every round it can checkpoint, log a metrics line and
stop cleanly; the aggregation itself is always Flower's.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.common.constant import MessageType
from flwr.serverapp import Grid, ServerApp

from fedrec.server import ddp
from fedrec.server.dp import (
    ServerPrivacy,
    accounting_record,
    declared_privacy,
    final_privacy,
    reported_events,
)
from fedrec.server.private_log import (
    crash_point,
    ledger_from_releases,
    release_entry,
    resumed_ledger,
    split_fields,
    user_scope,
)
from fedrec.server.reply_order import eval_order, train_order
from fedrec.server.rundir import PRIVATE_SECTION, RunDir
from fedrec.server.secagg import SecAggTrainer
from fedrec.server.simnodes import SIMULATION_NODES, NodeLog
from fedrec.server.slots import SlotGrid, slots_needed
from fedrec.server.strategy import (
    OrderedGrid,
    get_state,
    make_strategy,
    per_round,
    seed_sampling,
    set_state,
    wait_for_nodes,
)
from fedrec.server.validate import check_update
from fedrec.shared.budget import BudgetRegistry, run_entry
from fedrec.shared.catalogue import load_catalogue
from fedrec.shared.config import RunConfig
from fedrec.shared.federated_data import federation_of
from fedrec.shared.ledger import Ledger
from fedrec.shared.protocol import (
    ARRAYS,
    CLIENT_EPSILON,
    CLIENT_SECONDS,
    COLD_HR,
    COLD_USERS,
    CONFIG,
    DECLINED_REASON,
    EVAL_METRICS,
    METRICS,
    NEW_ITEM_HR,
    NEW_ITEM_USERS,
    NUM_EXAMPLES,
    SAMPLE_EVALUATE,
    SAMPLE_TRAIN,
    TRAIN_LOSS,
    LocalSettings,
    from_record,
    is_declined,
    position_of,
    to_record,
)
from fedrec.shared.protocol import round_config as wire_round_config
from fedrec.shared.runinfo import versions
from fedrec.shared.secagg_prg import install as install_full_seed_masks

log = logging.getLogger("flwr")
install_full_seed_masks()       # SecAgg+ masks keyed by the whole seed (fedrec.shared.secagg_prg)
app = ServerApp()
#: The server's user-level ledger travels in each checkpoint, next to the model it paid for.
LEDGER_KEY = "privacy-ledger"


def initial_global_weights(cfg: RunConfig, n_items: int, item_features) -> dict:
    """The global group of a freshly initialised model (seeded)."""
    import tensorflow as tf

    from fedrec.shared.model import build_model, get_global_weights

    tf.keras.utils.set_random_seed(cfg.seed)
    return get_global_weights(build_model(cfg.model, 1, n_items, item_features.shape[1]))


def round_config(cfg: RunConfig, round_: int, dp: ServerPrivacy | None = None) -> ConfigRecord:
    """What every sampled client is told for this round: local settings and, under
    user-level DP, the server's (ε, δ) so far (its ledger is no secret to its devices;
    the SDK shows it in ``privacy_status``)."""
    return wire_round_config(LocalSettings.from_run_config(cfg, round_), round_,
                             None if dp is None else (dp.spent(), dp.ledger.delta))


def _bytes(messages: list[Message]) -> int:
    return sum(m.content[ARRAYS].count_bytes() for m in messages
               if not m.has_error() and ARRAYS in m.content)


def _client_seconds(replies: list[Message]) -> float:
    return float(sum(float(m.content[METRICS][CLIENT_SECONDS]) for m in replies
                     if not m.has_error() and METRICS in m.content
                     and CLIENT_SECONDS in m.content[METRICS]))


def _users_loss(replies: list[Message], grid, users: int) -> float | None:
    """Mean train loss of real users' replies (an audit run's canaries trained nothing)."""
    pairs = [(float(m.content[METRICS][NUM_EXAMPLES]), float(m.content[METRICS][TRAIN_LOSS]))
             for m in replies if grid.position(m.metadata.src_node_id) < users]
    total = sum(w for w, _ in pairs)
    return sum(w * v for w, v in pairs) / total if total else None


def _metric(record, key: str) -> float | None:
    return None if record is None or key not in record else float(record[key])


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = RunConfig.from_mapping(dict(context.run_config), source="run config")
    run_federation(grid, cfg)


def run_federation(grid: Grid, cfg: RunConfig) -> dict[str, Any]:
    """Run (or resume) ``cfg.rounds`` rounds; write the run directory; return results."""
    fed = server_data(cfg)
    sampled = per_round(cfg.clients_per_round, fed.n_clients)
    strategy = make_strategy(cfg, fed.n_clients)   # Flower validates DP arguments here
    weights = initial_global_weights(cfg, fed.n_items, fed.item_features)
    dp = user_privacy(cfg, fed.n_clients, sampled, sum(int(np.size(w)) for w in weights.values()))
    declared = declared_privacy(cfg, fed.n_clients, sampled)
    if cfg.distributed_dp:
        declared["user"] = dp.declared(fed.n_clients)
    run = RunDir(cfg.out)
    run.create({"config": cfg.to_flower(), "versions": versions(), "seed": cfg.seed,
                "run_id": secrets.token_hex(8), "data": fed.manifest,
                "model": "fedrec-hybrid (NeuMF + content tower), federated reconstruction",
                "privacy": declared, "server_private": PRIVATE_SECTION},
               resume=cfg.resume)
    if not cfg.catalogue:   # simulation: count which Ray node ran each reply
        grid = NodeLog(grid, run.path / SIMULATION_NODES)
    if cfg.lazy_clients:   # one virtual node per user, served by a few slots
        grid = SlotGrid(grid, fed.n_clients, slots_needed(cfg, fed.n_clients),
                        timeout=cfg.round_timeout)
    else:
        grid = OrderedGrid(grid, node_positions(grid, fed.n_clients, cfg.round_timeout))
    releases = run.read_releases() if cfg.resume else []
    start_round = 1
    if cfg.resume:
        start_round, weights, dp = _resume(run, cfg, strategy, weights, dp, releases,
                                           fed.n_clients, sampled)
    # after a resume: the trainer records into the restored ledger
    secagg = (SecAggTrainer(cfg, grid, fed.n_clients, sampled, dp,
                            sum(int(np.size(w)) for w in weights.values()))
              if cfg.secagg else None)
    budget = BudgetRegistry.for_run(cfg.budget_dir, cfg.out)
    users = fed.manifest.get("users")

    def write_ahead(rnd: int, public: dict[str, Any], private: dict[str, Any]) -> None:
        """Record the round's release durably before its aggregate leaves the server."""
        entry = release_entry(rnd, len(releases) + 1, public, private)
        run.write_ahead(entry)
        releases.append(entry)
        accounting = accounting_record(cfg, dp, releases)
        if accounting is not None:
            run.record_accounting(accounting)
        budget.record(run_entry(run.manifest(), accounting, len(releases), run.path))

    if secagg is not None and cfg.distributed_dp:   # the event logged before shares are drawn
        secagg.before_shares = lambda rnd, planned: write_ahead(rnd, planned, {})
    arrays = to_record(weights)
    started = time.perf_counter()
    last_eval, stopped = None, None
    for rnd in range(start_round, cfg.rounds + 1):
        reason = dp.refuse(rnd) if dp is not None else None
        if reason:
            stopped = {"round": rnd, "reason": reason}
            log.warning("stopping before round %d: %s", rnd, reason)
            break
        arrays, line = _one_round(grid, strategy, cfg, rnd, arrays, fed.n_clients, dp, secagg,
                                  write_ahead)
        crash_point(rnd)                    # tests only: a crash after the release
        state = get_state(strategy)
        if dp is not None:
            state[LEDGER_KEY] = np.array(dp.ledger.dumps())
        run.save_checkpoint(rnd, from_record(arrays), state)
        run.append_metrics(line)
        if dp is not None and (over := dp.exceeded(rnd)):
            stopped = {"round": rnd + 1, "reason": over}
            log.warning("stopping: %s", over)
            break
        if line.get("hr@10") is not None:
            last_eval = line
        log.info("round %d/%d  loss %s  HR@10 %s  (%.1f s)", rnd, cfg.rounds, line["train_loss"],
                 line.get("hr@10"), line["wall_seconds"])
    history = run.read_metrics()
    last_eval = next((r for r in reversed(history) if r.get("hr@10") is not None), last_eval)
    privacy_record = final_privacy(cfg, dp, history, stopped)
    if privacy_record is not None and privacy_record.get("user") is not None:
        privacy_record["user"] = (ddp.user_scope(privacy_record["user"]) if cfg.distributed_dp
                                  else user_scope(privacy_record["user"], releases, users))
    if privacy_record is not None:
        run.write_privacy(privacy_record)
    results = {
        "dataset": fed.name, "model": f"federated-{cfg.strategy}", "seed": cfg.seed,
        "metrics": {k: last_eval[k] for k in EVAL_METRICS} if last_eval else {},
        "privacy": privacy_record, "rounds": len(history), "rounds_planned": cfg.rounds,
        "stopped": stopped, "clients": fed.n_clients,
        "clients_per_round": sampled,
        "wall_seconds": sum(r["wall_seconds"] for r in history),
        "session_seconds": time.perf_counter() - started,
        "rounds_to_hr@10_0.60": next((r["round"] for r in history
                                      if (r.get("hr@10") or 0) >= 0.60), None),
    }
    run.write_results(results)
    return results


def _resume(run: RunDir, cfg: RunConfig, strategy, weights: dict, dp: ServerPrivacy | None,
            releases: list[dict], n_clients: int, sampled: int
            ) -> tuple[int, dict, ServerPrivacy | None]:
    """Reopen ``run`` after its last complete round: (first round to run, weights, the
    user-level ledger holding every release in the write-ahead log, re-runs included)."""
    done = run.last_complete_round()
    run.truncate_metrics(done)          # also drops a torn line from a crash
    saved = None
    if done:
        weights, state = run.load_checkpoint(done)
        saved = state.pop(LEDGER_KEY, None)
        set_state(strategy, state)
    if dp is not None:
        if done and saved is None and not releases:
            raise RuntimeError(f"{run.path}: checkpoint of round {done} holds no privacy "
                               "ledger; cannot resume a DP run without it")
        from_log = ledger_from_releases(releases, dp.ledger.relation, dp.ledger.delta)
        ledger = resumed_ledger(from_log, None if saved is None else Ledger.loads(str(saved)))
        if isinstance(dp, ddp.DistributedPrivacy):
            dp = dp.restored(ledger)
        else:
            dp = ServerPrivacy(cfg, n_clients, sampled, ledger)
            if done:
                dp.resume(strategy)
    if cfg.dp != "none":   # the manifest's events again match the releases logged
        run.record_accounting(accounting_record(cfg, dp, releases or run.read_metrics()))
    log.info("resuming %s after round %d (%d releases logged)", run.path, done, len(releases))
    return done + 1, weights, dp


def user_privacy(cfg: RunConfig, n_clients: int, sampled: int, n_weights: int):
    """The run's user-level ledger: Flower's central noise (``ServerPrivacy``), the
    devices' Skellam shares (``fedrec.server.ddp.DistributedPrivacy``), or None."""
    if cfg.distributed_dp:
        plan = ddp.plan_rounds(cfg, n_clients, sampled, n_weights)
        return ddp.DistributedPrivacy(cfg, n_clients, plan)
    return ServerPrivacy(cfg, n_clients, sampled) if cfg.server_dp else None


@dataclass(frozen=True)
class ServerData:
    """What the server knows about the data: the catalogue and how many clients there are."""

    name: str
    n_clients: int
    n_items: int
    item_features: np.ndarray
    manifest: dict[str, Any]


def server_data(cfg: RunConfig) -> ServerData:
    """Deployment (``catalogue`` set): the item catalogue only, ``clients`` devices.
    Simulation: the whole dataset, one client per user, plus ``canaries`` canary clients
    (positions N..N+k-1) in an audit run."""
    if cfg.catalogue:
        cat = load_catalogue(cfg.catalogue)
        return ServerData(cat.name, cfg.clients, cat.n_items, cat.item_features,
                          {"name": cat.name, "fingerprint": cat.fingerprint, "clients": cfg.clients,
                           "items": cat.n_items, "catalogue": cfg.catalogue})
    fed = federation_of(cfg)
    clients = fed.n_clients + cfg.canaries
    return ServerData(fed.name, clients, fed.n_items, fed.item_features,
                      {"name": fed.name, "fingerprint": fed.fingerprint, "clients": clients,
                       "users": fed.n_clients, "canaries": cfg.canaries,
                       "example_canaries": len(fed.canary_users) if cfg.example_canaries else 0,
                       "items": fed.n_items, "training_interactions": fed.training_interactions,
                       **({"generated": "lazily, per client (lazy-clients)"}
                          if cfg.lazy_clients else {})})


def node_positions(grid: Grid, expected: int, timeout: float) -> dict[int, int]:
    """Ask every node for its stable position (partition id) once, before round 1."""
    nodes = wait_for_nodes(grid, expected)
    queries = [Message(RecordDict(), dst_node_id=n, message_type=MessageType.QUERY)
               for n in nodes]
    positions = {}
    for reply in grid.send_and_receive(queries, timeout=timeout):
        if not reply.has_error():
            positions[reply.metadata.src_node_id] = position_of(reply.content)
    return positions


def _usable(replies: list[Message], arrays: ArrayRecord, max_norm: float,
            unit_weight: bool = False) -> tuple[list, list, list, list]:
    """Split replies into (updates to aggregate, declines, failures, rejections).

    Rejections are replies that are not a well-formed update (``fedrec.server.validate``); under
    user-level DP also any reply weighted other than 1 (the sensitivity assumes it).
    """
    updates, declined, failed, rejected = [], [], [], []
    sent = from_record(arrays)
    for m in replies:
        if m.has_error():
            failed.append(m)
        elif is_declined(m):
            declined.append(m)
        elif (why := check_update(m, sent, max_norm, unit_weight)) is not None:
            log.warning("reply from node %s rejected: %s", m.metadata.src_node_id, why)
            rejected.append(m)
        else:
            updates.append(m)
    return updates, declined, failed, rejected


def _train(grid: Grid, strategy, cfg: RunConfig, n_clients: int, dp: ServerPrivacy | None,
           rnd: int, arrays: ArrayRecord, config: ConfigRecord
           ) -> tuple[ArrayRecord | None, dict[str, Any], float]:
    """One training round on the Message API: the new arrays (None: no aggregate), the
    round's metrics fields and the clients' compute seconds."""
    messages = list(strategy.configure_train(rnd, arrays, config, grid))
    replies = sorted(grid.send_and_receive(messages, timeout=cfg.round_timeout), key=train_order)
    ok, declined, failed, rejected = _usable(replies, arrays, cfg.max_update_norm,
                                             unit_weight=cfg.server_dp)
    if len(ok) < cfg.min_replies:
        raise RuntimeError(f"round {rnd}: {len(ok)} usable updates < min-replies {cfg.min_replies}"
                           f" ({len(declined)} declined, {len(failed)} failed, "
                           f"{len(rejected)} rejected)")
    with dp.aggregating(strategy, rnd) if dp is not None else contextlib.nullcontext():
        new_arrays, train_metrics = strategy.aggregate_train(rnd, ok)
    line: dict[str, Any] = {
        "clients_sampled": len(messages), "clients_replied": len(ok),
        "clients_failed": len(failed), "clients_declined": len(declined),
        "clients_rejected": len(rejected),
        "clients_timed_out": len(messages) - len(replies),   # no reply within round-timeout
        "train_loss": (_metric(train_metrics, TRAIN_LOSS) if not cfg.canaries
                       else _users_loss(ok, grid, n_clients - cfg.canaries)),
        "bytes_down": _bytes(messages), "bytes_up": _bytes(ok),
    }
    if dp is not None and new_arrays is not None:
        line.update(dp.after_aggregation(strategy, rnd, len(ok)))
    if cfg.dp != "none" and hasattr(grid, "position"):  # the participation log audits check
        line["participants"] = sorted(grid.position(m.metadata.src_node_id) for m in ok)
        line["declined"] = sorted(grid.position(m.metadata.src_node_id) for m in declined)
        line["rejected"] = sorted(grid.position(m.metadata.src_node_id) for m in rejected)
        if cfg.client_dp:   # a rejected update's DP-SGD round was spent all the same
            line["client_events"] = reported_events(ok + rejected, grid.position)
    if cfg.client_dp:  # every reply that reports it: a rejected update was spent all the same
        line["client_epsilon_max"] = max((float(m.content[METRICS][CLIENT_EPSILON])
                                          for m in ok + declined + rejected
                                          if CLIENT_EPSILON in m.content[METRICS]),
                                         default=None)
    if declined:
        line["declined_reasons"] = sorted({str(m.content[CONFIG][DECLINED_REASON])
                                           for m in declined})
    return new_arrays, line, _client_seconds(ok + declined)


def _one_round(grid: Grid, strategy, cfg: RunConfig, rnd: int, arrays: ArrayRecord,
               n_clients: int, dp: ServerPrivacy | None = None, secagg: SecAggTrainer | None = None,
               write_ahead: Callable[[int, dict, dict], None] | None = None
               ) -> tuple[ArrayRecord, dict[str, Any]]:
    """Train (and maybe evaluate) one round; return new arrays and the metrics line.

    ``write_ahead(round, public fields, private fields)`` runs after aggregation and
    before anything carries the aggregate away (evaluation here, then the caller's
    checkpoint and next round). Who took part goes there, never into the metrics line.
    """
    t0 = time.perf_counter()
    seed_sampling(cfg.seed, rnd, SAMPLE_TRAIN, cfg.secret_randomness)
    config = round_config(cfg, rnd, dp)
    new_arrays, fields, client_seconds = (
        secagg.train(rnd, arrays, config) if secagg is not None
        else _train(grid, strategy, cfg, n_clients, dp, rnd, arrays, config))
    fields, private = split_fields(fields)
    if write_ahead is not None:
        write_ahead(rnd, fields, private)
    arrays = new_arrays if new_arrays is not None else arrays
    line: dict[str, Any] = {"round": rnd, **fields}
    if rnd % cfg.eval_every == 0 or rnd == cfg.rounds:
        seed_sampling(cfg.seed, rnd, SAMPLE_EVALUATE, cfg.secret_randomness)
        eval_messages = list(strategy.configure_evaluate(rnd, arrays, round_config(cfg, rnd, dp),
                                                         grid))
        eval_replies = sorted(grid.send_and_receive(eval_messages, timeout=cfg.round_timeout),
                              key=eval_order)
        eval_ok = [m for m in eval_replies if not m.has_error()]
        agg = strategy.aggregate_evaluate(rnd, eval_replies)
        line.update({k: _metric(agg, k) for k in EVAL_METRICS})
        if (_metric(agg, COLD_USERS) or 0) > 0:   # cold-start scenario: late users only
            line["cold_hr@10"] = _metric(agg, COLD_HR) / _metric(agg, COLD_USERS)
        if (_metric(agg, NEW_ITEM_USERS) or 0) > 0:   # new-items scenario
            line["new_item_hr@10"] = _metric(agg, NEW_ITEM_HR) / _metric(agg, NEW_ITEM_USERS)
            line["new_item_users"] = int(sum(float(m.content[METRICS][NEW_ITEM_USERS])
                                             for m in eval_ok))
        line["eval_clients"] = len(eval_ok)
        line["bytes_down"] += _bytes(eval_messages)
        client_seconds += _client_seconds(eval_ok)
    wall = time.perf_counter() - t0
    line.update({"wall_seconds": wall, "client_compute_seconds": client_seconds,
                 "orchestration_seconds": max(0.0, wall - client_seconds)})
    return arrays, line
