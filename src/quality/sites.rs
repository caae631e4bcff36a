//! Sites: the building file of Microsoft's Call Quality Dashboard (`[sites] file`), and which
//! building an endpoint's address lies in.
//!
//! The format is CQD's ("Upload tenant and building data", Microsoft Teams docs,
//! <https://learn.microsoft.com/microsoftteams/cqd-upload-tenant-building-data>): one network
//! per row, comma separated (tab separated for a `.tsv` file), no quotes needed unless a field
//! holds the separator, fifteen columns in this order: NetworkIP, NetworkName, NetworkRange
//! (the prefix length, e.g. `24`), BuildingName, OwnershipType, BuildingType,
//! BuildingOfficeType, City, ZipCode, Country, State, Region, InsideCorp (`1`/`0`),
//! ExpressRoute (`1`/`0`), VPN (`1`/`0`, may be left out). CQD wants no header row; a first
//! row whose first field is `NetworkIP` is taken as one and skipped. IPv4 and IPv6 networks.
//! Where ranges overlap, the most specific (longest prefix) wins.
//!
//! May touch: the building file (read once, when the configuration is loaded).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

/// A building file that cannot be used: which file, which line, what to fix.
#[derive(Debug, thiserror::Error)]
pub enum SitesError {
    #[error("[sites] file {path}: cannot read it: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "[sites] file {path}, line {line}: {message} (CQD building file: NetworkIP, NetworkName, NetworkRange, \
         BuildingName, OwnershipType, BuildingType, BuildingOfficeType, City, ZipCode, Country, State, Region, \
         InsideCorp, ExpressRoute[, VPN])"
    )]
    Row {
        path: PathBuf,
        line: u64,
        message: String,
    },
}

/// What the lake records of the building an endpoint is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub network: IpNet,
    pub building: String,
    pub city: Option<String>,
    pub country: Option<String>,
    pub inside_corp: bool,
}

/// The networks of a building file, looked up by address (longest prefix first).
#[derive(Debug, Default)]
pub struct Sites {
    sites: Vec<Site>,
    /// Per prefix length, longest first: network → index in `sites`.
    by_prefix: Vec<(u8, HashMap<IpNet, usize>)>,
    /// A digest of the file's bytes (None: no building file).
    digest: Option<String>,
}

/// Columns of a row, 0-based.
const NETWORK_IP: usize = 0;
const NETWORK_RANGE: usize = 2;
const BUILDING_NAME: usize = 3;
const CITY: usize = 7;
const COUNTRY: usize = 9;
const INSIDE_CORP: usize = 12;
const EXPRESS_ROUTE: usize = 13;
const VPN: usize = 14;

impl Sites {
    /// Reads the building file at `path`.
    pub fn load(path: &Path) -> Result<Sites, SitesError> {
        let bytes = std::fs::read(path).map_err(|source| SitesError::Read {
            path: path.into(),
            source,
        })?;
        let tabs = path
            .extension()
            .is_some_and(|ext| ext.eq_ignore_ascii_case("tsv"));
        Sites::parse(path, &bytes, if tabs { b'\t' } else { b',' })
    }

