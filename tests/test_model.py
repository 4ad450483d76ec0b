import numpy as np
import pytest
import tensorflow as tf

from fedrec.shared.model import (
    ModelConfig,
    build_model,
    get_global_weights,
    get_private_weights,
    make_scorer,
    set_weights,
)

CFG = ModelConfig(gmf_dim=4, mlp_embedding_dim=3, mlp_layers=(6, 2), content_dim=5)


def _model(n_users=7, n_items=11, n_features=3, **kw):
    tf.keras.utils.set_random_seed(0)
    return build_model(CFG, n_users, n_items, n_features, **kw)


def test_private_group_is_exactly_the_user_embeddings():
    model = _model()
    private = get_private_weights(model)
    assert sorted(private) == ["user_gmf_embedding/embeddings", "user_mlp_embedding/embeddings"]
    assert private["user_gmf_embedding/embeddings"].shape == (7, 4)
    assert private["user_mlp_embedding/embeddings"].shape == (7, 3)
    glob = get_global_weights(model)
    assert "item_gmf_embedding/embeddings" in glob and "prediction/kernel" in glob
    assert any(name.startswith("content_tower") for name in glob)
    assert not any(name.startswith("user_") for name in glob)
    # the two groups partition the trainable weights
    assert len(glob) + len(private) == len(model.trainable_variables)


def test_global_shapes_do_not_depend_on_the_number_of_users():
    a, b = _model(n_users=1), _model(n_users=500)
    sa, sb = get_global_weights(a), get_global_weights(b)
    assert sa.keys() == sb.keys()
    assert all(sa[k].shape == sb[k].shape for k in sa)


def test_set_weights_rejects_missing_or_misshaped_arrays_without_partial_update():
    model = _model()
    before = get_global_weights(model)
    bad = {k: np.zeros_like(v) for k, v in before.items()}
    bad["prediction/kernel"] = np.zeros((1, 1), np.float32)
    with pytest.raises(ValueError, match="prediction/kernel"):
        set_weights(model, bad, "global")
    after = get_global_weights(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="missing"):
        set_weights(model, {}, "private")


def test_content_tower_gives_cold_items_distinct_scores():
    model = _model(n_items=4)
    weights = get_global_weights(model)
    for name in ("item_gmf_embedding/embeddings", "item_mlp_embedding/embeddings"):
        weights[name] = np.zeros_like(weights[name])     # no collaborative signal at all
    set_weights(model, weights, "global")
    features = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]], np.float32)
    scores = make_scorer(model, features)(np.array([0, 1]))
    assert scores.shape == (2, 4)
    assert len(np.unique(np.round(scores[0, :3], 6))) == 3


def test_scorer_matches_a_direct_model_call():
    model = _model()
    features = np.random.default_rng(0).random((11, 3)).astype(np.float32)
    users = np.array([0, 3, 6])
    direct = model({"user": users, "item": np.tile(np.arange(11), (3, 1)),
                    "item_features": np.broadcast_to(features, (3, 11, 3))}).numpy()
    np.testing.assert_allclose(make_scorer(model, features, users_per_batch=2)(users), direct,
                               rtol=1e-5, atol=1e-6)


def test_dp_model_uses_fast_gradient_clipping():
    from tensorflow_privacy import DPModel
    from tensorflow_privacy.privacy.fast_gradient_clipping.layer_registry import (
        make_default_layer_registry,
    )

    model = _model(model_class=DPModel, l2_norm_clip=1.0, noise_multiplier=1.0, use_xla=False,
                   layer_registry=make_default_layer_registry())
    assert model._enable_fast_peg_computation  # every trainable layer is registered
