//! The synthetic tenant's complete call records as JSON lines, one record per line as
//! `callrecords-etl reflatten` reads them: the input of the benchmarks and of tests that
//! need a large raw file. Writes only to the writer it is given; knows nothing of HTTP.

use std::io::{self, Write};

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::Tenant;

/// The first day of every synthetic records file, so that the same arguments always give
/// the same bytes.
pub const FIRST_DAY: NaiveDate = NaiveDate::from_ymd_opt(2026, 11, 1).expect("a valid date");

/// Writes the complete records of `days` days from [`FIRST_DAY`] of `tenant`, one JSON line
/// each, in list order.
pub fn write(out: impl Write, tenant: &Tenant, days: u32) -> io::Result<()> {
    let from: DateTime<Utc> = FIRST_DAY.and_time(chrono::NaiveTime::MIN).and_utc();
    let to = from + Duration::days(i64::from(days));
    let mut out = io::BufWriter::new(out);
    for item in tenant.list(from, to) {
        let id = item["id"].as_str().expect("listed records have ids");
        let record = tenant.record(id).expect("a listed record exists");
        serde_json::to_writer(&mut out, &record)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
