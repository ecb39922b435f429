//! Redaction: which values are secret, and their masked forms.
//!
//! One rule for every place a value can leave Plimsoll (plan formats,
//! `--base`, drift logs, Events, the journal, error messages):
//!
//! - a value is secret when any key on its path looks secret (built-in
//!   fragments, plus the stack file's `redact:` patterns), at any depth,
//!   inside lists and inside added, removed or type-changed subtrees;
//! - the `value` of an item whose `name` looks secret is secret
//!   (`env: [{name: DB_PASSWORD, value: …}]`);
//! - text that carries a credential is masked from the credential on
//!   (`password=…`, `user:pw@` in a URL, a JAAS config, a PEM private key);
//! - a secret is shown as changed, never with its value or a hash of it.
//!
//! Free text (helm's stderr, API errors) cannot be judged by keys, so
//! [`Scrubber`] removes the literal secret strings of the desired state
//! from it as well.

use std::borrow::Cow;

use serde_json::Value;

/// What a secret value is shown as.
pub const REDACTED: &str = "(redacted)";

/// Key fragments that make a key secret (case-insensitive substrings).
const SECRET_KEY_FRAGMENTS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "token",
    "secret",
    "key",
    "credential",
    "certificate",
    "private",
    "jaas",
    "auth",
    "dsn",
    "connectionstring",
];

/// Markers after which text carries a credential (`MARKER[ "']*[=:]`).
const CREDENTIAL_MARKERS: &[&str] = &[
    "password", "passwd", "pwd", "secret", "token", "apikey", "api_key",
];

/// Which values are secret: the built-in rule plus the stack file's key
/// patterns (case-insensitive globs, `*` for any run of characters).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redactor {
    patterns: Vec<String>,
}

impl Redactor {
    pub fn with_patterns<I: IntoIterator<Item = S>, S: AsRef<str>>(patterns: I) -> Redactor {
        Redactor {
            patterns: patterns
                .into_iter()
                .map(|p| p.as_ref().to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether values under `key` are secret.
    pub fn is_secret_key(&self, key: &str) -> bool {
        let k = key.to_ascii_lowercase();
        SECRET_KEY_FRAGMENTS.iter().any(|s| k.contains(s))
            || self.patterns.iter().any(|p| glob_match(p, &k))
    }

    /// A copy of `v` with every secret leaf masked; `secret` says the
    /// whole subtree is under a secret key.
    pub fn redact_tree(&self, v: &Value, secret: bool) -> Value {
        match v {
            Value::Object(m) => {
                let secret_value = secret_name(self, m);
                Value::Object(
                    m.iter()
                        .map(|(k, x)| {
                            let s =
                                secret || self.is_secret_key(k) || (secret_value && k == "value");
                            (k.clone(), self.redact_tree(x, s))
                        })
                        .collect(),
                )
            }
            Value::Array(a) => {
                Value::Array(a.iter().map(|x| self.redact_tree(x, secret)).collect())
            }
            Value::Null => Value::Null,
            _ if secret => Value::String(REDACTED.to_string()),
            Value::String(s) => Value::String(redact_text(s).into_owned()),
            other => other.clone(),
        }
    }

    /// `v` for people: strings as they are, other values as JSON; masked
    /// where secret.
    pub fn show(&self, v: &Value, secret: bool) -> String {
        match self.redact_tree(v, secret) {
            Value::String(s) => s,
            other => other.to_string(),
        }
    }

    /// RFC 6902 operations with their values masked: a value whose target
    /// path crosses a secret key is masked whole, any other by the tree
    /// rule. `secret` masks them all (a patch of a `Secret`).
    pub fn redact_operations(&self, operations: &Value, secret: bool) -> Value {
        let Value::Array(ops) = operations else {
            return self.redact_tree(operations, secret);
        };
        Value::Array(
            ops.iter()
                .map(|op| {
                    let Value::Object(m) = op else {
                        return self.redact_tree(op, secret);
                    };
                    let path_secret = secret
                        || m.get("path")
                            .and_then(Value::as_str)
                            .is_some_and(|p| p.split('/').any(|k| self.is_secret_key(k)));
                    Value::Object(
                        m.iter()
                            .map(|(k, x)| {
                                let x = if k == "value" {
                                    self.redact_tree(x, path_secret)
                                } else {
                                    x.clone()
                                };
                                (k.clone(), x)
                            })
                            .collect(),
                    )
                })
                .collect(),
        )
    }

    /// Every secret string of `v` (the leaves [`Redactor::redact_tree`]
    /// masks, and credentials inside text), for [`Scrubber`].
    pub fn secret_strings(&self, v: &Value, secret: bool, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                let secret_value = secret_name(self, m);
                for (k, x) in m {
                    let s = secret || self.is_secret_key(k) || (secret_value && k == "value");
                    self.secret_strings(x, s, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| self.secret_strings(x, secret, out)),
            Value::String(s) if secret => out.push(s.clone()),
            Value::Number(n) if secret => out.push(n.to_string()),
            Value::String(s) => out.extend(credentials_in(s)),
            _ => {}
        }
    }
}

/// The credentials inside text (each masked range of [`redact_text`]),
/// for [`Scrubber`].
fn credentials_in(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if might_carry_credential(s) {
        mask_text(s, &mut |secret| out.push(secret.trim().to_string()));
    }
    out.retain(|x| !x.is_empty());
    out
}

/// A map whose `name` looks secret (`{name: DB_PASSWORD, value: …}`).
fn secret_name(r: &Redactor, m: &serde_json::Map<String, Value>) -> bool {
    m.get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| r.is_secret_key(n))
}

/// Case-insensitive glob over a lower-cased key; `*` matches any run.
fn glob_match(pattern: &str, key: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == key;
    }
    let mut rest = key;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Text with its credentials masked, line by line: a PEM private key
/// whole; a URL's userinfo password; after a credential marker's
/// separator (`password=`, `token: `, a JAAS module's options) to the end
/// of the line. Unchanged text is borrowed.
pub fn redact_text(s: &str) -> Cow<'_, str> {
    if !might_carry_credential(s) {
        return Cow::Borrowed(s);
    }
    let mut changed = false;
    let out = mask_text(s, &mut |_| changed = true);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(s)
    }
}

