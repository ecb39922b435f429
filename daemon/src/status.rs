//! What the daemon knows, for people: a read-only page (plain HTML and CSS,
//! no script; it reloads itself) and the same as JSON.
//!
//! [`Board`] is the shared, live record the repository followers, the
//! shard loop and the stacks' workers write to; [`Board::snapshot`] turns
//! it into a [`FleetStatus`], plain data that [`to_html`] and [`to_json`]
//! render (pure: golden tests in `daemon/tests/status.rs`).
//!
//! Every text here comes from a repository or a cluster and is hostile:
//! the HTML escapes all of it. Secrets never reach the board: plans carry
//! redacted values, and messages are scrubbed by the desired state's
//! scrubber before they are recorded.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use plimsoll_syncer::progress::{RunState, RunTracker};
use serde::{Deserialize, Serialize};

use crate::discover::StackLocation;

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Where a stack stands, in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StackState {
    /// Held here; the first pass has not finished.
    Starting,
    /// At the branch's commit, nothing drifted.
    InSync,
    /// A sync runs now.
    Syncing,
    /// A sync waits for one of the replica's sync slots (`--max-syncs`).
    Queued,
    /// The live state differs from the synced commit.
    Drifted,
    /// The plan for the commit is refused (nothing was changed).
    Refused,
    /// The last sync or pass failed; retried with backoff.
    Failed,
    /// The commit's content cannot be used; waits for the branch to move.
    Rejected,
    /// Held here, but the lease could not be renewed lately: paused.
    Unconfirmed,
    /// Another replica holds it.
    Elsewhere,
    /// Nobody holds it yet.
    Unowned,
}

impl StackState {
    pub fn as_str(self) -> &'static str {
        match self {
            StackState::Starting => "starting",
            StackState::InSync => "in sync",
            StackState::Syncing => "syncing",
            StackState::Queued => "queued",
            StackState::Drifted => "drifted",
            StackState::Refused => "refused",
            StackState::Failed => "failed",
            StackState::Rejected => "rejected",
            StackState::Unconfirmed => "unconfirmed",
            StackState::Elsewhere => "elsewhere",
            StackState::Unowned => "unowned",
        }
    }

    /// The CSS class of its badge.
    fn class(self) -> &'static str {
        match self {
            StackState::InSync => "ok",
            StackState::Syncing | StackState::Starting | StackState::Queued => "busy",
            StackState::Drifted | StackState::Unconfirmed => "warn",
            StackState::Refused | StackState::Failed | StackState::Rejected => "bad",
            StackState::Elsewhere | StackState::Unowned => "idle",
        }
    }
}

/// A release of a stack as its commit declares it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    pub name: String,
    pub namespace: String,
    pub stage: String,
    pub chart: String,
    pub version: String,
}

/// A release's steps in a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseSteps {
    pub release: String,
    pub steps: Vec<String>,
}

/// A plan not (yet) applied: the steps per release, and refusals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSummary {
    /// The commit it was planned for.
    pub revision: String,
    /// Steps by release, in the plan's order (stages first to last),
    /// described as the plan describes them.
    pub steps: Vec<ReleaseSteps>,
    pub refusals: Vec<String>,
}

impl PlanSummary {
    pub fn of(
        plan: &plimsoll_planner::plan::Plan,
        revision: &str,
        scrub: &dyn Fn(&str) -> String,
    ) -> PlanSummary {
        PlanSummary {
            revision: revision.to_string(),
            steps: plan
                .releases
                .iter()
                .filter(|r| !r.steps.is_empty())
                .map(|r| ReleaseSteps {
                    release: r.release.clone(),
                    steps: r.steps.iter().map(|s| scrub(&s.describe())).collect(),
                })
                .collect(),
            refusals: plan.refusals.iter().map(|r| scrub(&r.message())).collect(),
        }
    }

    pub fn step_count(&self) -> usize {
        self.steps.iter().map(|r| r.steps.len()).sum()
    }

    /// Whether the plan has steps for `release`.
    pub fn touches(&self, release: &str) -> bool {
        self.steps.iter().any(|r| r.release == release)
    }
}

