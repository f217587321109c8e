"""The generator's nightly landings: the last days' activities, one Parquet file per day."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


class DailyFiles:
    """The activities of the last ``days`` days before ``end_date``, one file per day,
    written chunk by chunk (one open writer per day, so memory stays one chunk)."""

    def __init__(
        self, folder: Path, end_date: date, days: int, *, compression: str, row_group_size: int
    ) -> None:
        self.compression = compression
        self.row_group_size = row_group_size
        self.folder = folder
        self.end_date = end_date
        self.days = days
        self.writers: dict[date, pq.ParquetWriter] = {}

    def take(self, table: pa.Table) -> pa.Table:
        """Write the rows of the daily window to their days' files; return the others."""
        if self.days <= 0 or table.num_rows == 0:
            return table
        start = datetime.combine(self.end_date - timedelta(days=self.days), datetime.min.time())
        occurred = table.column("occurred_at")
        recent = pc.greater_equal(occurred, pa.scalar(start, occurred.type))
        days = pc.cast(pc.floor_temporal(occurred, unit="day"), pa.date32())
        for offset in range(self.days):
            day = self.end_date - timedelta(days=self.days - offset)
            rows = table.filter(pc.and_(recent, pc.equal(days, pa.scalar(day, pa.date32()))))
            if rows.num_rows:
                if day not in self.writers:
                    path = self.folder / f"day-{day.isoformat()}.parquet"
                    self.writers[day] = pq.ParquetWriter(path, table.schema, compression=self.compression)
                self.writers[day].write_table(rows, row_group_size=self.row_group_size)
        return table.filter(pc.invert(recent))

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