    /// Parses a building file's bytes; `path` names it in errors.
    pub fn parse(path: &Path, bytes: &[u8], delimiter: u8) -> Result<Sites, SitesError> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(bytes);
        let mut sites = Sites {
            digest: Some(digest(bytes)),
            ..Sites::default()
        };
        let mut lines: HashMap<IpNet, u64> = HashMap::new();
        // The line of a position, counted from its byte offset (the reader's own line count
        // skips blank lines).
        let line_at = |position: Option<&csv::Position>| {
            position.map_or(0, |p| {
                let mut offset = usize::try_from(p.byte())
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                // A record's position is where the reader began it, before blank lines.
                while offset < bytes.len() && matches!(bytes[offset], b'\r' | b'\n') {
                    offset += 1;
                }
                bytecount(&bytes[..offset]) + 1
            })
        };
        for (index, row) in reader.records().enumerate() {
            let error = |line, message: String| SitesError::Row {
                path: path.into(),
                line,
                message,
            };
            let row = row.map_err(|e| error(line_at(e.position()), e.to_string()))?;
            let line = line_at(row.position());
            let is_header = index == 0
                && row
                    .get(0)
                    .is_some_and(|f| f.trim().eq_ignore_ascii_case("NetworkIP"));
            if is_header || row.iter().all(|field| field.trim().is_empty()) {
                continue;
            }
            let site = site(&row).map_err(|message| error(line, message))?;
            if let Some(first) = lines.insert(site.network, line) {
                return Err(error(
                    line,
                    format!(
                        "network {} is listed twice (also on line {first})",
                        site.network
                    ),
                ));
            }
            sites.add(site);
        }
        Ok(sites)
    }

    fn add(&mut self, site: Site) {
        let prefix = site.network.prefix_len();
        let position = match self.by_prefix.iter().position(|(p, _)| *p <= prefix) {
            Some(at) if self.by_prefix[at].0 == prefix => at,
            Some(at) => {
                self.by_prefix.insert(at, (prefix, HashMap::new()));
                at
            }
            None => {
                self.by_prefix.push((prefix, HashMap::new()));
                self.by_prefix.len() - 1
            }
        };
        self.by_prefix[position]
            .1
            .insert(site.network, self.sites.len());
        self.sites.push(site);
    }

    /// An identifier of the building file (`none` without one): rows matched with another
    /// file are not reused.
    pub fn id(&self) -> &str {
        self.digest.as_deref().unwrap_or("none")
    }

    /// The site of the most specific network holding `address`.
    pub fn lookup(&self, address: IpAddr) -> Option<&Site> {
        self.by_prefix.iter().find_map(|(prefix, networks)| {
            let network = IpNet::new(address, *prefix).ok()?.trunc();
            networks.get(&network).map(|&index| &self.sites[index])
        })
    }

    /// The site of an endpoint, by its IP address, else by its subnet (Graph `networkInfo`).
    pub fn endpoint(&self, ip_address: Option<&str>, subnet: Option<&str>) -> Option<&Site> {
        if self.sites.is_empty() {
            return None;
        }
        [ip_address, subnet]
            .into_iter()
            .flatten()
            .filter_map(|text| text.trim().parse::<IpAddr>().ok())
            .find_map(|address| self.lookup(address))
    }
}

/// One row as a site, or what is wrong with it.
fn site(row: &csv::StringRecord) -> Result<Site, String> {
    if !(14..=15).contains(&row.len()) {
        return Err(format!("{} columns; a row has 14 or 15", row.len()));
    }
    let field = |index: usize| row.get(index).map(str::trim).unwrap_or("");
    let text = |index: usize| {
        Some(field(index))
            .filter(|f| !f.is_empty())
            .map(str::to_string)
    };
    let ip: IpAddr = field(NETWORK_IP)
        .parse()
        .map_err(|_| format!("NetworkIP `{}` is not an IP address", field(NETWORK_IP)))?;
    let range: u8 = field(NETWORK_RANGE).parse().map_err(|_| {
        format!(
            "NetworkRange `{}` is not a prefix length (a number such as 24)",
            field(NETWORK_RANGE)
        )
    })?;
    let network =
        IpNet::new(ip, range).map_err(|_| format!("NetworkRange {range} is too long for {ip}"))?;
    if network.trunc().addr() != ip {
        return Err(format!(
            "NetworkIP {ip} has bits set beyond its range /{range}: the network is {}",
            network.trunc()
        ));
    }
    let building = text(BUILDING_NAME).ok_or("BuildingName is empty")?;
    let inside_corp = flag(field(INSIDE_CORP), "InsideCorp")?;
    flag(field(EXPRESS_ROUTE), "ExpressRoute")?;
    if row.len() > VPN && !field(VPN).is_empty() {
        flag(field(VPN), "VPN")?;
    }
    Ok(Site {
        network: network.trunc(),
        building,
        city: text(CITY),
        country: text(COUNTRY),
        inside_corp,
    })
}

/// A CQD boolean: `1`/`0` (`true`/`false` also read).
fn flag(value: &str, column: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!("{column} `{value}` is not 1 or 0")),
    }
}