/// What a worker records about its stack.
#[derive(Clone, Debug, Default)]
pub struct StackRecord {
    pub name: Option<String>,
    pub state: Option<StackState>,
    /// The branch's commit the worker last looked at.
    pub head: Option<String>,
    pub synced: Option<String>,
    /// The plan being applied, refused, or pending (drift without
    /// self-heal).
    pub plan: Option<PlanSummary>,
    /// The running sync, while one runs.
    pub run: Option<RunTracker>,
    /// Drift lines by release (from the last check).
    pub drift: BTreeMap<String, Vec<String>>,
    pub last_error: Option<String>,
    /// Why the stack's last sync or pass failed, until one succeeds (a
    /// retry in progress does not make it ready).
    pub failure: Option<String>,
    pub releases: Vec<ReleaseInfo>,
    pub last_pass: Option<u64>,
}

/// What the replica holding a stack reports of it to its peers (an
/// annotation of the stack's lease, renewed with it): the status page of
/// every replica shows the whole fleet. Its texts are scrubbed already and
/// bounded ([`Reported::bounded`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reported {
    pub state: StackState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Steps of the plan being applied or pending, and the running sync's
    /// steps done.
    #[serde(default)]
    pub steps: usize,
    #[serde(default)]
    pub done: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pass: Option<u64>,
}

/// The longest annotation a peer's report may be (larger ones are not
/// read), and the longest error text one carries.
pub const REPORT_LIMIT: usize = 4096;
const REPORT_ERROR_CHARS: usize = 600;

impl Reported {
    /// Texts cut to fit the annotation.
    fn bounded(mut self) -> Reported {
        let cut = |t: &mut Option<String>, n: usize| {
            if let Some(x) = t.as_mut() {
                if x.chars().count() > n {
                    *x = x.chars().take(n).collect::<String>() + "…";
                }
            }
        };
        cut(&mut self.last_error, REPORT_ERROR_CHARS);
        cut(&mut self.name, 253);
        cut(&mut self.head, 64);
        cut(&mut self.synced, 64);
        self
    }

    pub fn to_annotation(&self) -> String {
        serde_json::to_string(&self.clone().bounded()).unwrap_or_default()
    }

    /// A peer's annotation; `None` when too large or not a report.
    pub fn from_annotation(text: &str) -> Option<Reported> {
        if text.len() > REPORT_LIMIT {
            return None;
        }
        serde_json::from_str::<Reported>(text)
            .ok()
            .map(Reported::bounded)
    }
}

/// A repository as its follower last read it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryStatus {
    pub repository: String,
    pub branch: String,
    pub stacks: Vec<String>,
    pub head: Option<String>,
    pub read_at: Option<u64>,
    pub error: Option<String>,
}

/// The live record, shared by every task of the daemon.
#[derive(Debug)]
pub struct Board {
    pub identity: String,
    pub group: String,
    started: u64,
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    repositories: Vec<RepositoryStatus>,
    peers: Vec<(String, usize)>,
    share: usize,
    shard_error: Option<String>,
    /// A round of the shard loop has completed.
    shared_once: bool,
    /// Every stack the repositories hold, by key.
    stacks: BTreeMap<String, (StackLocation, Result<String, String>)>,
    holders: BTreeMap<String, String>,
    /// What this replica's workers recorded, by key.
    records: BTreeMap<String, StackRecord>,
    /// What peers report of the stacks they hold, by key.
    reported: BTreeMap<String, Reported>,
}

impl Board {
    pub fn new(identity: &str, group: &str, repositories: Vec<RepositoryStatus>) -> Arc<Board> {
        Arc::new(Board {
            identity: identity.to_string(),
            group: group.to_string(),
            started: now(),
            inner: RwLock::new(Inner {
                repositories,
                ..Default::default()
            }),
        })
    }

    fn write(&self, f: impl FnOnce(&mut Inner)) {
        if let Ok(mut w) = self.inner.write() {
            f(&mut w);
        }
    }

    /// A follower read its branch: the new head, or an error.
    pub fn repository_read(&self, index: usize, head: Option<&str>, error: Option<String>) {
        self.write(|w| {
            if let Some(r) = w.repositories.get_mut(index) {
                if let Some(h) = head {
                    r.head = Some(h.to_string());
                }
                r.error = error;
                r.read_at = Some(now());
            }
        });
    }

