"""Learner metrics to CSV files (always) and TensorBoard (when the package is installed).

Each group (``train``, ``episodes``, ``actors``...) is one CSV file in the run's log dir,
appended to across restarts, so a resumed run continues the same curves.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any, Callable, Mapping

log = logging.getLogger(__name__)

# Each new column rewrites its file, so a group's width is bounded whatever arrives (the
# learner link already bounds stats names per actor; this also holds across many actors).
MAX_COLUMNS = 512


class MetricsLog:
    def __init__(self, directory: Path, tensorboard: bool = True, max_columns: int = MAX_COLUMNS):
        self.directory = Path(directory)
        self.max_columns = max_columns
        self._full: set[str] = set()  # groups that have hit max_columns (logged once each)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, tuple[Any, csv.DictWriter, list[str]]] = {}
        self._writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:  # tensorboard is a dependency; a broken install still trains
                log.warning("TensorBoard logging off: %s", error)
            else:
                self._writer = SummaryWriter(str(self.directory / "tensorboard"))

    def log(self, group: str, step: int, values: Mapping[str, Any]) -> None:
        row = {"step": int(step), **{key: _plain(value) for key, value in values.items()}}
        row = self._csv(group, row)
        if self._writer is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    self._writer.add_scalar(f"{group}/{key}", value, int(step))

    def _csv(self, group: str, row: dict[str, Any]) -> dict[str, Any]:
        """Appends the row; returns it without the values of names beyond max_columns."""
        path = self.directory / f"{group}.csv"
        if group not in self._files:
            columns: list[str] = []
            if path.exists() and path.stat().st_size > 0:
                with open(path, newline="") as handle:
                    columns = next(csv.reader(handle), [])
            handle = open(path, "a", newline="")
            writer = csv.DictWriter(handle, fieldnames=columns or list(row)[: self.max_columns], extrasaction="ignore")
            if not columns:
                writer.writeheader()
            self._files[group] = (handle, writer, list(writer.fieldnames))
        handle, writer, columns = self._files[group]
        new = [key for key in row if key not in columns]
        room = max(0, self.max_columns - len(columns))
        if len(new) > room:
            if group not in self._full:
                self._full.add(group)
                log.warning("%s.csv has reached %d columns; new names are not logged (first dropped: %s)",
                            group, self.max_columns, new[room])
            dropped = set(new[room:])
            row = {key: value for key, value in row.items() if key not in dropped}
            new = new[:room]
        if new:
            handle, writer, columns = self._widen(group, path, columns + new)
        writer.writerow(row)
        handle.flush()
        return row

    def _widen(self, group: str, path: Path, columns: list[str]):
        """A key seen for the first time: rewrite the file with the wider header."""
        self._files[group][0].close()
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(path)
        handle = open(path, "a", newline="")
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        self._files[group] = (handle, writer, columns)
        return self._files[group]

    def keep_rows(self, group: str, keep: Callable[[dict[str, str]], bool]) -> int:
        """Rewrite a group's CSV with only the rows ``keep`` accepts (before anything is
        logged to it); returns how many rows went."""
        if group in self._files:
            raise RuntimeError(f"{group}.csv is open for logging; trim it before the first row is logged")
        path = self.directory / f"{group}.csv"
        if not path.exists() or path.stat().st_size == 0:
            return 0
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            columns, rows = list(reader.fieldnames or []), list(reader)
        kept = [row for row in rows if keep(row)]
        if len(kept) < len(rows):
            tmp = path.with_suffix(".csv.tmp")
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows(kept)
            tmp.replace(path)
        return len(rows) - len(kept)

    def flush(self) -> None:
        for handle, _, _ in self._files.values():
            handle.flush()
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        for handle, _, _ in self._files.values():
            handle.close()
        self._files.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    return value


def read_csv(path: Path) -> list[dict[str, float]]:
    """A metrics CSV as rows of floats (blank cells become NaN)."""
    rows = []
    with open(path, newline="") as handle:
        for raw in csv.DictReader(handle):
            row = {}
            for key, text in raw.items():
                try:
                    row[key] = float(text) if text not in (None, "") else math.nan
                except ValueError:
                    row[key] = math.nan
            rows.append(row)
    return rows