/// Masks `s`, telling `found` each masked part.
fn mask_text(s: &str, found: &mut dyn FnMut(&str)) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_key = false;
    let mut first = true;
    for line in s.split('\n') {
        let upper = line.to_ascii_uppercase();
        let begins = upper.contains("-----BEGIN") && upper.contains("PRIVATE KEY");
        if in_key || begins {
            if begins {
                push_line(&mut out, &mut first, REDACTED);
            } else if !upper.contains("-----END") {
                found(line);
            }
            in_key = !upper.contains("-----END");
            continue;
        }
        let mut masked = String::with_capacity(line.len());
        let mut rest = line;
        while let Some(c) = credential_at(rest) {
            masked.push_str(&rest[..c.start]);
            found(&rest[c.start..c.end]);
            masked.push_str(REDACTED);
            rest = &rest[c.end..];
            if rest.is_empty() {
                break;
            }
        }
        masked.push_str(rest);
        push_line(&mut out, &mut first, &masked);
    }
    out
}

fn push_line(out: &mut String, first: &mut bool, line: &str) {
    if !*first {
        out.push('\n');
    }
    *first = false;
    out.push_str(line);
}

fn might_carry_credential(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    l.contains("private key")
        || l.contains("loginmodule")
        || l.contains("://")
        || CREDENTIAL_MARKERS.iter().any(|m| l.contains(m))
}

/// The first credential of `line`, as a byte range.
fn credential_at(line: &str) -> Option<std::ops::Range<usize>> {
    let lower = line.to_ascii_lowercase();
    let mut best: Option<std::ops::Range<usize>> = None;
    let mut consider = |r: std::ops::Range<usize>| {
        if r.start < r.end && best.as_ref().is_none_or(|b| r.start < b.start) {
            best = Some(r);
        }
    };
    let value_from =
        |sep_end: usize| sep_end + (line.len() - sep_end - line[sep_end..].trim_start().len());
    for m in CREDENTIAL_MARKERS {
        let mut from = 0;
        while let Some(i) = lower[from..].find(m) {
            let after = from + i + m.len();
            // A key suffix (`password_file`, `rootPassword"`), quotes and
            // spaces may stand before the separator.
            let tail = &lower[after..];
            let skip = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                .unwrap_or(tail.len());
            let tail2 = &tail[skip..];
            let gap = tail2
                .find(|c: char| c != ' ' && c != '"' && c != '\'' && c != '\t')
                .unwrap_or(tail2.len());
            if matches!(tail2[gap..].chars().next(), Some('=' | ':')) {
                // `password: ` with nothing after it is only a key.
                consider(value_from(after + skip + gap + 1)..line.len());
            }
            from = after;
        }
    }
    if let Some(i) = lower.find("loginmodule") {
        // A JAAS module's options carry the credentials.
        consider(value_from(i + "loginmodule".len())..line.len());
    }
    // scheme://user:password@host
    let mut from = 0;
    while let Some(i) = lower[from..].find("://") {
        let start = from + i + 3;
        let auth_end = lower[start..]
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .map_or(lower.len(), |e| start + e);
        if let Some(at) = lower[start..auth_end].rfind('@') {
            if let Some(colon) = lower[start..start + at].find(':') {
                consider(start + colon + 1..start + at);
            }
        }
        from = start;
    }
    best
}

