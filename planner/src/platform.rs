//! Platform releases (seed 001): a platform release is a set of chart
//! versions moving together, as the release manifest maps them. The
//! installed platform release is derived from the charts the cluster runs;
//! the move to the selected one follows the vendor's rules: never down; a
//! major step (7.x to 8.x) only from the latest release of the previous
//! line ("major upgrade must be done from the latest previous fix
//! version"); hotfixes and minor releases within a line in any forward
//! order; a cluster between two releases (an interrupted upgrade) only
//! towards completing that move.
//!
//! Versions order as the vendor writes them: `v` dropped, numbers compared
//! as numbers, then a letter suffix, none first: `7.2.2 < 7.2.2a < 7.2.2b
//! < 7.2.2c < 7.3.0`. A tag that is not such a version (`main`) can be
//! selected for a fresh install but never be moved from or to.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A platform version: `v?N.N[.N][letters]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlatformVersion {
    numbers: Vec<u64>,
    suffix: String,
}

impl PlatformVersion {
    pub fn parse(tag: &str) -> Option<PlatformVersion> {
        let t = tag.strip_prefix('v').unwrap_or(tag);
        let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
        let (nums, suffix) = t.split_at(split);
        if !suffix.chars().all(|c| c.is_ascii_lowercase()) || suffix.len() > 3 {
            return None;
        }
        let numbers: Option<Vec<u64>> = nums.split('.').map(|n| n.parse().ok()).collect();
        let mut numbers = numbers?;
        if !(2..=3).contains(&numbers.len()) {
            return None;
        }
        numbers.resize(3, 0);
        Some(PlatformVersion {
            numbers,
            suffix: suffix.to_string(),
        })
    }

    pub fn major(&self) -> u64 {
        self.numbers[0]
    }
}

impl Ord for PlatformVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.numbers
            .cmp(&other.numbers)
            .then_with(|| self.suffix.len().cmp(&other.suffix.len()))
            .then_with(|| self.suffix.cmp(&other.suffix))
    }
}

impl PartialOrd for PlatformVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One platform release of the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformRelease {
    pub tag: String,
    /// Chart name to chart version.
    pub charts: BTreeMap<String, String>,
}

/// The manifest and the platform release selected, for the planner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// The manifest's file, for messages.
    pub manifest: String,
    pub releases: Vec<PlatformRelease>,
    /// The platform release the desired state is.
    pub target: String,
    /// Helm release name to the manifest chart it is.
    pub charts: BTreeMap<String, String>,
}

/// The move the plan makes, shown above the per-chart steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformMove {
    /// The installed platform release; `None` when nothing is installed.
    pub from: Option<String>,
    pub to: String,
    /// The cluster runs charts of both `from` and `to` (an interrupted
    /// move this plan completes).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub completing: bool,
}

/// Why a move is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MoveRefusal {
    Downgrade {
        from: String,
        to: String,
    },
    MajorNotFromLatest {
        from: String,
        to: String,
        latest: String,
    },
    Unordered {
        tag: String,
    },
    /// The cluster's charts form no one release and the target does not
    /// complete a move between two: per chart, its live version and the
    /// releases that have it.
    Mixed {
        charts: Vec<(String, String, Vec<String>)>,
    },
}

impl Platform {
    fn release(&self, tag: &str) -> Option<&PlatformRelease> {
        self.releases.iter().find(|r| r.tag == tag)
    }

    /// The latest release of a major line.
    fn latest_of(&self, major: u64) -> Option<(&str, PlatformVersion)> {
        self.releases
            .iter()
            .filter_map(|r| PlatformVersion::parse(&r.tag).map(|v| (r.tag.as_str(), v)))
            .filter(|(_, v)| v.major() == major)
            .max_by(|a, b| a.1.cmp(&b.1))
    }

