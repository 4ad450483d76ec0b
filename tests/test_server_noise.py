"""Server randomness (issue 19, item 7, server part): secret noise comes from a generator
keyed with 128 bits of OS entropy whose outputs do not give its state away; seeded noise
is reproducible and marked not private; numpy's global generator is put back."""

from __future__ import annotations

import random

import numpy as np
import pytest
from flwr.serverapp.strategy import FedAvg

from fedrec.server import dp as server_dp
from fedrec.server import strategy as server_strategy
from fedrec.server.dp import ServerPrivacy, declared_privacy, seed_noise
from fedrec.server.wrappers import wrap_strategy
from fedrec.shared.config import RunConfig

MASK = 0xFFFFFFFF


def _untemper(y: int) -> int:
    """Invert MT19937's output tempering (each step is a fixpoint of its own xor-shift)."""
    y ^= y >> 18
    y ^= (y << 15) & 0xEFC60000
    x = y
    for _ in range(5):
        x = y ^ ((x << 7) & 0x9D2C5680)
    y = x & MASK
    x = y
    for _ in range(3):
        x = y ^ (x >> 11)
    return x & MASK


def _temper(y: int) -> int:
    y ^= y >> 11
    y ^= (y << 7) & 0x9D2C5680
    y ^= (y << 15) & 0xEFC60000
    return (y ^ (y >> 18)) & MASK


def _predict_next_mt19937(outputs: list[int]) -> int:
    """The 625th output of an MT19937 stream from its 624 previous ones (the textbook
    state recovery: untemper, then one twist step)."""
    state = [_untemper(o) for o in outputs[-624:]]
    y = (state[0] & 0x80000000) | (state[1] & 0x7FFFFFFF)
    nxt = state[397] ^ (y >> 1) ^ (0x9908B0DF if y & 1 else 0)
    return _temper(nxt)


def _raw32(count: int, generator=None) -> list[int]:
    """The next ``count`` raw outputs of ``generator`` (numpy's global bit generator by
    default), low 32 bits."""
    generator = generator or np.random.get_bit_generator()
    return [int(v) & MASK for v in generator.random_raw(count)]


def test_the_state_recovery_works_on_mt19937():
    out = _raw32(1000, np.random.MT19937(5))[300:925]        # any 625 in a row
    assert _predict_next_mt19937(out[:624]) == out[624]


def test_secret_server_noise_does_not_give_its_generator_state_away(tmp_path):
    previous = np.random.get_bit_generator()
    try:
        seed_noise(RunConfig(out=str(tmp_path), dp="server"), 1)       # noise-seed -1: secret
        out = _raw32(625)
        assert _predict_next_mt19937(out[:624]) != out[624]
    finally:
        np.random.set_bit_generator(previous)


def test_secret_keys_take_128_bits_of_os_entropy(tmp_path, monkeypatch):
    asked = []

    def randbits(k: int) -> int:
        asked.append(k)
        return random.SystemRandom().getrandbits(k)

    monkeypatch.setattr(server_dp.secrets, "randbits", randbits)
    monkeypatch.setattr(server_strategy.secrets, "randbits", randbits)
    previous = np.random.get_bit_generator()
    try:
        seed_noise(RunConfig(out=str(tmp_path), dp="server"), 1)
        first = np.random.normal(size=4)
        seed_noise(RunConfig(out=str(tmp_path), dp="server"), 1)    # same round, fresh key
        assert not np.allclose(first, np.random.normal(size=4))
    finally:
        np.random.set_bit_generator(previous)
    server_strategy.seed_sampling(0, 1, 0, secret=True)
    assert asked == [128, 128, 128]


def test_seeded_noise_is_the_same_mt19937_stream_as_before_and_declared_not_private(tmp_path):
    cfg = RunConfig(out=str(tmp_path), dp="server", noise_seed=3, seed=7)
    previous = np.random.get_bit_generator()
    try:
        seed_noise(cfg, 2)
        ours = np.random.normal(size=5)
        np.random.set_bit_generator(np.random.MT19937())
        np.random.seed(np.random.SeedSequence([7, 3, 2, 2]).generate_state(4))  # the old way
        assert np.array_equal(ours, np.random.normal(size=5))
    finally:
        np.random.set_bit_generator(previous)
    user = declared_privacy(cfg, 10, 5)["user"]
    assert "not private" in user["noise_generator"]
    assert "128 bits" in declared_privacy(cfg.replace(noise_seed=-1), 10, 5)["user"][
        "noise_generator"]


def test_aggregation_puts_numpys_global_generator_back(tmp_path):
    cfg = RunConfig(out=str(tmp_path), dp="server")
    strategy = wrap_strategy(FedAvg(), cfg, sampled=2)
    before = np.random.get_bit_generator()
    with ServerPrivacy(cfg, 4, 2).aggregating(strategy, 1):
        assert isinstance(np.random.get_bit_generator(), np.random.PCG64DXSM)
    assert np.random.get_bit_generator() is before
    with pytest.raises(RuntimeError):
        with ServerPrivacy(cfg, 4, 2).aggregating(strategy, 2):
            raise RuntimeError("aggregation failed")
    assert np.random.get_bit_generator() is before
