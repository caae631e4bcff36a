-- PSTN (Direct Routing) failure rate by SIP code and trunk.
-- Failed calls (successful_call false) per trunk and final SIP code, as a percentage of all the trunk's calls.
-- Classification: Microsoft's CQD stream classification (docs/quality.md); a stream's
-- network, building, platform and user are those of its receiving endpoint.
-- DuckDB: run `callrecords-etl schema --ddl duckdb` first for the views.
WITH trunks AS (
  SELECT trunk_fully_qualified_domain_name AS trunk, count(*) AS trunk_calls
  FROM direct_routing_calls
  GROUP BY trunk_fully_qualified_domain_name
)
SELECT
  c.trunk_fully_qualified_domain_name AS trunk,
  c.final_sip_code,
  t.trunk_calls,
  count(*) FILTER (WHERE NOT successful_call) AS failed_calls,
  round(100.0 * count(*) FILTER (WHERE NOT successful_call) / t.trunk_calls, 2) AS failure_percent
FROM direct_routing_calls AS c
JOIN trunks AS t ON t.trunk = c.trunk_fully_qualified_domain_name
WHERE NOT c.successful_call
GROUP BY c.trunk_fully_qualified_domain_name, c.final_sip_code, t.trunk_calls
ORDER BY trunk, final_sip_code;
