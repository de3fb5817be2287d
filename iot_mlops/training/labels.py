"""Labels: for each feature row, which components fail within the profile's horizon.

A label needs the future: it is complete only once events are ingested up to ts + horizon.
Rows whose horizon reaches past the ingested events get NULL labels, never "no failure".
Rows that saw a failed device (after a failure, before its repair) are flagged `out_of_service`: not negatives.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import duckdb

from iot_mlops.features.sql import interval
from iot_mlops.lake import Lake, ident, row_count, sql_str
from iot_mlops.profiles.schema import FleetProfile


class LabelInputError(ValueError):
    """Labels cannot be computed: features or events are missing."""


def label_column(component: str) -> str:
    return f"fails_{component}"


@dataclass
class LabelReport:
    rows: dict[date, int]
    complete_rows: int
    incomplete_rows: int
    positives: dict[str, int]
    events_until: datetime | None
    events_from: datetime | None = None
    out_of_service_rows: int = 0

    @property
    def metadata(self) -> dict[str, object]:
        """Complete, incomplete and out-of-service rows, the events' span and positives per component."""
        return {
            "complete_rows": self.complete_rows, "incomplete_rows": self.incomplete_rows,
            "rows_out_of_service": self.out_of_service_rows,
            "events_from": str(self.events_from), "events_until": str(self.events_until), "positives": self.positives,
        }


def events_coverage(lake: Lake, fleet: str) -> datetime | None:
    """End of the contiguous run of event partitions from the first: labels are known up to here."""
    days = lake.partitions(fleet, "events")
    if not days:
        return None
    end = days[0]
    for day in days[1:]:
        if day != end + timedelta(days=1):
            break
        end = day
    return datetime.combine(end + timedelta(days=1), time())


def events_start(lake: Lake, fleet: str) -> datetime | None:
    """Start of the first events partition: before it nothing is known, not even that nothing failed."""
    days = lake.partitions(fleet, "events")
    return datetime.combine(days[0], time()) if days else None


def out_of_service_sql(profile: FleetProfile, features: str, events: str) -> str:
    """Feature rows (device_id, ts) whose newest step bucket [ts - step, ts) holds a reading of a failed device.

    A failure at T puts the device out of service until the first maintenance of that component in [T, T + horizon),
    else until T + `target.out_of_service`; never for less than one step, so the failing reading counts.
    """
    # A maintenance later than one horizon is the next routine job, not this repair: Azure PdM logs the replacement
    # at the failure time, and where it is missing the next one comes weeks later.
    horizon = interval(profile.target.horizon)
    step = interval(profile.features.step)
    fallback = interval(profile.target.out_of_service or profile.features.step)
    return f"""
SELECT DISTINCT f.device_id, f.ts
FROM (SELECT device_id, ts FROM {features}) f
JOIN (
  SELECT x.device_id, x.ts AS failed, greatest(coalesce(min(m.ts), x.ts + {fallback}), x.ts + {step}) AS back
  FROM (SELECT device_id, ts, value FROM {events} WHERE kind = 'failure') x
  LEFT JOIN (SELECT device_id, ts, value FROM {events} WHERE kind = 'maintenance') m
    ON m.device_id = x.device_id AND m.value = x.value AND m.ts >= x.ts AND m.ts < x.ts + {horizon}
  GROUP BY x.device_id, x.ts, x.value
) p ON p.device_id = f.device_id AND f.ts > p.failed AND f.ts - {step} < p.back
"""


def labels_sql(profile: FleetProfile, features: str, events: str, coverage: datetime, since: datetime | None = None) -> str:
    """One row per feature row: completeness, out of service, and per component 1/0 (NULL when incomplete).

    A row is complete when events are ingested over its whole horizon: from `since` (the first events
    partition, if given) up to `coverage`.
    """
    horizon = interval(profile.target.horizon)
    complete = f"f.ts + {horizon} <= TIMESTAMP {sql_str(coverage)}"
    if since is not None:
        complete = f"({complete} AND f.ts >= TIMESTAMP {sql_str(since)})"
    per_component = [
        f"CASE WHEN {complete} THEN (count(e.ts) FILTER (WHERE e.value = {sql_str(c)}) > 0)::INTEGER END AS {ident(label_column(c))}"
        for c in profile.components
    ]
    hours_to = "date_diff('second', f.ts, min(e.ts)) / 3600.0"
    return f"""
SELECT f.device_id, f.ts, {complete} AS label_complete, o.ts IS NOT NULL AS out_of_service, {', '.join(per_component)},
       {hours_to} AS hours_to_failure
FROM (SELECT device_id, ts FROM {features}) f
LEFT JOIN ({out_of_service_sql(profile, features, events)}) o ON o.device_id = f.device_id AND o.ts = f.ts
LEFT JOIN (SELECT device_id, ts, value FROM {events} WHERE kind = 'failure') e
  ON e.device_id = f.device_id AND e.ts >= f.ts AND e.ts < f.ts + {horizon}
GROUP BY f.device_id, f.ts, o.ts
ORDER BY f.device_id, f.ts
"""


def compute_labels(con: duckdb.DuckDBPyConnection, lake: Lake, profile: FleetProfile, days: list[date]) -> LabelReport:
    """Write label partitions for the days from their feature rows and the failure events."""
    fleet = profile.name
    coverage, since = events_coverage(lake, fleet), events_start(lake, fleet)
    events = lake.scan(fleet, "events")
    if events is None or coverage is None:
        raise LabelInputError(f"{fleet}: no events partitions; materialize {fleet}/events first")
    rows: dict[date, int] = {}
    for day in sorted(days):
        features = lake.scan(fleet, "features", [day])
        if features is None:
            raise LabelInputError(f"{fleet}: no features for {day}; materialize {fleet}/features first")
        rows[day] = row_count(con, lake.write_partition(con, fleet, "labels", day, labels_sql(profile, features, events, coverage, since)))
    written = lake.scan(fleet, "labels", days)
    sums = ", ".join(f"coalesce(sum({ident(label_column(c))}), 0)" for c in profile.components)
    complete, incomplete, out, *positives = con.execute(
        f"SELECT count(*) FILTER (WHERE label_complete), count(*) FILTER (WHERE NOT label_complete), "
        f"count(*) FILTER (WHERE out_of_service), {sums} FROM {written}"
    ).fetchone()
    return LabelReport(
        rows=rows,
        complete_rows=int(complete),
        incomplete_rows=int(incomplete),
        positives={c: int(n) for c, n in zip(profile.components, positives)},
        events_until=coverage,
        events_from=since,
        out_of_service_rows=int(out),
    )
