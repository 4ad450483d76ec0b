"""The parallel runner of ``make test`` (tests/shards.py): every file runs exactly once,
the split is balanced, and recorded seconds are read back per file."""

from __future__ import annotations

from tests import shards


def test_every_file_lands_in_exactly_one_shard_longest_first():
    seconds = {"tests/test_a.py": 600, "tests/test_b.py": 300, "tests/test_c.py": 290,
               "tests/test_d.py": 20}
    files = sorted([*seconds, "tests/test_e.py"])          # e: no record, 10 s assumed
    groups = shards.balance(files, seconds, 2)
    assert sorted(f for g in groups for f in g) == files
    # LPT by hand: a(600) -> 0; b(300) -> 1; c(290) -> 1 (590); d(20) -> 1 (610);
    # e(10) -> 0 (610)
    assert groups == [["tests/test_a.py", "tests/test_e.py"],
                      ["tests/test_b.py", "tests/test_c.py", "tests/test_d.py"]]


def test_more_shards_than_files_leaves_no_empty_shard():
    groups = shards.balance(["tests/test_a.py", "tests/test_b.py"], {}, 4)
    assert groups == [["tests/test_a.py"], ["tests/test_b.py"]]


def test_junit_seconds_add_up_per_file(tmp_path):
    xml = tmp_path / "shard.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_a" name="t1" time="1.5"/>'
        '<testcase classname="tests.test_a" name="t2" time="2.0"/>'
        '<testcase classname="tests.test_b.TestGroup" name="t3" time="0.25"/>'
        '</testsuite></testsuites>')
    assert shards.junit_seconds(xml) == {"tests/test_a.py": 3.5, "tests/test_b.py": 0.25}
    assert shards.junit_seconds(tmp_path / "missing.xml") == {}


def test_the_suite_is_every_test_file():
    files = shards.test_files()
    assert "tests/test_shards.py" in files and "tests/test_deployment.py" in files
    assert all(f.startswith("tests/test_") and f.endswith(".py") for f in files)