    /// Whether moving from `from` to `to` follows the rules.
    pub fn check_move(&self, from: &str, to: &str) -> Result<(), MoveRefusal> {
        if from == to {
            return Ok(());
        }
        let parse = |t: &str| {
            PlatformVersion::parse(t).ok_or_else(|| MoveRefusal::Unordered { tag: t.to_string() })
        };
        let (f, t) = (parse(from)?, parse(to)?);
        if t < f {
            return Err(MoveRefusal::Downgrade {
                from: from.into(),
                to: to.into(),
            });
        }
        if t.major() > f.major() {
            // The line before the target's: the greatest major below it.
            let previous = self
                .releases
                .iter()
                .filter_map(|r| PlatformVersion::parse(&r.tag))
                .map(|v| v.major())
                .filter(|m| *m < t.major())
                .max()
                .unwrap_or(f.major());
            let (latest, latest_v) = self
                .latest_of(previous)
                .map(|(tag, v)| (tag.to_string(), v))
                .unwrap_or((from.to_string(), f.clone()));
            if f != latest_v {
                return Err(MoveRefusal::MajorNotFromLatest {
                    from: from.into(),
                    to: to.into(),
                    latest,
                });
            }
        }
        Ok(())
    }

    /// The move from what the cluster runs (`live`: Helm release name to
    /// its chart version, the installed ones only) to the target.
    pub fn plan_move(&self, live: &BTreeMap<String, String>) -> Result<PlatformMove, MoveRefusal> {
        let target = self.release(&self.target);
        // (manifest chart, live version) of every installed chart.
        let running: Vec<(&str, &str)> = self
            .charts
            .iter()
            .filter_map(|(release, chart)| live.get(release).map(|v| (chart.as_str(), v.as_str())))
            .collect();
        if running.is_empty() {
            return Ok(PlatformMove {
                from: None,
                to: self.target.clone(),
                completing: false,
            });
        }
        let at = |r: &PlatformRelease, chart: &str, v: &str| {
            r.charts.get(chart).map(String::as_str) == Some(v)
        };
        let matching: Vec<&PlatformRelease> = self
            .releases
            .iter()
            .filter(|r| running.iter().all(|(c, v)| at(r, c, v)))
            .collect();
        if matching.iter().any(|r| r.tag == self.target) {
            return Ok(PlatformMove {
                from: Some(self.target.clone()),
                to: self.target.clone(),
                completing: false,
            });
        }
        // Releases with identical charts (7.3.4c and 7.3.6): the cluster
        // is the highest of them.
        let highest = |rs: &[&PlatformRelease]| -> Option<String> {
            rs.iter()
                .max_by(|a, b| {
                    match (
                        PlatformVersion::parse(&a.tag),
                        PlatformVersion::parse(&b.tag),
                    ) {
                        (Some(x), Some(y)) => x.cmp(&y),
                        (Some(_), None) => Ordering::Greater,
                        (None, Some(_)) => Ordering::Less,
                        (None, None) => Ordering::Equal,
                    }
                })
                .map(|r| r.tag.clone())
        };
        if let Some(from) = highest(&matching) {
            self.check_move(&from, &self.target)?;
            return Ok(PlatformMove {
                from: Some(from),
                to: self.target.clone(),
                completing: false,
            });
        }
        // Between two releases: each chart at the target's version or at
        // one other release's.
        let between: Vec<&PlatformRelease> = match target {
            Some(t) => self
                .releases
                .iter()
                .filter(|r| r.tag != t.tag)
                .filter(|r| running.iter().all(|(c, v)| at(r, c, v) || at(t, c, v)))
                .collect(),
            None => Vec::new(),
        };
        if let Some(from) = highest(&between) {
            if self.check_move(&from, &self.target).is_ok() {
                return Ok(PlatformMove {
                    from: Some(from),
                    to: self.target.clone(),
                    completing: true,
                });
            }
        }
        Err(MoveRefusal::Mixed {
            charts: running
                .iter()
                .map(|(c, v)| {
                    (
                        c.to_string(),
                        v.to_string(),
                        self.releases
                            .iter()
                            .filter(|r| at(r, c, v))
                            .map(|r| r.tag.clone())
                            .collect(),
                    )
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> PlatformVersion {
        PlatformVersion::parse(s).unwrap()
    }

    #[test]
    fn versions_order_as_the_vendor_writes_them() {
        let order = [
            "7.2.2", "7.2.2a", "7.2.2b", "7.2.2c", "7.3.0", "v7.3.1", "7.10.0", "8.0",
        ];
        for w in order.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(v("v8.0"), v("8.0.0"));
        for bad in ["main", "7", "7.x.1", "7.3.1-rc1", "7.3.1A", ""] {
            assert!(PlatformVersion::parse(bad).is_none(), "{bad}");
        }
    }
}