    /// The stacks the repositories hold now.
    pub fn set_stacks(&self, stacks: BTreeMap<String, (StackLocation, Result<String, String>)>) {
        self.write(|w| {
            w.records.retain(|k, _| stacks.contains_key(k));
            w.stacks = stacks;
        });
    }

    /// What the shard loop saw in its last round.
    pub fn set_shard(&self, view: &crate::shard::ShardView, error: Option<String>) {
        self.write(|w| {
            if error.is_none() {
                w.peers = view.peers.clone();
                w.holders = view.holders.clone();
                w.reported = view.reported.clone();
                w.share = view.share;
                w.shared_once = true;
            }
            w.shard_error = error;
        });
    }

    /// What this replica reports to its peers of each stack it holds.
    pub fn reports(&self) -> BTreeMap<String, String> {
        let Ok(r) = self.inner.read() else {
            return BTreeMap::new();
        };
        r.records
            .iter()
            .filter(|(key, _)| r.holders.get(*key) == Some(&self.identity))
            .filter_map(|(key, rec)| {
                let progress = rec.run.as_ref().map(RunTracker::snapshot);
                Some((
                    key.clone(),
                    Reported {
                        state: rec.state?,
                        name: rec.name.clone(),
                        head: rec.head.clone(),
                        synced: rec.synced.clone(),
                        last_error: rec.last_error.clone(),
                        steps: rec.plan.as_ref().map_or(0, PlanSummary::step_count),
                        done: progress.map_or(0, |p| p.done),
                        last_pass: rec.last_pass,
                    }
                    .to_annotation(),
                ))
            })
            .collect()
    }

    /// A worker's record of its stack.
    pub fn record(&self, key: &str, f: impl FnOnce(&mut StackRecord)) {
        self.write(|w| f(w.records.entry(key.to_string()).or_default()));
    }

    /// The stack is not worked on here any more (its lease given up or
    /// lost): shown as nobody's until the next round says whose it is.
    pub fn forget(&self, key: &str) {
        self.write(|w| {
            w.records.remove(key);
            if w.holders.get(key) == Some(&self.identity) {
                w.holders.remove(key);
            }
        });
    }

    /// Why this replica is not ready, if it is not: the shard loop cannot
    /// reach the cluster, a repository cannot be read, or a stack held
    /// here failed or was rejected (`/readyz`).
    pub fn not_ready(&self) -> Option<String> {
        self.why_not_ready(true)
    }

    /// The replica's own readiness, whatever its stacks' (`/readyz/replica`,
    /// the chart's readiness probe): a stack failing in git must not keep a
    /// new replica out of service, which would stall a rolling update of
    /// the daemon itself.
    pub fn replica_not_ready(&self) -> Option<String> {
        self.why_not_ready(false)
    }

