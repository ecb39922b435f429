//! Chart versions and the upgrade paths a release catalog allows.

/// A chart version: SemVer 2 (the `semver` crate's order, so pre-releases
/// compare by their numeric and alphanumeric identifiers: `1.0.0-rc.9` <
/// `1.0.0-rc.10` < `1.0.0`), read with Helm's leniency: a leading `v` and
/// missing minor or patch numbers (`v1.2` is `1.2.0`). Build metadata is
/// ignored, as SemVer requires for precedence.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(semver::Version);

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        // The numeric core ends at the pre-release or build separator.
        let core_end = s.find(['-', '+']).unwrap_or(s.len());
        let (core, rest) = s.split_at(core_end);
        let padded = match core.split('.').count() {
            1 => format!("{core}.0.0{rest}"),
            2 => format!("{core}.0{rest}"),
            _ => s.to_string(),
        };
        let mut v = semver::Version::parse(&padded).ok()?;
        v.build = semver::BuildMetadata::EMPTY;
        Some(Version(v))
    }

    pub fn major(&self) -> u64 {
        self.0.major
    }

    pub fn is_prerelease(&self) -> bool {
        !self.0.pre.is_empty()
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
        if t.major() > f.major() {
            let latest_of_line = self
                .versions
                .iter()
                .filter_map(|v| Version::parse(v).map(|p| (p, v)))
                .filter(|(p, _)| p.major() == f.major() && !p.is_prerelease())
                .max_by(|a, b| a.0.cmp(&b.0));
            if let Some((latest, text)) = latest_of_line {
                if f < latest {
                    return Err(PathProblem::SkipsPath {
                        required: text.clone(),
                    });
                }
            }
            if t.major() > f.major() + 1 {
                return Err(PathProblem::SkipsPath {
                    required: format!("{}.x", f.major() + 1),
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
        assert!(v("3") == v("3.0.0"));
        // Pre-releases by SemVer's rules, not as strings.
        assert!(v("1.0.0-rc.10") > v("1.0.0-rc.9"));
        assert!(v("1.0.0-rc.1") > v("1.0.0-beta.11"));
        assert!(v("1.0.0-alpha") < v("1.0.0-alpha.1"));
        assert!(v("1.2.0-rc.1+build.5") == v("1.2.0-rc.1+build.6"));
        assert!(Version::parse("1.2.x").is_none());
        assert!(Version::parse("1.2.3.4").is_none());
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
