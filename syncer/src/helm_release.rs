//! Helm releases read straight from their storage Secrets
//! (`sh.helm.release.v1.NAME.vN`, type `helm.sh/release.v1`): the `release`
//! field is base64 of gzip'd JSON. No helm binary is needed to read.

use std::io::Read;

use plimsoll_planner::state::ReleaseState;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("release data is not base64")]
    Base64,
    #[error("release data does not decompress: {0}")]
    Gzip(std::io::Error),
    #[error("release JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("release JSON lacks {0}")]
    Missing(&'static str),
}

/// Standard base64 with or without padding, whitespace ignored (Helm
/// writes it padded; the leniency costs nothing).
pub fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    use base64::engine::{general_purpose, DecodePaddingMode, Engine, GeneralPurpose};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        general_purpose::PAD.with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    LENIENT.decode(compact).ok()
}

/// The release JSON of a storage Secret's `release` field.
fn release_json(release_field: &[u8]) -> Result<serde_json::Value, DecodeError> {
    let raw = base64_decode(release_field).ok_or(DecodeError::Base64)?;
    let json = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .take(64 * 1024 * 1024)
            .read_to_end(&mut out)
            .map_err(DecodeError::Gzip)?;
        out
    } else {
        raw
    };
    Ok(serde_json::from_slice(&json)?)
}

/// A revision left `pending-*`, as [`mark_failed`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRevision {
    pub status: String,
    /// When the helm that began it began (`info.last_deployed`, the
    /// helm's own clock).
    pub begun: String,
}

/// Rewrites a storage Secret's `release` field as Helm writes a failed
/// operation: `info.status` `failed`, `info.description` said. `None` when
/// the revision is not pending (nothing to resolve). Everything else in
/// the release is kept as it was.
pub fn mark_failed(
    release_field: &[u8],
    description: &str,
) -> Result<Option<(Vec<u8>, PendingRevision)>, DecodeError> {
    use base64::Engine;
    use std::io::Write;
    let mut v = release_json(release_field)?;
    let info = v
        .get_mut("info")
        .and_then(|i| i.as_object_mut())
        .ok_or(DecodeError::Missing("info"))?;
    let status = info
        .get("status")
        .and_then(|s| s.as_str())
        .unwrap_or_default()
        .to_string();
    if !status.starts_with("pending-") {
        return Ok(None);
    }
    let begun = info
        .get("last_deployed")
        .and_then(|s| s.as_str())
        .unwrap_or_default()
        .to_string();
    info.insert("status".into(), "failed".into());
    info.insert("description".into(), description.into());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&serde_json::to_vec(&v)?)
        .and_then(|_| gz.finish())
        .map(|bytes| {
            let field = base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into_bytes();
            Some((field, PendingRevision { status, begun }))
        })
        .map_err(DecodeError::Gzip)
}

/// Decodes the `release` field of a Helm storage Secret (the bytes the
/// Kubernetes API returns after its own base64 layer).
pub fn decode_release(release_field: &[u8], namespace: &str) -> Result<ReleaseState, DecodeError> {
    let v = release_json(release_field)?;
    let meta = &v["chart"]["metadata"];
    Ok(ReleaseState {
        name: v["name"]
            .as_str()
            .ok_or(DecodeError::Missing("name"))?
            .to_string(),
        namespace: v["namespace"].as_str().unwrap_or(namespace).to_string(),
        chart: meta["name"]
            .as_str()
            .ok_or(DecodeError::Missing("chart.metadata.name"))?
            .to_string(),
        version: meta["version"]
            .as_str()
            .ok_or(DecodeError::Missing("chart.metadata.version"))?
            .to_string(),
        revision: v["version"]
            .as_u64()
            .ok_or(DecodeError::Missing("version"))? as u32,
        status: v["info"]["status"].as_str().unwrap_or_default().to_string(),
        values: match &v["config"] {
            serde_json::Value::Null => serde_json::Value::Object(Default::default()),
            other => other.clone(),
        },
        manifest: v["manifest"].as_str().unwrap_or_default().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn b64(bytes: &[u8]) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into_bytes()
    }

    #[test]
    fn decodes_gzipped_release_json() {
        let json = br#"{"name":"demo","namespace":"ns","version":3,"info":{"status":"deployed"},
                        "chart":{"metadata":{"name":"test-app","version":"1.1.0"}},"config":{"lrc":{"persistence":{"size":"12Gi"}}}}"#;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json).unwrap();
        let field = b64(&gz.finish().unwrap());
        let r = decode_release(&field, "ns").unwrap();
        assert_eq!(
            (
                r.name.as_str(),
                r.chart.as_str(),
                r.version.as_str(),
                r.revision
            ),
            ("demo", "test-app", "1.1.0", 3)
        );
        assert_eq!(r.status, "deployed");
        assert_eq!(r.values["lrc"]["persistence"]["size"], "12Gi");
        assert!(decode_release(b"not base64!", "ns").is_err());
        // Unpadded and wrapped input decodes the same.
        let unpadded: Vec<u8> = field.iter().copied().filter(|&c| c != b'=').collect();
        let wrapped: Vec<u8> = unpadded
            .chunks(60)
            .flat_map(|c| c.iter().copied().chain([b'\n']))
            .collect();
        assert_eq!(decode_release(&wrapped, "ns").unwrap().revision, 3);
    }

    fn field(json: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json).unwrap();
        b64(&gz.finish().unwrap())
    }

    #[test]
    fn a_pending_revision_is_marked_failed_and_nothing_else_changes() {
        let json = br#"{"name":"demo","namespace":"ns","version":4,
            "info":{"status":"pending-upgrade","description":"Preparing upgrade","last_deployed":"2026-12-06T22:13:30Z"},
            "chart":{"metadata":{"name":"test-app","version":"1.1.0"}},"config":{"a":1},"manifest":"kind: X\n"}"#;
        let (out, pending) = mark_failed(&field(json), "interrupted").unwrap().unwrap();
        assert_eq!(
            pending,
            PendingRevision {
                status: "pending-upgrade".into(),
                begun: "2026-12-06T22:13:30Z".into()
            }
        );
        let before = release_json(&field(json)).unwrap();
        let mut after = release_json(&out).unwrap();
        assert_eq!(after["info"]["status"], "failed");
        assert_eq!(after["info"]["description"], "interrupted");
        after["info"]["status"] = before["info"]["status"].clone();
        after["info"]["description"] = before["info"]["description"].clone();
        assert_eq!(after, before, "only the status and description change");
        let r = decode_release(&out, "ns").unwrap();
        assert_eq!((r.status.as_str(), r.revision), ("failed", 4));
        // Not pending: left alone.
        for status in ["deployed", "failed", "superseded"] {
            let json = format!(r#"{{"info":{{"status":"{status}"}}}}"#);
            assert!(mark_failed(&field(json.as_bytes()), "x").unwrap().is_none());
        }
        assert!(mark_failed(&field(b"{}"), "x").is_err(), "no info");
    }
}
