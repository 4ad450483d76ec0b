"""Tests for fedrec.shared.io (reading/validating data files) and fedrec.shared.datasets."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedrec import shared
from fedrec.shared.datasets import load_dataset
from fedrec.shared.errors import DataError
from fedrec.shared.io import (
    GROUPLENS_GENRES,
    load_grouplens_dir,
    load_recbole_dir,
    read_events,
    read_items,
    validate_file,
)
from fedrec.shared.schema import EVENT_COLUMNS, ITEM_COLUMNS


def _pyarrow_works() -> bool:
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return False
    return True


needs_pyarrow = pytest.mark.skipif(not _pyarrow_works(),
                                   reason="pyarrow cannot be imported in this environment")

HEADER = "user_id,item_id,timestamp,event,value\n"


def write(tmp_path: Path, text: str | bytes, name: str = "events.csv") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def assert_data_error(err: DataError, path: Path, row: int | None, column: str | None,
                      text: str) -> None:
    """Exact file/row/column prefix, the problem text, one line, no pandas internals."""
    msg = str(err)
    where = [str(path)] + ([f"row {row}"] if row is not None else []) \
        + ([f"column '{column}'"] if column is not None else [])
    assert msg.startswith(", ".join(where) + ": "), msg
    assert err.row == row and err.column == column, msg
    assert text in msg, msg
    assert "\n" not in msg and "Traceback" not in msg and "pandas" not in msg, msg


# ----------------------------------------------------------------- bad CSV events

BAD_CSV = [
    # id, file text, row, column, expected text
    ("missing-column", "user_id,item_id,event\n1,2,view\n", None, "timestamp",
     "missing required column"),
    ("timestamp-abc", HEADER + "1,2,100,view,\n1,3,abc,view,\n", 2, "timestamp",
     "'abc' is neither epoch seconds (integer) nor an ISO-8601 date/time"),
    ("timestamp-empty", HEADER + "1,2,100,view,\n1,2,100,view,\n1,3,,view,\n", 3, "timestamp",
     "timestamp is empty"),
    ("timestamp-nan", HEADER + "1,2,NaN,view,\n", 1, "timestamp", "timestamp is missing"),
    ("timestamp-millis", HEADER + "1,2,1700000000000,view,\n", 1, "timestamp",
     "not milliseconds"),
    ("value-x", HEADER + "1,2,100,rating,4\n1,2,100,rating,x\n", 2, "value",
     "'x' is not a number"),
    ("value-inf", HEADER + "1,2,100,rating,inf\n", 1, "value", "not a finite number"),
    ("empty-file", "", None, None, "file is empty"),
    ("blank-lines-only", "\n\n", None, None, "file is empty"),
    ("header-only", HEADER, None, None, "has a header but no data rows"),
    ("duplicate-header", "user_id,item_id,timestamp,event,item_id\n1,2,3,view,4\n", None,
     "item_id", "duplicate column name in the header (columns 2 and 5)"),
    ("header-repeated", HEADER + "1,2,100,view,\n" + HEADER + "1,3,100,view,\n", 2, None,
     "the header line is repeated inside the data"),
    ("unknown-event", HEADER + "1,2,100,view,\n1,2,100,like,\n", 2, "event",
     "unknown event 'like'; allowed: view, click, cart, purchase, rating"),
    ("empty-event", HEADER + "1,2,100,,\n", 1, "event", "event is empty"),
    ("user-empty", HEADER + "1,2,100,view,\n,2,100,view,\n", 2, "user_id", "id is empty"),
    ("item-nan", HEADER + "1,NaN,100,view,\n", 1, "item_id", "id is missing"),
    ("item-float", HEADER + "1,2,100,view,\n1,3.5,100,view,\n", 2, "item_id",
     "'3.5' is a decimal number; ids must be integers or strings"),
    ("user-bool", HEADER + "True,2,100,view,\n", 1, "user_id", "is a boolean"),
    ("too-many-fields", HEADER + "1,2,100,view,\n1,2,100,view,1,extra\n", 2, None,
     "row has 6 fields but the header has 5"),
    ("unclosed-quote", HEADER + '1,2,100,view,\n1,"abc,100,view,\n1,2,100,view,\n', 2, None,
     "a quoted field is never closed"),
    ("too-many-fields-first-row", HEADER + "1,2,100,view,1,extra\n", 1, None,
     "row has 6 fields but the header has 5"),
    # blank lines are skipped but still counted (row 3 below is the bad one)
    ("row-numbers-count-blank-lines", HEADER + "1,2,100,view,\n\n1,2,zz,view,\n", 3,
     "timestamp", "'zz'"),
    # the first offending row wins, whatever the column
    ("first-row-wins", HEADER + "1,2,100,view,\n1,2,100,view,oops\n,2,100,bogus,\n", 2,
     "value", "'oops' is not a number"),
    # within one row, columns are reported in schema order
    ("first-column-in-row", HEADER + "1,2.5,bad,bogus,\n", 1, "item_id", "'2.5'"),
    ("separator-hint", "user_id;item_id;timestamp;event\n1;2;3;view\n", None, "user_id",
     "seems to use ';' as separator"),
]


@pytest.mark.parametrize("text,row,column,expected",
                         [c[1:] for c in BAD_CSV], ids=[c[0] for c in BAD_CSV])
def test_bad_csv_events(tmp_path, text, row, column, expected):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as exc:
        read_events(path)
    assert_data_error(exc.value, path, row, column, expected)


def test_not_utf8(tmp_path):
    path = write(tmp_path, HEADER.encode() + b"1,\xff\xfe,100,view,\n")
    with pytest.raises(DataError) as exc:
        read_events(path)
    assert_data_error(exc.value, path, None, None, "is not valid UTF-8 text")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(DataError) as exc:
        read_events(path)
    assert_data_error(exc.value, path, None, None, "file not found")


@pytest.mark.parametrize("name", ["events.txt", "events.json", "events"])
def test_unsupported_extension(tmp_path, name):
    path = write(tmp_path, HEADER + "1,2,3,view,\n", name)
    with pytest.raises(DataError) as exc:
        read_events(path)
    assert_data_error(exc.value, path, None, None, "unsupported file type")
    assert ".csv, .parquet or .pq" in str(exc.value)


def test_directory_is_not_a_file(tmp_path):
    d = tmp_path / "dir.csv"
    d.mkdir()
    with pytest.raises(DataError, match="is a directory"):
        read_events(d)


# ----------------------------------------------------------------- bad Parquet events


def _parquet_cases():
    base = {"user_id": [1, 2, 3], "item_id": ["a", "b", "c"], "timestamp": [10, 20, 30],
            "event": ["view", "click", "cart"]}

    def with_(**cols):
        return pd.DataFrame({**base, **cols})

    return [
        ("float-id", with_(item_id=[1.0, 3.5, 2.0]), 1, "item_id", "1.0 is a float"),
        ("bool-id", with_(user_id=[True, False, True]), 1, "user_id", "is a boolean"),
        ("null-string-id", with_(item_id=["a", None, "c"]), 2, "item_id", "id is missing"),
        ("empty-string-id", with_(item_id=["a", "b", " "]), 3, "item_id", "id is empty"),
        ("null-int-id", with_(user_id=pd.array([1, None, 3], dtype="Int64")), 2, "user_id",
         "id is missing"),
        ("nan-timestamp", with_(timestamp=[1.0, 2.0, np.nan]), 3, "timestamp",
         "timestamp is missing"),
        ("text-timestamp", with_(timestamp=["2020-01-01", "abc", "x"]), 2, "timestamp",
         "'abc' is neither"),
        ("unknown-event", with_(event=["view", "view", "like"]), 3, "event",
         "unknown event 'like'"),
        ("value-text", with_(value=["1", "x", "2"]), 2, "value", "'x' is not a number"),
        ("value-bool", with_(value=[True, False, True]), 1, "value", "is a boolean"),
        ("missing-column", pd.DataFrame({k: v for k, v in base.items() if k != "event"}),
         None, "event", "missing required column"),
        ("no-rows", with_().iloc[:0], None, None, "has columns but no data rows"),
    ]


PARQUET_CASES = _parquet_cases()


@needs_pyarrow
@pytest.mark.parametrize("frame,row,column,expected", [c[1:] for c in PARQUET_CASES],
                         ids=[c[0] for c in PARQUET_CASES])
def test_bad_parquet_events(tmp_path, frame, row, column, expected):
    path = tmp_path / "events.parquet"
    frame.to_parquet(path, index=False)
    with pytest.raises(DataError) as exc:
        read_events(path)
    assert_data_error(exc.value, path, row, column, expected)


@needs_pyarrow
def test_parquet_duplicate_column_names(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table([pa.array([1]), pa.array([2]), pa.array([3]), pa.array(["view"]),
                      pa.array([4])],
                     names=["user_id", "item_id", "timestamp", "event", "user_id"])
    path = tmp_path / "dup.pq"
    pq.write_table(table, path)
    with pytest.raises(DataError) as exc:
        read_events(path)
    assert_data_error(exc.value, path, None, "user_id", "duplicate column name in the schema")


@needs_pyarrow
def test_parquet_corrupt_and_empty(tmp_path):
    bad = write(tmp_path, b"PAR1 this is not parquet", "bad.parquet")
    with pytest.raises(DataError) as exc:
        read_events(bad)
    assert_data_error(exc.value, bad, None, None, "is not a readable Parquet file")
    empty = write(tmp_path, b"", "empty.parquet")
    with pytest.raises(DataError) as exc:
        read_events(empty)
    assert_data_error(exc.value, empty, None, None, "file is empty")


# ------------------------------------------------------------------------ good input


def _expected_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": ["1", "2", "u3"], "item_id": ["10", "x-11", "12"],
        "timestamp": np.array([100, 200, 1672531200], dtype=np.int64),
        "event": ["view", "rating", "purchase"], "value": [np.nan, 4.5, 19.99],
    })


def test_csv_round_trip(tmp_path):
    expected = _expected_frame()
    path = tmp_path / "events.csv"
    extra = expected.assign(extra="ignored")
    extra.to_csv(path, index=False)
    got = read_events(path)
    assert list(got.columns) == list(EVENT_COLUMNS)
    pd.testing.assert_frame_equal(got, expected)
    assert got["timestamp"].dtype == np.int64 and got["value"].dtype == np.float64


def test_csv_lenient_formatting(tmp_path):
    # BOM, padded cells, capitalised events, no value column, trailing blank lines,
    # a quoted field with a comma, integer-valued decimal timestamps.
    text = ("\ufeffuser_id , item_id,timestamp,event,note\n"
            ' 7 ,"a,b", 100 ,View,hi\n'
            "8,b,200.9,PURCHASE,\n\n\n")
    path = write(tmp_path, text)
    got = read_events(path)
    assert got["user_id"].tolist() == ["7", "8"]
    assert got["item_id"].tolist() == ["a,b", "b"]
    assert got["timestamp"].tolist() == [100, 200]
    assert got["event"].tolist() == ["view", "purchase"]
    assert got["value"].isna().all()


def test_iso_timestamps(tmp_path):
    rows = [
        ("2023-01-01T00:00:00Z", 1672531200),
        ("2023-01-01T02:00:00+02:00", 1672531200),
        ("2023-01-01 10:00:00", 1672567200),       # naive -> UTC
        ("2023-01-01", 1672531200),
        ("2023-01-01T00:00:01.900Z", 1672531201),  # fractions are floored
        ("1672531200", 1672531200),
    ]
    text = HEADER + "".join(f"1,2,{ts},view,\n" for ts, _ in rows)
    got = read_events(write(tmp_path, text))
    assert got["timestamp"].tolist() == [s for _, s in rows]
    # all-ISO columns take a vectorised path; check it agrees with the per-cell path
    iso_only = HEADER + "".join(f"1,2,{ts},view,\n" for ts, _ in rows[:-1])
    got = read_events(write(tmp_path, iso_only, "iso.csv"))
    assert got["timestamp"].tolist() == [s for _, s in rows[:-1]]


@needs_pyarrow
def test_parquet_round_trip(tmp_path):
    expected = _expected_frame()
    src = expected.copy()
    src["user_id"] = src["user_id"].astype(object)
    src["event"] = src["event"].astype("category")
    src["extra"] = [[1], [2], [3]]
    for name in ("events.parquet", "events.pq"):
        path = tmp_path / name
        src.to_parquet(path, index=False)
        pd.testing.assert_frame_equal(read_events(path), expected)


@needs_pyarrow
def test_parquet_typed_columns(tmp_path):
    frame = pd.DataFrame({
        "user_id": np.array([7, 8], dtype=np.int32),
        "item_id": [1, 2],
        "timestamp": pd.to_datetime(["2023-01-01T02:00:00+02:00", "2023-01-01T00:00:05Z"],
                                    utc=True),
        "event": ["click", "cart"],
        "value": np.array([1, 2], dtype=np.int16),
    })
    path = tmp_path / "typed.parquet"
    frame.to_parquet(path, index=False)
    got = read_events(path)
    assert got["user_id"].tolist() == ["7", "8"]
    assert got["item_id"].tolist() == ["1", "2"]
    assert got["timestamp"].tolist() == [1672531200, 1672531205]
    assert got["value"].tolist() == [1.0, 2.0]
    # naive datetimes are UTC
    frame["timestamp"] = pd.to_datetime(["2023-01-01", "2023-01-02"])
    frame.to_parquet(path, index=False)
    assert read_events(path)["timestamp"].tolist() == [1672531200, 1672617600]


def test_validate_file_summary(tmp_path):
    text = HEADER + "1,a,100,view,\n1,b,300,view,\n2,a,200,purchase,9.5\n"
    summary = validate_file(write(tmp_path, text))
    assert summary == {
        "path": str(tmp_path / "events.csv"), "rows": 3, "users": 2, "items": 2,
        "events": {"view": 2, "purchase": 1}, "time_range": [100, 300],
    }


# ----------------------------------------------------------------------------- items


def test_read_items_csv(tmp_path):
    path = write(tmp_path, "item_id,categories,price,title,junk\n"
                           "1, Action | Comedy ,9.99,Toy Story,x\n"
                           "b,,,,\n", "items.csv")
    items = read_items(path)
    assert list(items.columns) == list(ITEM_COLUMNS)
    assert items["item_id"].tolist() == ["1", "b"]
    assert items["categories"].tolist() == ["Action|Comedy", ""]
    assert items["price"].tolist()[0] == 9.99 and np.isnan(items["price"].tolist()[1])
    assert items["title"].tolist() == ["Toy Story", ""]
    assert items["year"].isna().all()          # no year column: unknown


def test_read_items_years(tmp_path):
    path = write(tmp_path, "item_id,year\na,1995\nb,01-Jan-1987\nc,\nd,1999.0\ne,unknown\n",
                 "items.csv")
    years = read_items(path)["year"].tolist()
    assert years[:2] == [1995.0, 1987.0] and years[3] == 1999.0
    assert np.isnan(years[2]) and np.isnan(years[4])         # missing, or text without one


ITEM_BAD = [
    ("missing-item-id", "id,title\n1,x\n", None, "item_id", "missing required column"),
    ("duplicate-item", "item_id,title\n1,a\n2,b\n1,c\n", 3, "item_id",
     "duplicate item_id '1' (first at row 1)"),
    ("bad-price", "item_id,price\n1,3\n2,cheap\n", 2, "price", "'cheap' is not a number"),
    ("negative-price", "item_id,price\n1,-3\n", 1, "price", "is negative"),
    ("float-id", "item_id,title\n1.5,a\n", 1, "item_id", "decimal number"),
    ("year-range", "item_id,year\n1,19950\n", 1, "year", "outside 1000-3000"),
    ("header-only", "item_id,title\n", None, None, "no data rows"),
]


@pytest.mark.parametrize("text,row,column,expected", [c[1:] for c in ITEM_BAD],
                         ids=[c[0] for c in ITEM_BAD])
def test_read_items_bad(tmp_path, text, row, column, expected):
    path = write(tmp_path, text, "items.csv")
    with pytest.raises(DataError) as exc:
        read_items(path)
    assert_data_error(exc.value, path, row, column, expected)


@needs_pyarrow
def test_read_items_parquet_list_categories(tmp_path):
    path = tmp_path / "items.parquet"
    pd.DataFrame({"item_id": [1, 2], "categories": [["A", "B"], []],
                  "price": [1.0, None]}).to_parquet(path, index=False)
    items = read_items(path)
    assert items["categories"].tolist() == ["A|B", ""]
    assert items["title"].tolist() == ["", ""]


# ------------------------------------------------------------------ GroupLens layout


def _grouplens_item(item_id: int, title: str, genres: set[str]) -> str:
    flags = "|".join("1" if g in genres else "0" for g in GROUPLENS_GENRES)
    return f"{item_id}|{title}|01-Jan-1995||http://us.imdb.com/M/title-exact?x|{flags}\n"


@pytest.fixture
def grouplens_dir(tmp_path) -> Path:
    d = tmp_path / "grouplens" / "ml-100k"
    d.mkdir(parents=True)
    (d / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
                              "22\t242\t1\t878887116\n")
    (d / "u.item").write_bytes((
        _grouplens_item(242, "Kolya (1996)", {"Comedy"})
        + _grouplens_item(302, "L.A. Confidential (1997)", {"Crime", "Film-Noir", "Thriller"})
        + _grouplens_item(303, "Café au lait (1993)", set())
    ).encode("latin-1"))
    (d / "u.user").write_text("196|49|M|writer|55105\n186|39|F|executive|00000\n"
                              "22|25|M|writer|40206\n")
    return d


def test_grouplens_dir(grouplens_dir):
    ds = load_grouplens_dir(grouplens_dir)
    assert ds.name == "ml-100k"
    e = ds.events
    assert list(e.columns) == list(EVENT_COLUMNS)
    assert e["user_id"].tolist() == ["196", "186", "22"]
    assert e["item_id"].tolist() == ["242", "302", "242"]
    assert e["event"].unique().tolist() == ["rating"]
    assert e["value"].tolist() == [3.0, 3.0, 1.0]
    assert e["timestamp"].tolist() == [881250949, 891717742, 878887116]
    items = ds.items.set_index("item_id")
    assert items.loc["302", "categories"] == "Crime|Film-Noir|Thriller"
    assert items.loc["242", "title"] == "Kolya (1996)"
    assert items.loc["303", "title"] == "Café au lait (1993)"
    assert items.loc["303", "categories"] == ""
    assert items["year"].tolist() == [1995.0] * 3          # from the release date
    assert ds.users["user_id"].tolist() == ["196", "186", "22"]
    assert ds.users["zip_code"].tolist() == ["55105", "00000", "40206"]
    assert ds.users["age"].tolist() == [49.0, 39.0, 25.0]


def test_grouplens_bad_rating_names_row_and_column(grouplens_dir):
    path = grouplens_dir / "u.data"
    path.write_text("196\t242\t3\t881250949\n186\t302\tgood\t891717742\n")
    with pytest.raises(DataError) as exc:
        load_grouplens_dir(grouplens_dir)
    assert_data_error(exc.value, path, 2, "rating", "'good' is not a number")


def test_grouplens_bad_genre_flag(grouplens_dir):
    path = grouplens_dir / "u.item"
    path.write_bytes(_grouplens_item(1, "A", set()).replace("|0\n", "|2\n").encode("latin-1"))
    with pytest.raises(DataError) as exc:
        load_grouplens_dir(grouplens_dir)
    assert_data_error(exc.value, path, 1, "Western", "genre flag '2' is not 0 or 1")


def test_grouplens_missing_u_data(tmp_path):
    with pytest.raises(DataError, match="u.data: file not found"):
        load_grouplens_dir(tmp_path)


# -------------------------------------------------------------------- RecBole layout


@pytest.fixture
def recbole_dir(tmp_path) -> Path:
    d = tmp_path / "recbole" / "ml-100k"
    d.mkdir(parents=True)
    (d / "ml-100k.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "196\t242\t3\t881250949\n186\t302\t4\t891717742\n")
    (d / "ml-100k.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "242\tKolya\t1996\tComedy\n302\tL.A. Confidential\t1997\tCrime Film-Noir Thriller\n")
    (d / "ml-100k.user").write_text(
        "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
        "196\t49\tM\twriter\t55105\n186\t39\tF\texecutive\t00000\n")
    return d


def test_recbole_dir(recbole_dir):
    ds = load_recbole_dir(recbole_dir)
    e = ds.events
    assert e["user_id"].tolist() == ["196", "186"]
    assert e["event"].tolist() == ["rating", "rating"]
    assert e["value"].tolist() == [3.0, 4.0]
    assert e["timestamp"].tolist() == [881250949, 891717742]
    assert ds.items["title"].tolist() == ["Kolya", "L.A. Confidential"]
    assert ds.items["categories"].tolist() == ["Comedy", "Crime|Film-Noir|Thriller"]
    assert ds.items["year"].tolist() == [1996.0, 1997.0]
    assert ds.users.columns.tolist() == ["user_id", "age", "gender", "occupation", "zip_code"]
    assert ds.users["zip_code"].tolist() == ["55105", "00000"]


def test_recbole_without_rating_gives_clicks(tmp_path):
    d = tmp_path / "shop"
    d.mkdir()
    (d / "shop.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n1\t2\t5.0\n")
    ds = load_recbole_dir(d)
    assert ds.events["event"].tolist() == ["click"] and ds.events["value"].isna().all()
    assert ds.items is None and ds.users is None


def test_recbole_bad_header_and_cell(recbole_dir):
    inter = recbole_dir / "ml-100k.inter"
    inter.write_text("user_id:token\titem_id\trating:float\ttimestamp:float\n1\t2\t3\t4\n")
    with pytest.raises(DataError) as exc:
        load_recbole_dir(recbole_dir)
    assert_data_error(exc.value, inter, None, "item_id", "is not 'name:type'")
    inter.write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                     "1\t2\t3\t4\n1\t2\t3\tlater\n")
    with pytest.raises(DataError) as exc:
        load_recbole_dir(recbole_dir)
    assert_data_error(exc.value, inter, 2, "timestamp", "'later'")


# -------------------------------------------------------------------- load_dataset


def test_load_dataset_dirs(grouplens_dir, recbole_dir, tmp_path):
    assert load_dataset(str(grouplens_dir)).items is not None
    (grouplens_dir / "u.data").rename(tmp_path / "moved")
    with pytest.raises(DataError, match="neither u.data"):
        load_dataset(str(grouplens_dir))
    ds = load_dataset(str(recbole_dir))
    assert ds.n_events == 2 and ds.users is not None


def test_load_dataset_file_with_sibling_items(tmp_path):
    events = write(tmp_path, HEADER + "1,a,100,view,\n", "clicks.csv")
    ds = load_dataset(str(events))
    assert ds.name == "clicks" and ds.items is None
    write(tmp_path, "item_id,title\na,Alpha\n", "items.csv")
    ds = load_dataset(str(events))
    assert ds.items["title"].tolist() == ["Alpha"]


@pytest.mark.parametrize("spec", ["movielens-1m", "", "nope/events.csv"])
def test_load_dataset_unknown_spec(spec):
    with pytest.raises(DataError) as exc:
        load_dataset(spec)
    assert "accepted: 'movielens-100k', 'synthetic'" in str(exc.value)


def test_load_dataset_wrong_file_type(tmp_path):
    path = write(tmp_path, "x", "data.json")
    with pytest.raises(DataError, match="accepted: 'movielens-100k'"):
        load_dataset(str(path))


def test_load_dataset_synthetic_passes_seed(monkeypatch):
    calls = []
    fake = types.ModuleType("fedrec.shared.synthetic")

    class SyntheticConfig:
        def __init__(self, seed=0):
            self.seed = seed

    def generate(config):
        calls.append(config.seed)
        return "dataset"

    fake.SyntheticConfig, fake.generate = SyntheticConfig, generate
    monkeypatch.setitem(sys.modules, "fedrec.shared.synthetic", fake)
    monkeypatch.setattr(shared, "synthetic", fake, raising=False)
    assert load_dataset("synthetic", seed=5) == "dataset"
    assert calls == [5]
