import numpy as np
import pytest

from fedrec.shared.interactions import (
    build_interactions,
    evaluation_negatives,
    leave_last_out,
    sample_training_negatives,
    user_negatives,
)
from tests.conftest import make_dataset


def test_pairs_are_unique_with_first_time_and_strongest_event(tiny):
    inter = build_interactions(tiny)
    assert list(inter.user_ids) == ["a", "b", "c"]
    assert list(inter.item_ids) == ["i1", "i2", "i3", "i4", "i5", "i6"]
    a = inter.users == 0
    # user a: i2 viewed at 20 then purchased at 25 -> one pair, time 20, weight 3
    assert list(inter.items[a]) == [0, 1, 2, 3]
    assert list(inter.timestamps[a]) == [10, 20, 30, 40]
    assert list(inter.weights[a]) == [1.0, 3.0, 1.0, 1.0]
    assert len(inter.users) == 4 + 3 + 2


def test_item_features_are_categories_and_price_buckets(tiny):
    inter = build_interactions(tiny, price_buckets=2)
    assert inter.feature_names[:3] == ["cat:books", "cat:shoes", "cat:sport"]
    cats = inter.item_categories
    np.testing.assert_array_equal(cats[1], [0, 1, 1])   # i2 shoes|sport
    np.testing.assert_array_equal(cats[5], [0, 0, 0])   # i6 no category
    price = inter.item_features[:, 3:]
    # prices 10,20,5,7,30 -> median 10: bucket 0 for 5,7; bucket 1 for 10,20,30
    np.testing.assert_array_equal(price.argmax(1)[:5], [1, 1, 0, 0, 1])
    assert price[5].sum() == 0                         # unknown price: no bucket


def test_leave_last_out_by_time_and_min_interactions(tiny):
    split = leave_last_out(build_interactions(tiny))
    # a: i1,i2,i3,i4 by time -> test i4, val i3; b: i1(5), i5(6), i6(6, later in file)
    assert list(split.test_users) == [0, 1] and list(split.test_items) == [3, 5]
    assert list(split.val_users) == [0, 1] and list(split.val_items) == [2, 4]
    # c has only 2 items: all in train, not evaluated
    assert sorted(split.train_items[split.train_users == 2]) == [2, 3]
    merged = split.with_validation_in_train()
    assert len(merged.train_users) == len(split.train_users) + 2


def test_leave_last_out_rejects_too_small_minimum(tiny):
    with pytest.raises(ValueError, match="at least 3"):
        leave_last_out(build_interactions(tiny), min_interactions=2)


def test_user_negatives_avoid_positives_are_distinct_and_deterministic():
    pos = np.array([0, 3, 5, 7])
    a = user_negatives(pos, 50, 20, seed=1, user=4, stream=1)
    b = user_negatives(pos, 50, 20, seed=1, user=4, stream=1)
    np.testing.assert_array_equal(a, b)
    assert len(set(a)) == 20 and not set(a) & set(pos)
    assert not np.array_equal(a, user_negatives(pos, 50, 20, seed=1, user=5, stream=1))
    # not enough items left: everything unseen, nothing invented
    np.testing.assert_array_equal(user_negatives(pos, 8, 99, 0, 0, 1), [1, 2, 4, 6])


def test_evaluation_negatives_depend_only_on_the_user():
    rows = [(u, f"i{(u * 3 + k) % 40}", k, "view") for u in range(6) for k in range(5)]
    split = leave_last_out(build_interactions(make_dataset(rows)))
    neg = evaluation_negatives(split, 10, seed=3)
    assert neg.shape == (6, 10)
    for row, user in zip(neg, split.test_users):
        assert not set(row) & set(split.positives_of(int(user)))
    # a client that knows only its own positives draws the same negatives
    pos0 = split.positives_of(0)
    np.testing.assert_array_equal(user_negatives(pos0, split.n_items, 10, 3, 0, 1), neg[0])


def test_training_negatives_never_hit_a_training_positive():
    rng = np.random.default_rng(0)
    rows = [(u, f"i{i}", i, "view") for u in range(30) for i in rng.choice(20, 15, replace=False)]
    split = leave_last_out(build_interactions(make_dataset(rows)))
    train = split.train_matrix()
    neg = sample_training_negatives(train, split.train_users, 4, np.random.default_rng(1))
    assert neg.shape == (len(split.train_users), 4)
    assert not np.asarray(train[np.repeat(split.train_users, 4), neg.ravel()]).any()


def test_evaluation_negatives_pad_when_the_catalogue_runs_out():
    rows = [("a", f"i{k}", k, "view") for k in range(5)] + [("b", "i0", 0, "view"),
            ("b", "i1", 1, "view"), ("b", "i2", 2, "view")]
    split = leave_last_out(build_interactions(make_dataset(rows)))
    neg = evaluation_negatives(split, 3, seed=0)
    assert (neg[0] == -1).all()                      # a touched all 5 items
    assert sorted(neg[1][:2]) == [3, 4] and neg[1][2] == -1


def test_padded_negatives_never_outrank_the_positive():
    from fedrec.shared.evaluate import sampled_ranks

    scores = lambda users: np.tile([5.0, 1.0, 9.0], (len(users), 1))  # noqa: E731
    ranks = sampled_ranks(scores, np.array([0]), np.array([1]), np.array([[0, -1, -1]]))
    assert ranks.tolist() == [1]   # only item 0 (score 5 > 1) outranks; padding does not