/// How many line ends `bytes` holds.
fn bytecount(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

fn digest(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    hex::encode(&digest.as_ref()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
NetworkIP,NetworkName,NetworkRange,BuildingName,OwnershipType,BuildingType,BuildingOfficeType,City,ZipCode,Country,State,Region,InsideCorp,ExpressRoute,VPN
10.0.0.0,Contoso,8,Contoso WAN,Contoso,Campus,Office,,,,,EMEA,1,0,0
10.1.0.0,HQ,16,HQ Building 1,Contoso,Campus,Headquarters,Redmond,98052,US,WA,NA,1,1,0
10.1.2.0,HQ floor 2,24,\"HQ Building 1, floor 2\",Contoso,Campus,Headquarters,Redmond,98052,US,WA,NA,1,1,0
192.168.0.0,Home VPN,16,VPN pool,Contoso,Virtual,VPN,,,,,,0,0,1
2001:db8::,Lab v6,32,Lab,Contoso,Lab,Lab,Zurich,8000,CH,ZH,EMEA,1,0
";

    fn parse(text: &str) -> Result<Sites, SitesError> {
        Sites::parse(Path::new("buildings.csv"), text.as_bytes(), b',')
    }

    fn building(sites: &Sites, address: &str) -> Option<String> {
        sites
            .lookup(address.parse().unwrap())
            .map(|s| s.building.clone())
    }

    #[test]
    fn the_most_specific_range_wins() {
        let sites = parse(FILE).unwrap();
        assert_eq!(
            building(&sites, "10.1.2.77").as_deref(),
            Some("HQ Building 1, floor 2")
        );
        assert_eq!(
            building(&sites, "10.1.3.1").as_deref(),
            Some("HQ Building 1")
        );
        assert_eq!(
            building(&sites, "10.200.0.1").as_deref(),
            Some("Contoso WAN")
        );
        assert_eq!(building(&sites, "11.0.0.1"), None);
        assert_eq!(building(&sites, "2001:db8:1::5").as_deref(), Some("Lab"));
        let hq = sites.lookup("10.1.9.9".parse().unwrap()).unwrap();
        assert_eq!(
            (hq.city.as_deref(), hq.country.as_deref(), hq.inside_corp),
            (Some("Redmond"), Some("US"), true)
        );
        let vpn = sites.lookup("192.168.4.4".parse().unwrap()).unwrap();
        assert!(!vpn.inside_corp && vpn.city.is_none());
    }

    #[test]
    fn an_endpoint_matches_by_address_then_subnet() {
        let sites = parse(FILE).unwrap();
        let by = |ip, subnet| sites.endpoint(ip, subnet).map(|s| s.building.as_str());
        assert_eq!(
            by(Some("10.1.2.9"), Some("10.1.2.0")),
            Some("HQ Building 1, floor 2")
        );
        assert_eq!(
            by(Some("not an address"), Some("10.1.7.0")),
            Some("HQ Building 1")
        );
        assert_eq!(by(None, Some("10.1.7.0")), Some("HQ Building 1"));
        assert_eq!(by(Some("52.113.1.1"), None), None);
        assert_eq!(by(None, None), None);
    }

    #[test]
    fn a_file_without_header_and_a_tsv_file_read_alike() {
        let headless = FILE.split_once('\n').unwrap().1;
        let a = parse(FILE).unwrap();
        let b = parse(headless).unwrap();
        assert_eq!(a.sites, b.sites);
        let tsv = "10.1.0.0\tHQ\t16\tHQ\t\t\t\tRedmond\t\tUS\t\t\t1\t0\t0\n";
        let c = Sites::parse(Path::new("b.tsv"), tsv.as_bytes(), b'\t').unwrap();
        assert_eq!(c.sites[0].building, "HQ");
        assert_ne!(a.id(), c.id());
        assert_eq!(Sites::default().id(), "none");
    }

    #[test]
    fn a_malformed_row_names_the_file_and_its_line() {
        let cases = [
            ("10.1.0.0,HQ,16,HQ\n", 1, "4 columns"),
            (
                "10.1.0.0,HQ,16,HQ,,,,,,,,,1,0,0\n10.2.0.x,B,16,B,,,,,,,,,1,0,0\n",
                2,
                "NetworkIP `10.2.0.x`",
            ),
            (
                "10.1.0.0,HQ,sixteen,HQ,,,,,,,,,1,0,0\n",
                1,
                "NetworkRange `sixteen`",
            ),
            ("10.1.0.0,HQ,33,HQ,,,,,,,,,1,0,0\n", 1, "too long"),
            (
                "10.1.2.0,HQ,16,HQ,,,,,,,,,1,0,0\n",
                1,
                "the network is 10.1.0.0/16",
            ),
            (
                "10.1.0.0,HQ,16,,,,,,,,,,1,0,0\n",
                1,
                "BuildingName is empty",
            ),
            ("10.1.0.0,HQ,16,HQ,,,,,,,,,yes,0,0\n", 1, "InsideCorp `yes`"),
            (
                "10.1.0.0,HQ,16,HQ,,,,,,,,,1,0,0\n\n10.1.0.0,HQ,16,HQ,,,,,,,,,1,0,0\n",
                3,
                "also on line 1",
            ),
        ];
        for (text, line, expected) in cases {
            let error = parse(text).unwrap_err();
            let message = error.to_string();
            assert!(
                matches!(error, SitesError::Row { line: l, .. } if l == line),
                "{text:?}: {message}"
            );
            assert!(
                message.contains("buildings.csv") && message.contains(expected),
                "{message}"
            );
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = Sites::load(Path::new("/nonexistent/buildings.csv")).unwrap_err();
        assert!(matches!(error, SitesError::Read { .. }));
        assert!(error.to_string().contains("/nonexistent/buildings.csv"));
    }
}