    fn why_not_ready(&self, stacks: bool) -> Option<String> {
        let r = self.inner.read().ok()?;
        let mut why = Vec::new();
        if let Some(e) = &r.shard_error {
            why.push(format!("cannot share stacks through leases: {e}"));
        } else if !r.shared_once {
            why.push("no round of sharing stacks has completed".to_string());
        }
        // Held here: ready once each has completed a pass.
        for (key, holder) in r.holders.iter().filter(|_| stacks) {
            if *holder == self.identity && r.records.get(key).is_none_or(|x| x.last_pass.is_none())
            {
                let file = r
                    .stacks
                    .get(key)
                    .map_or(key.as_str(), |(l, _)| l.file.as_str());
                why.push(format!("stack {file}: no reconcile pass has completed"));
            }
        }
        for repo in &r.repositories {
            if let Some(e) = &repo.error {
                why.push(format!(
                    "cannot read {} {}: {e}",
                    repo.repository, repo.branch
                ));
            }
        }
        for (key, rec) in r.records.iter().filter(|_| stacks) {
            let file = r
                .stacks
                .get(key)
                .map_or(key.as_str(), |(l, _)| l.file.as_str());
            let name = rec.name.as_deref().unwrap_or(file);
            if rec.state == Some(StackState::Rejected) {
                why.push(format!(
                    "stack {name}: commit {} cannot be used: {}",
                    short(rec.head.as_deref().unwrap_or("")),
                    rec.last_error.as_deref().unwrap_or("")
                ));
            } else if let Some(f) = &rec.failure {
                why.push(format!("stack {name}: {f}"));
            }
        }
        if r.records.is_empty() && r.repositories.iter().all(|x| x.head.is_none()) && why.is_empty()
        {
            why.push("no repository has been read yet".to_string());
        }
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// Everything as plain data, the running syncs' progress included.
    pub fn snapshot(&self) -> FleetStatus {
        let Ok(r) = self.inner.read() else {
            return FleetStatus::default();
        };
        let stacks: Vec<StackStatus> = r
            .stacks
            .iter()
            .map(|(key, (location, name))| {
                let holder = r.holders.get(key).cloned();
                let mine = holder.as_deref() == Some(self.identity.as_str());
                let rec = r.records.get(key).filter(|_| mine);
                let reported = r
                    .reported
                    .get(key)
                    .filter(|_| !mine && holder.is_some())
                    .cloned();
                let state = match rec.and_then(|x| x.state) {
                    Some(s) => s,
                    None if mine => StackState::Starting,
                    None if holder.is_some() => StackState::Elsewhere,
                    None => StackState::Unowned,
                };
                StackStatus {
                    key: key.clone(),
                    location: location.clone(),
                    name: rec
                        .and_then(|x| x.name.clone())
                        .or_else(|| name.as_ref().ok().cloned()),
                    holder,
                    mine,
                    state,
                    head: rec.and_then(|x| x.head.clone()),
                    synced: rec.and_then(|x| x.synced.clone()),
                    plan: rec.and_then(|x| x.plan.clone()),
                    progress: rec
                        .and_then(|x| x.run.as_ref())
                        .map(RunTracker::snapshot)
                        .filter(|p| p.total > 0),
                    drift: rec.map(|x| x.drift.clone()).unwrap_or_default(),
                    last_error: rec
                        .and_then(|x| x.last_error.clone())
                        .or_else(|| name.as_ref().err().cloned()),
                    releases: rec.map(|x| x.releases.clone()).unwrap_or_default(),
                    last_pass: rec.and_then(|x| x.last_pass),
                    reported,
                }
            })
            .collect();
        let mut stacks: Vec<StackStatus> = stacks;
        stacks.sort_by(|a, b| a.location.cmp(&b.location));
        FleetStatus {
            identity: self.identity.clone(),
            group: self.group.clone(),
            started: self.started,
            generated: now(),
            share: r.share,
            peers: r
                .peers
                .iter()
                .map(|(identity, stacks)| Peer {
                    identity: identity.clone(),
                    stacks: *stacks,
                    me: *identity == self.identity,
                })
                .collect(),
            shard_error: r.shard_error.clone(),
            repositories: r.repositories.clone(),
            stacks,
        }
    }
}

/// A peer of the group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    pub identity: String,
    pub stacks: usize,
    pub me: bool,
}

/// One stack, as the page shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackStatus {
    pub key: String,
    pub location: StackLocation,
    pub name: Option<String>,
    /// The replica holding it.
    pub holder: Option<String>,
    /// Held by this replica (everything below is known only then).
    pub mine: bool,
    pub state: StackState,
    pub head: Option<String>,
    pub synced: Option<String>,
    pub plan: Option<PlanSummary>,
    pub progress: Option<RunState>,
    pub drift: BTreeMap<String, Vec<String>>,
    pub last_error: Option<String>,
    pub releases: Vec<ReleaseInfo>,
    pub last_pass: Option<u64>,
    /// Held by a peer: what it reports (its lease's annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<Reported>,
}

/// The whole page's data (`/status.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetStatus {
    pub identity: String,
    pub group: String,
    pub started: u64,
    pub generated: u64,
    /// This replica's fair share of the stacks.
    pub share: usize,
    pub peers: Vec<Peer>,
    pub shard_error: Option<String>,
    pub repositories: Vec<RepositoryStatus>,
    pub stacks: Vec<StackStatus>,
}

fn short(commit: &str) -> &str {
    &commit[..12.min(commit.len())]
}

/// Text made safe for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An element id from hostile text: only `[a-z0-9-]`.
fn anchor(parts: &[&str]) -> String {
    let mut out = String::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str("--");
        }
        for c in p.chars() {
            out.push(if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            });
        }
    }
    out
}

