-- The ten users who received the most poor audio streams.
-- By the identity associated with the receiving endpoint; ties broken by user id.
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
    CASE s.receiving_endpoint WHEN 'caller' THEN ses.caller_associated_identity_id WHEN 'callee' THEN ses.callee_associated_identity_id END AS user_id,
    CASE s.receiving_endpoint WHEN 'caller' THEN ses.caller_associated_identity_display_name WHEN 'callee' THEN ses.callee_associated_identity_display_name END AS user_display_name
  FROM call_media_streams AS s
  JOIN call_media AS m USING (call_id, session_index, segment_index, media_index)
  JOIN call_sessions AS ses ON ses.call_id = s.call_id AND ses.session_index = s.session_index
  WHERE s.quality IN ('good', 'poor')
)
SELECT
  user_id,
  max(user_display_name) AS user_display_name,
  count(*) FILTER (WHERE quality = 'poor') AS poor_audio_streams,
  count(*) AS classified_audio_streams,
  round(100.0 * count(*) FILTER (WHERE quality = 'poor') / count(*), 2) AS poor_percent
FROM streams
WHERE modality = 'audio' AND user_id IS NOT NULL
GROUP BY user_id
ORDER BY poor_audio_streams DESC, user_id
LIMIT 10;
