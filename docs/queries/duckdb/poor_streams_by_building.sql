-- Poor-stream rate by the building of the receiving endpoint.
-- Buildings from the [sites] building file; (no building) where no range of the file holds the endpoint.
-- Classification: Microsoft's CQD stream classification (docs/quality.md); a stream's
-- network, building, platform and user are those of its receiving endpoint.
-- DuckDB: run `callrecords-etl schema --ddl duckdb` first for the views.
WITH streams AS (
  SELECT
    s.dt,
    s.quality,
    s.receiving_endpoint,
    CASE
      WHEN lower(m.label) LIKE 'applicationsharing%video%' THEN 'screen_sharing'
      WHEN lower(m.label) LIKE 'applicationsharing%' THEN 'application_sharing'
      WHEN lower(m.label) LIKE '%audio%' THEN 'audio'
      WHEN lower(m.label) LIKE '%video%' THEN 'video'
      ELSE 'other'
    END AS modality,
    coalesce(CASE s.receiving_endpoint WHEN 'caller' THEN m.caller_building WHEN 'callee' THEN m.callee_building END, '(no building)') AS building
  FROM call_media_streams AS s
  JOIN call_media AS m USING (call_id, session_index, segment_index, media_index)
  WHERE s.quality IN ('good', 'poor')
)
SELECT
  modality,
  building,
  count(*) AS classified_streams,
  count(*) FILTER (WHERE quality = 'poor') AS poor_streams,
  round(100.0 * count(*) FILTER (WHERE quality = 'poor') / count(*), 2) AS poor_percent
FROM streams
GROUP BY modality, building
ORDER BY modality, building;
