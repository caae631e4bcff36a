-- Poor-stream rate by the client platform of the receiving endpoint.
-- windows, macOS, android, ... (Graph clientUserAgent.platform); (none) for service endpoints.
-- Classification: Microsoft's CQD stream classification (docs/quality.md); a stream's
-- network, building, platform and user are those of its receiving endpoint.
-- Spark SQL / Databricks: register the tables with `callrecords-etl schema --ddl spark` first.
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
    coalesce(CASE s.receiving_endpoint WHEN 'caller' THEN ses.caller_user_agent_platform WHEN 'callee' THEN ses.callee_user_agent_platform END, '(none)') AS platform
  FROM call_media_streams AS s
  JOIN call_media AS m USING (call_id, session_index, segment_index, media_index)
  JOIN call_sessions AS ses ON ses.call_id = s.call_id AND ses.session_index = s.session_index
  WHERE s.quality IN ('good', 'poor')
)
SELECT
  modality,
  platform,
  count(*) AS classified_streams,
  count_if(quality = 'poor') AS poor_streams,
  round(100.0 * count_if(quality = 'poor') / count(*), 2) AS poor_percent
FROM streams
GROUP BY modality, platform
ORDER BY modality, platform;
