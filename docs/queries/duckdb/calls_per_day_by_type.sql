-- Calls per day by type (peerToPeer, groupCall, ...).
-- One row per dt and call type.
-- Classification: Microsoft's CQD stream classification (docs/quality.md); a stream's
-- network, building, platform and user are those of its receiving endpoint.
-- DuckDB: run `callrecords-etl schema --ddl duckdb` first for the views.
SELECT
  dt,
  type,
  count(*) AS calls
FROM call_records
GROUP BY dt, type
ORDER BY dt, type;
