"""Every parser on tiny files the tests write, and malformed rows named by file and line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from seqbench.data import parsers
from seqbench.errors import InputError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_s3rec_sequences_keep_line_order_as_time_order(tmp_path: Path) -> None:
    path = write(tmp_path / "X.txt", "1 5 3 5\n2 7 1\n\n3 2 2 2 9\n")
    frame = parsers.parse("s3rec-sequences", path)
    assert frame["user"].tolist() == [1, 1, 1, 2, 2, 3, 3, 3, 3]
    assert frame["item"].tolist() == [5, 3, 5, 7, 1, 2, 2, 2, 9]
    assert "timestamp" not in frame


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [("1 2 3\n2 4 x\n", 2, "integer"), ("1 2\n\n3\n", 3, "no items"), ("1 2\n1 3\n", 2, "more than one line")],
)
def test_s3rec_malformed_rows_name_file_and_line(tmp_path: Path, text: str, line: int, what: str) -> None:
    path = write(tmp_path / "Bad.txt", text)
    with pytest.raises(InputError, match=f"{path}:{line}: .*{what}"):
        parsers.parse("s3rec-sequences", path)


def test_s3rec_item2attributes(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", json.dumps({"1": [3, 1, 3], "2": [], "7": [2]}))
    frame = parsers.parse("s3rec-item2attributes", path, "attributes")
    assert list(zip(frame["item"], frame["attribute"])) == [(1, 3), (1, 1), (1, 3), (7, 2)]
    broken = write(tmp_path / "b.json", '{"1": [1],\n "2": [2,\n')
    with pytest.raises(InputError, match=rf"{broken}:3: invalid JSON"):
        parsers.parse("s3rec-item2attributes", broken, "attributes")
    wrong = write(tmp_path / "c.json", '{"x": [1]}')
    with pytest.raises(InputError, match="item 'x'"):
        parsers.parse("s3rec-item2attributes", wrong, "attributes")


def test_movielens_csv_with_header(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,10,4.0,100\n1,3,3.5,100\n2,10,5.0,90\n")
    frame = parsers.parse("movielens-csv", path)
    assert frame.to_dict("list") == {"user": [1, 1, 2], "item": [10, 3, 10], "timestamp": [100, 100, 90], "rating": [4.0, 3.5, 5.0]}


@pytest.mark.parametrize(
    ("body", "line", "what"),
    [
        ("1,10,4.0,100\n1,x,3.0,5\n", 3, "item 'x' is not an integer"),
        ("1,10,4.0,100\n\n2,3,4.0,7,9\n", 4, "expected 4 fields, saw 5"),
        ("1,10,4.0,100\n2,11,4.0\n", 3, "timestamp '' is not an integer"),
        ("1,10,good,100\n", 2, "rating 'good' is not a number"),
    ],
)
def test_movielens_csv_malformed_rows(tmp_path: Path, body: str, line: int, what: str) -> None:
    path = write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n" + body)
    with pytest.raises(InputError) as caught:
        parsers.parse("movielens-csv", path)
    assert f"{path}:{line}: {what}" in caught.value.message and "\n" not in caught.value.message


def test_movielens_dat_double_colon(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n")
    frame = parsers.parse("movielens-dat", path)
    assert frame["user"].tolist() == [1, 1, 2] and frame["item"].tolist() == [1193, 661, 1193]
    assert frame["timestamp"].tolist() == [978300760, 978302109, 978298413]
    bad = write(tmp_path / "bad.dat", "1::1193::5::978300760\n1:661::3::9\n")
    with pytest.raises(InputError, match=rf"{bad}:2: "):
        parsers.parse("movielens-dat", bad)


def test_movielens_movie_genres(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "movies.csv", 'movieId,title,genres\n1,"Toy Story, The (1995)",Animation|Comedy\n2,X,(no genres listed)\n')
    frame = parsers.parse("movielens-movies-csv", csv_path, "attributes")
    assert list(zip(frame["item"], frame["attribute"])) == [(1, "Animation"), (1, "Comedy")]
    dat_path = tmp_path / "movies.dat"
    dat_path.write_bytes("1::Caf\xe9 (1995)::Drama|Romance\n2::\"Quoted\" (1990)::Drama\n".encode("latin-1"))
    frame = parsers.parse("movielens-movies-dat", dat_path, "attributes")
    assert list(zip(frame["item"], frame["attribute"])) == [(1, "Drama"), (1, "Romance"), (2, "Drama")]


def test_amazon_ratings_csv_without_header(tmp_path: Path) -> None:
    path = write(tmp_path / "ratings_Beauty.csv", "A1,B001,5.0,1388534400\nA2,B001,4.0,1388620800\n")
    frame = parsers.parse("amazon-ratings-csv", path)
    assert frame["user"].tolist() == ["A1", "A2"] and frame["item"].tolist() == ["B001", "B001"]
    assert frame["timestamp"].tolist() == [1388534400, 1388620800]
    bad = write(tmp_path / "bad.csv", "A1,B001,5.0,1388534400\n,B002,5.0,1\n")
    with pytest.raises(InputError, match=rf"{bad}:2: user is empty"):
        parsers.parse("amazon-ratings-csv", bad)


def test_amazon_meta_is_read_as_literals_never_evaluated(tmp_path: Path) -> None:
    path = tmp_path / "meta_Beauty.json.gz"
    lines = [
        "{'asin': 'B001', 'categories': [['Beauty', 'Skin Care'], ['Beauty']], 'brand': 'Acme', 'price': 3.5}",
        "{'asin': 'B002', 'title': 'no categories'}",
    ]
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    frame = parsers.parse("amazon-meta", path, "attributes")
    assert list(zip(frame["item"], frame["attribute"])) == [("B001", "Beauty"), ("B001", "Skin Care"), ("B001", "brand:Acme")]
    marker = tmp_path / "pwned"
    evil = tmp_path / "meta_evil.json.gz"
    with gzip.open(evil, "wt") as handle:
        handle.write(lines[0] + "\n" + f"__import__('pathlib').Path({str(marker)!r}).touch()\n")
    with pytest.raises(InputError, match=rf"{evil}:2: not a Python literal"):
        parsers.parse("amazon-meta", evil, "attributes")
    assert not marker.exists()


def test_hetrec_lastfm_tags_and_artist_attributes(tmp_path: Path) -> None:
    path = write(tmp_path / "user_taggedartists-timestamps.dat",
                 "userID\tartistID\ttagID\ttimestamp\r\n2\t52\t13\t1238536800000\r\n2\t52\t15\t1238536800000\r\n3\t60\t13\t1238536900000\r\n")
    frame = parsers.parse("hetrec-lastfm-tags", path)
    assert frame["user"].tolist() == [2, 2, 3] and frame["item"].tolist() == [52, 52, 60]
    assert frame["timestamp"].tolist() == [1238536800000, 1238536800000, 1238536900000]
    tags = parsers.parse("hetrec-lastfm-artist-tags", path, "attributes")
    assert list(zip(tags["item"], tags["attribute"])) == [(52, 13), (52, 15), (60, 13)]


def test_gowalla_gzip_checkins(tmp_path: Path) -> None:
    path = tmp_path / "loc-gowalla_totalCheckins.txt.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("0\t2010-10-19T23:55:27Z\t30.23\t-97.79\t22847\n0\t1970-01-01T00:01:40Z\t30.26\t-97.75\t420315\n")
    frame = parsers.parse("gowalla-checkins", path)
    assert frame["item"].tolist() == [22847, 420315] and frame["timestamp"].tolist() == [1287532527, 100]
    bad = tmp_path / "bad.txt"
    bad.write_text("0\t2010-10-19T23:55:27Z\t30.23\t-97.79\t22847\n0\tyesterday\t1\t2\t3\n")
    with pytest.raises(InputError, match=rf"{bad}:2: time 'yesterday' is not a date"):
        parsers.parse("gowalla-checkins", bad)


def test_truncated_gzip_is_a_corrupt_archive_error(tmp_path: Path) -> None:
    whole = gzip.compress(("0\t2010-10-19T23:55:27Z\t30.23\t-97.79\t22847\n" * 2000).encode())
    path = tmp_path / "loc-gowalla_totalCheckins.txt.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match="corrupt or truncated compressed file"):
        parsers.parse("gowalla-checkins", path)


def test_yelp_review_json_lines(tmp_path: Path) -> None:
    records = [
        {"review_id": "r1", "user_id": "u1", "business_id": "b1", "stars": 4.0, "date": "2016-03-09 00:00:10"},
        {"review_id": "r2", "user_id": "u2", "business_id": "b1", "stars": 2, "date": "1970-01-02"},
    ]
    path = write(tmp_path / "yelp_academic_dataset_review.json", "\n".join(json.dumps(r) for r in records) + "\n")
    frame = parsers.parse("yelp-review-json", path)
    assert frame["user"].tolist() == ["u1", "u2"] and frame["item"].tolist() == ["b1", "b1"]
    assert frame["timestamp"].tolist() == [1457481610, 86400]
    np.testing.assert_array_equal(frame["rating"].to_numpy(), [4.0, 2.0])
    bad = write(tmp_path / "bad.json", json.dumps(records[0]) + "\n" + '{"user_id": "u3", "date": "2016-01-01"}\n')
    with pytest.raises(InputError, match=rf"{bad}:2: not a review record \(KeyError"):
        parsers.parse("yelp-review-json", bad)
    truncated = write(tmp_path / "cut.json", json.dumps(records[0]) + "\n" + json.dumps(records[1])[:20] + "\n")
    with pytest.raises(InputError, match=rf"{truncated}:2: "):
        parsers.parse("yelp-review-json", truncated)


def test_unknown_format_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown interactions format 'csv2': choose one of s3rec-sequences"):
        parsers.parse("csv2", tmp_path / "x")