/// Removes the literal secret strings of a desired state from free text
/// (error messages, helm's stderr) before it leaves: logs, Events, the
/// journal, `/readyz`, metrics.
#[derive(Clone, Debug, Default)]
pub struct Scrubber {
    /// Longest first, so that a secret containing another goes whole.
    secrets: Vec<String>,
}

impl Scrubber {
    /// Shorter strings, numbers and booleans are too likely to be ordinary
    /// text to remove everywhere (a `token: {ttl: 3600}` must not blank
    /// every 3600); the structural rule still masks them where they stand.
    pub const MIN_LEN: usize = 6;

    pub fn new(mut secrets: Vec<String>) -> Scrubber {
        let ordinary = |s: &str| {
            s.parse::<f64>().is_ok()
                || matches!(
                    s.to_ascii_lowercase().as_str(),
                    "true" | "false" | "null" | "enabled" | "disabled"
                )
        };
        secrets.retain(|s| s.chars().count() >= Scrubber::MIN_LEN && s != REDACTED && !ordinary(s));
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Scrubber { secrets }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every known secret replaced and credentials masked.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = redact_text(text).into_owned();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_on_the_path_and_secret_names_make_values_secret() {
        let r = Redactor::default();
        let v = json!({
            "database": {"password": "p1", "host": "db"},
            "tls": {"key": "k1"},
            "env": [{"name": "DB_PASSWORD", "value": "p2"}, {"name": "MODE", "value": "fast"}],
            "auth": {"rootPassword": "p3"},
            "list": [{"secretRef": {"x": "p4"}}],
            "n": {"token": 1234567}
        });
        let shown = r.redact_tree(&v, false).to_string();
        for s in ["p1", "k1", "p2", "p3", "p4", "1234567"] {
            assert!(!shown.contains(&format!("\"{s}\"")), "{s} in {shown}");
        }
        assert!(!shown.contains("1234567"));
        assert!(
            shown.contains("\"db\"") && shown.contains("\"fast\""),
            "{shown}"
        );
    }

    #[test]
    fn credentials_in_text_are_masked_from_the_credential_on() {
        let cases = [
            (
                "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"u\" password=\"hunter22\";",
                "hunter22",
            ),
            ("mongodb://admin:hunter22@db:27017/x", "hunter22"),
            ("url=jdbc:mysql://db/x?user=u&password=hunter22", "hunter22"),
            (
                "a\n-----BEGIN RSA PRIVATE KEY-----\nMIIhunter22\n-----END RSA PRIVATE KEY-----\nb",
                "hunter22",
            ),
            ("[client]\npassword = hunter22\nport = 3306", "hunter22"),
        ];
        for (text, secret) in cases {
            let m = redact_text(text);
            assert!(!m.contains(secret), "{text:?} -> {m:?}");
            assert!(m.contains(REDACTED), "{m}");
        }
        assert_eq!(redact_text("plain text: ok"), "plain text: ok");
        assert_eq!(redact_text("user@example.com"), "user@example.com");
        let m = redact_text("[client]\npassword = hunter22\nport = 3306");
        assert!(m.contains("port = 3306"), "other lines stay: {m}");
    }

    #[test]
    fn stack_patterns_add_keys() {
        let r = Redactor::with_patterns(["*_dsn", "licence"]);
        assert!(r.is_secret_key("SENTRY_DSN"));
        assert!(r.is_secret_key("Licence"));
        assert!(!r.is_secret_key("licences"));
        assert!(!r.is_secret_key("replicas"));
    }

    #[test]
    fn operations_are_masked_by_path_and_by_content() {
        let r = Redactor::default();
        let ops = json!([
            {"op": "replace", "path": "/spec/users/0/password", "value": "hunter22"},
            {"op": "add", "path": "/spec/config", "value": {"tls": {"key": "k"}}},
            {"op": "replace", "path": "/spec/replicas", "value": 3}
        ]);
        let m = r.redact_operations(&ops, false);
        let s = m.to_string();
        assert!(!s.contains("hunter22") && !s.contains("\"k\""), "{s}");
        assert_eq!(m[2]["value"], 3);
        assert_eq!(m[0]["path"], "/spec/users/0/password");
    }

    #[test]
    fn the_scrubber_removes_known_secrets_from_free_text() {
        let r = Redactor::default();
        let mut secrets = Vec::new();
        r.secret_strings(
            &json!({"auth": {"rootPassword": "hunter22"}, "a": "b", "url": "http://u:zzz9pw@h/"}),
            false,
            &mut secrets,
        );
        let s = Scrubber::new(secrets);
        let t = s.scrub("Error: template: x: value hunter22 is bad; zzz9pw");
        assert!(!t.contains("hunter22") && !t.contains("zzz9pw"), "{t}");
    }
}
