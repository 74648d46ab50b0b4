"""The learner's metrics CSVs: one file per group, widened for new names, up to a bound."""

from __future__ import annotations

import csv
import logging

from learner.metrics import MetricsLog


def header_of(path) -> list[str]:
    with open(path, newline="") as handle:
        return next(csv.reader(handle))


def test_a_new_name_widens_the_file_and_keeps_earlier_rows(tmp_path):
    metrics = MetricsLog(tmp_path, tensorboard=False)
    metrics.log("actor", 1, {"a": 1.0})
    metrics.log("actor", 2, {"a": 2.0, "b": 3.0})
    metrics.close()

    with open(tmp_path / "actor.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert header_of(tmp_path / "actor.csv") == ["step", "a", "b"]
    assert [(row["a"], row["b"]) for row in rows] == [("1.0", ""), ("2.0", "3.0")]


def test_names_beyond_the_column_bound_are_dropped_with_one_warning(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    metrics = MetricsLog(tmp_path, tensorboard=False, max_columns=10)
    metrics.log("actor", 1, {f"first_{index}": index for index in range(50)})
    for index in range(50):
        metrics.log("actor", 2, {f"later_{index}": index, "first_0": -1})
    metrics.close()

    header = header_of(tmp_path / "actor.csv")
    assert header == ["step", *(f"first_{index}" for index in range(9))]
    assert len((tmp_path / "actor.csv").read_text().splitlines()) == 1 + 51  # the header and every row
    assert len([r for r in caplog.records if "actor.csv has reached 10 columns" in r.getMessage()]) == 1
