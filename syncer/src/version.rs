//! Chart versions and the upgrade paths a release catalog allows.

use std::cmp::Ordering;

/// A semantic version `MAJOR.MINOR.PATCH[-PRE]` (build metadata ignored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: String,
}

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim().trim_start_matches('v');
        let s = s.split('+').next()?;
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, p.to_string()),
            None => (s, String::new()),
        };
        let mut it = core.split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next().unwrap_or("0").parse().ok()?;
        let patch = it.next().unwrap_or("0").parse().ok()?;
        if it.next().is_some() {
            return None;
        }
        Some(Version {
            major,
            minor,
            patch,
            pre,
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

/// The versions of a chart a catalog knows, for upgrade-path checks: a
/// major upgrade is allowed only from the latest known release of the
/// previous major line (as ThingPark requires 7.3.x to be at its latest fix
/// release before 8.0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    pub versions: Vec<String>,
}

/// Why an upgrade from one version to another is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathProblem {
    Downgrade,
    SkipsPath { required: String },
    Unparseable(String),
}

impl Catalog {
    pub fn check(&self, from: &str, to: &str) -> Result<(), PathProblem> {
        let f = Version::parse(from).ok_or_else(|| PathProblem::Unparseable(from.to_string()))?;
        let t = Version::parse(to).ok_or_else(|| PathProblem::Unparseable(to.to_string()))?;
        if t < f {
            return Err(PathProblem::Downgrade);
        }
        if t.major > f.major {
            let latest_of_line = self
                .versions
                .iter()
                .filter_map(|v| Version::parse(v).map(|p| (p, v)))
                .filter(|(p, _)| p.major == f.major && p.pre.is_empty())
                .max_by(|a, b| a.0.cmp(&b.0));
            if let Some((latest, text)) = latest_of_line {
                if f < latest {
                    return Err(PathProblem::SkipsPath {
                        required: text.clone(),
                    });
                }
            }
            if t.major > f.major + 1 {
                return Err(PathProblem::SkipsPath {
                    required: format!("{}.x", f.major + 1),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_versions() {
        let v = |s| Version::parse(s).unwrap();
        assert!(v("1.10.0") > v("1.9.9"));
        assert!(v("2.0.0") > v("2.0.0-rc.1"));
        assert!(v("v1.2") == v("1.2.0"));
    }

    #[test]
    fn upgrade_paths() {
        let c = Catalog {
            versions: vec![
                "1.3.0".into(),
                "1.4.0".into(),
                "1.4.2".into(),
                "2.0.0".into(),
            ],
        };
        assert_eq!(c.check("1.4.2", "2.0.0"), Ok(()));
        assert_eq!(c.check("1.4.0", "1.4.2"), Ok(()));
        assert_eq!(
            c.check("1.4.0", "2.0.0"),
            Err(PathProblem::SkipsPath {
                required: "1.4.2".into()
            })
        );
        assert_eq!(c.check("2.0.0", "1.4.2"), Err(PathProblem::Downgrade));
        assert_eq!(
            c.check("1.4.2", "3.0.0"),
            Err(PathProblem::SkipsPath {
                required: "2.x".into()
            })
        );
    }
}
