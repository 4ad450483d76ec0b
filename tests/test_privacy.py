import json
import math

import pytest

from fedrec.shared import privacy


def test_event_round_trips_through_json():
    event = privacy.dpsgd_event(1.1, 0.01, 500)
    data = json.loads(json.dumps(privacy.event_to_dict(event)))
    assert data["class_name"] == "SelfComposedDpEvent" and data["count"] == 500
    assert privacy.event_from_dict(data) == event


def test_event_from_dict_refuses_foreign_modules():
    data = privacy.event_to_dict(privacy.dpsgd_event(1.0, 0.1, 3))
    data["event"]["module_name"] = "os"
    with pytest.raises(ValueError, match="refusing"):
        privacy.event_from_dict(data)


def test_epsilon_matches_tensorflow_privacy_statement():
    """Same mechanism (MNIST tutorial settings), two independent code paths."""
    from tensorflow_privacy import compute_dp_sgd_privacy_statement

    n, batch, epochs, sigma, delta = 60000, 256, 15, 1.1, 1e-5
    steps = epochs * math.ceil(n / batch)
    ours = privacy.epsilon(privacy.dpsgd_event(sigma, batch / n, steps), delta)
    text = compute_dp_sgd_privacy_statement(number_of_examples=n, batch_size=batch,
                                            num_epochs=epochs, noise_multiplier=sigma,
                                            delta=delta, used_microbatching=False)
    line = next(l for l in text.splitlines() if "Poisson sampling" in l)
    theirs = float(line.split()[-1])
    assert ours == pytest.approx(theirs, rel=0.02)
    assert 1.0 < ours < 1.3   # the tutorial's published value is about 1.18


def test_pld_is_a_tighter_second_opinion():
    event = privacy.dpsgd_event(1.0, 0.01, 1000)
    rdp, pld = privacy.epsilon(event, 1e-5, "rdp"), privacy.epsilon(event, 1e-5, "pld")
    assert 0.8 * rdp < pld <= rdp * 1.001


def test_calibration_hits_the_target_and_more_noise_means_less_epsilon():
    make = lambda s: privacy.dpsgd_event(s, 0.004, 2000)  # noqa: E731
    sigma = privacy.calibrate_noise(2.0, 1e-5, make)
    assert privacy.epsilon(make(sigma), 1e-5) == pytest.approx(2.0, abs=0.01)
    assert privacy.epsilon(make(sigma * 1.5), 1e-5) < 2.0


def test_no_noise_is_infinite_epsilon_and_bad_parameters_fail():
    assert privacy.epsilon(privacy.dpsgd_event(0.0, 0.1, 10), 1e-5) == math.inf
    with pytest.raises(ValueError, match="noise"):
        privacy.dpsgd_event(-1.0, 0.1, 10)
    with pytest.raises(ValueError, match="sampling rate"):
        privacy.dpsgd_event(1.0, 0.0, 10)
    with pytest.raises(ValueError, match="delta"):
        privacy.epsilon(privacy.dpsgd_event(1.0, 0.1, 10), 1.5)
