-- Calls per day by type (peerToPeer, groupCall, ...).
-- One row per dt and call type.
-- Classification: Microsoft's CQD stream classification (docs/quality.md); a stream's
-- network, building, platform and user are those of its receiving endpoint.
-- Spark SQL / Databricks: register the tables with `callrecords-etl schema --ddl spark` first.
SELECT
  dt,
  type,
  count(*) AS calls
FROM call_records
GROUP BY dt, type
ORDER BY dt, type;