/// How long ago `t` was, from `now`.
fn ago(t: u64, now: u64) -> String {
    let s = now.saturating_sub(t);
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        _ => format!("{}h {}m ago", s / 3600, (s % 3600) / 60),
    }
}

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}\
header{background:#1d2330;color:#fff;padding:12px 24px}header h1{margin:0;font-size:18px}\
header code{background:#3a4254;color:#fff}\
header p{margin:4px 0 0;color:#c4c9d4}main{padding:16px 24px;max-width:1200px}\
section.stack{background:#fff;border:1px solid #d8dce3;border-radius:6px;margin:0 0 16px;padding:12px 16px}\
h2{font-size:16px;margin:0 0 6px}h3{font-size:14px;margin:12px 0 4px}\
table{border-collapse:collapse;width:100%;margin:4px 0}th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #eceef2;vertical-align:top}\
th{color:#5a6272;font-weight:600}code{font:12px ui-monospace,monospace;background:#eef0f4;padding:1px 4px;border-radius:3px}\
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;color:#fff}\
.ok{background:#2f8f4e}.busy{background:#2d6cdf}.warn{background:#c98a00}.bad{background:#c23b3b}.idle{background:#7b8394}\
.meta{color:#5a6272}.error{color:#a02727;white-space:pre-wrap}progress{width:240px;vertical-align:middle}\
ul{margin:2px 0;padding-left:20px}nav a{margin-right:12px}";

/// The page. `refresh`: seconds between reloads.
pub fn to_html(s: &FleetStatus, refresh: u32) -> String {
    let mut h = String::new();
    let e = escape;
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str(&format!(
        "<meta http-equiv=\"refresh\" content=\"{refresh}\">"
    ));
    h.push_str("<meta name=\"viewport\" content=\"width=device-width\">");
    h.push_str(&format!("<title>Plimsoll — {}</title>", e(&s.identity)));
    h.push_str(&format!("<style>{STYLE}</style></head><body>\n"));
    let mine = s.stacks.iter().filter(|x| x.mine).count();
    h.push_str(&format!(
        "<header><h1>Plimsoll daemon <code>{}</code></h1><p>group {} · {} of {} stacks held here (fair share {}) · {} peer(s) · up since {} · <a style=\"color:#9cc3ff\" href=\"status.json\">JSON</a></p></header>\n<main>\n",
        e(&s.identity),
        e(&s.group),
        mine,
        s.stacks.len(),
        s.share,
        s.peers.len(),
        ago(s.started, s.generated),
    ));
    if let Some(err) = &s.shard_error {
        h.push_str(&format!(
            "<p class=\"error\" id=\"shard-error\">Cannot share stacks through leases: {}</p>\n",
            e(err)
        ));
    }
    // Peers and repositories.
    h.push_str("<section class=\"stack\" id=\"fleet\"><h2>Replicas</h2><table><tr><th>replica</th><th>stacks held</th></tr>");
    for p in &s.peers {
        h.push_str(&format!(
            "<tr><td><code>{}</code>{}</td><td>{}</td></tr>",
            e(&p.identity),
            if p.me { " (this one)" } else { "" },
            p.stacks
        ));
    }
    h.push_str("</table><h3>Repositories</h3><table><tr><th>repository</th><th>branch</th><th>stack files</th><th>head</th><th>read</th></tr>");
    for r in &s.repositories {
        h.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}{}</td></tr>",
            e(&r.repository),
            e(&r.branch),
            r.stacks.iter().map(|p| format!("<code>{}</code>", e(p))).collect::<Vec<_>>().join(" "),
            e(short(r.head.as_deref().unwrap_or("—"))),
            r.read_at.map_or("never".to_string(), |t| ago(t, s.generated)),
            r.error.as_ref().map_or(String::new(), |x| format!("<div class=\"error\">{}</div>", e(x))),
        ));
    }
    h.push_str("</table></section>\n");
    // The index: every stack with its state, linking to its section.
    h.push_str("<section class=\"stack\" id=\"stacks\"><h2>Stacks</h2><table><tr><th>stack</th><th>file</th><th>state</th><th>held by</th><th>synced</th></tr>");
    for st in &s.stacks {
        let id = anchor(&["stack", &st.key]);
        h.push_str(&format!(
            "<tr><td><a href=\"#{id}\">{}</a></td><td><code>{}</code></td><td><span class=\"badge {}\">{}</span></td><td>{}</td><td><code>{}</code></td></tr>",
            e(st.name.as_deref().unwrap_or("?")),
            e(&st.location.file),
            st.state.class(),
            st.state.as_str(),
            st.holder.as_deref().map_or("—".to_string(), |x| format!("<code>{}</code>", e(x))),
            e(short(st.synced.as_deref().unwrap_or("—"))),
        ));
    }
    h.push_str("</table></section>\n");
    for st in &s.stacks {
        stack_section(&mut h, st, s.generated);
    }
    h.push_str("</main></body></html>\n");
    h
}

fn stack_section(h: &mut String, st: &StackStatus, now: u64) {
    let e = escape;
    let id = anchor(&["stack", &st.key]);
    h.push_str(&format!(
        "<section class=\"stack\" id=\"{id}\" data-state=\"{}\"><h2>{} <span class=\"badge {}\">{}</span></h2>",
        st.state.as_str(),
        e(st.name.as_deref().unwrap_or("?")),
        st.state.class(),
        st.state.as_str(),
    ));
    h.push_str(&format!(
        "<p class=\"meta\"><code>{}</code> in <code>{}</code> ({}) · held by {}{}</p>",
        e(&st.location.file),
        e(&st.location.repository),
        e(&st.location.branch),
        st.holder
            .as_deref()
            .map_or("nobody yet".to_string(), |x| format!(
                "<code>{}</code>",
                e(x)
            )),
        st.last_pass
            .map_or(String::new(), |t| format!(" · last pass {}", ago(t, now))),
    ));
    if !st.mine {
        if let Some(err) = &st.last_error {
            h.push_str(&format!("<p class=\"error\">{}</p>", e(err)));
        }
        if let Some(r) = &st.reported {
            let steps = if r.state == StackState::Syncing && r.steps > 0 {
                format!(" · step {} of {}", (r.done + 1).min(r.steps), r.steps)
            } else if r.steps > 0 {
                format!(" · a plan of {} step(s)", r.steps)
            } else {
                String::new()
            };
            h.push_str(&format!(
                "<p class=\"reported\">Its holder reports: <span class=\"badge {}\">{}</span>{steps}</p>\
                 <table><tr><th>branch head</th><td><code class=\"head\">{}</code></td><th>synced</th><td><code class=\"synced\">{}</code></td></tr></table>",
                r.state.class(),
                e(r.state.as_str()),
                e(r.head.as_deref().unwrap_or("—")),
                e(r.synced.as_deref().unwrap_or("—")),
            ));
            if let Some(err) = &r.last_error {
                h.push_str(&format!("<p class=\"error\">{}</p>", e(err)));
            }
        }
        h.push_str(if st.holder.is_some() {
            "<p class=\"meta\">Its plan, progress and drift are on the page of the replica holding it.</p></section>\n"
        } else {
            "<p class=\"meta\">No replica holds it yet.</p></section>\n"
        });
        return;
    }
    h.push_str(&format!(
        "<table><tr><th>branch head</th><td><code class=\"head\">{}</code></td><th>synced</th><td><code class=\"synced\">{}</code></td></tr></table>",
        e(st.head.as_deref().unwrap_or("—")),
        e(st.synced.as_deref().unwrap_or("—")),
    ));
    if let Some(p) = &st.progress {
        let running = p.running.len();
        h.push_str(&format!(
            "<h3>Sync in progress</h3><p class=\"progress\">step {} of {} <progress max=\"{}\" value=\"{}\"></progress> ({} done, {} running)</p><ul class=\"running\">",
            (p.done + running).min(p.total).max(1),
            p.total,
            p.total,
            p.done,
            p.done,
            running,
        ));
        for (release, r) in &p.running {
            h.push_str(&format!(
                "<li><a href=\"#{}\">{}</a>: [{}/{}] {} <span class=\"meta\">(since {})</span>{}</li>",
                anchor(&["release", &st.key, release]),
                e(release),
                r.n,
                p.total,
                e(&r.step),
                ago(r.since, now),
                r.waiting.as_ref().map_or(String::new(), |w| format!("<br><span class=\"waiting\">waiting on: {}</span>", e(w))),
            ));
        }
        h.push_str("</ul>");
    }
    if let Some(err) = &st.last_error {
        h.push_str(&format!(
            "<h3>Last error</h3><p class=\"error last-error\">{}</p>",
            e(err)
        ));
    }
    if let Some(plan) = &st.plan {
        let title = if !plan.refusals.is_empty() {
            "Refused plan"
        } else if st.state == StackState::Syncing {
            "Plan being applied"
        } else {
            "Pending plan"
        };
        h.push_str(&format!(
            "<h3>{title} <span class=\"meta\">for <code>{}</code>, {} step(s)</span></h3>",
            e(short(&plan.revision)),
            plan.step_count()
        ));
        if !plan.refusals.is_empty() {
            h.push_str("<ul class=\"refusals\">");
            for r in &plan.refusals {
                h.push_str(&format!("<li class=\"error\">{}</li>", e(r)));
            }
            h.push_str("</ul>");
        }
        for ReleaseSteps { release, steps } in &plan.steps {
            h.push_str(&format!(
                "<p><a href=\"#{}\">{}</a></p><ol class=\"plan\">",
                anchor(&["release", &st.key, release]),
                e(release)
            ));
            for step in steps {
                h.push_str(&format!("<li>{}</li>", e(step)));
            }
            h.push_str("</ol>");
        }
    }
    if !st.drift.is_empty() {
        h.push_str("<h3>Drift</h3>");
        for (release, lines) in &st.drift {
            h.push_str(&format!(
                "<p><a href=\"#{}\">{}</a></p><ul class=\"drift\">",
                anchor(&["release", &st.key, release]),
                e(release)
            ));
            for l in lines {
                h.push_str(&format!("<li>{}</li>", e(l)));
            }
            h.push_str("</ul>");
        }
    }
    if !st.releases.is_empty() {
        h.push_str("<h3>Releases</h3><table><tr><th>release</th><th>stage</th><th>namespace</th><th>chart</th><th>version</th><th>state</th></tr>");
        for r in &st.releases {
            let state = if st
                .progress
                .as_ref()
                .is_some_and(|p| p.running.contains_key(&r.name))
            {
                "syncing"
            } else if st.drift.contains_key(&r.name) {
                "drifted"
            } else if st.plan.as_ref().is_some_and(|p| p.touches(&r.name)) {
                "pending"
            } else {
                "—"
            };
            h.push_str(&format!(
                "<tr id=\"{}\"><td><a href=\"#{}\">{}</a></td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                anchor(&["release", &st.key, &r.name]),
                anchor(&["release", &st.key, &r.name]),
                e(&r.name),
                e(&r.stage),
                e(&r.namespace),
                e(&r.chart),
                e(&r.version),
                state,
            ));
        }
        h.push_str("</table>");
    }
    h.push_str("</section>\n");
}

/// `/status.json`.
pub fn to_json(s: &FleetStatus) -> String {
    serde_json::to_string_pretty(s).unwrap_or_else(|_| "{}".to_string()) + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped_and_anchors_are_safe() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(anchor(&["stack", "a\"b<c"]), "stack--a-b-c");
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(ago(100, 130), "30s ago");
        assert_eq!(ago(0, 3_700), "1h 1m ago");
        assert_eq!(ago(200, 100), "0s ago", "a clock step back is not negative");
    }

    #[test]
    fn reports_are_bounded_both_ways() {
        let long = "e".repeat(5_000);
        let r = Reported {
            state: StackState::Failed,
            name: Some("eu-1".into()),
            head: None,
            synced: None,
            last_error: Some(long.clone()),
            steps: 2,
            done: 1,
            last_pass: Some(7),
        };
        let text = r.to_annotation();
        assert!(text.len() < REPORT_LIMIT, "{}", text.len());
        let back = Reported::from_annotation(&text).unwrap();
        assert_eq!(back.state, StackState::Failed);
        assert_eq!(
            back.last_error.unwrap().chars().count(),
            REPORT_ERROR_CHARS + 1,
            "cut, with an ellipsis"
        );
        // A peer's annotation is read only when small and well formed.
        let huge = format!(r#"{{"state":"failed","last_error":"{long}"}}"#);
        assert!(Reported::from_annotation(&huge).is_none());
        assert!(Reported::from_annotation("{").is_none());
        assert!(Reported::from_annotation(r#"{"state":"exploded"}"#).is_none());
    }
}
