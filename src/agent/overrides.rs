//! Per-Pod limit overrides from a node-local directory: each `*.json` file
//! names a Pod and the rates it should have, and the agent applies them to
//! the running attachment in place (`natra set`'s path: no re-attach) on
//! every reconciliation round, until the file goes. The limits the Pod was
//! added with stay in force for what a file does not set.
//!
//! ```json
//! {"pod": "team-a/web", "egress": "10M"}
//! {"containerId": "4f2d5c9a", "interface": "eth0", "ingress": "50M", "egress": "0"}
//! ```
//! Rates are Kubernetes quantities in bit/s, as the annotations write them;
//! `0` lifts a limit. A file naming a Pod not on this node is skipped.
use std::fs;
use std::path::Path;

use serde::Deserialize;

use crate::cli::set::{self, Selector};
use crate::dataplane::{self, Direction};
use crate::error::{Context, Error, ErrorKind, Result};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Override {
    pod: Option<String>,
    container_id: Option<String>,
    interface: Option<String>,
    network: Option<String>,
    ingress: Option<String>,
    egress: Option<String>,
}

/// Applies every override in `dir` that differs from what runs; each entry
/// says what one file changed, or why it failed.
pub fn apply_all(dir: &Path, root: &Path) -> Vec<Result<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            return vec![Err(Error::new(
                ErrorKind::Io,
                format!("cannot list {}", dir.display()),
            )
            .with_details(e))]
        }
    };
    let all = match dataplane::list_attachments(root) {
        Ok(all) => all,
        Err(e) => return vec![Err(e)],
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let applied = (|| -> Result<Option<String>> {
            let text = fs::read(&path)
                .context(ErrorKind::Io, format!("cannot read {}", path.display()))?;
            let o: Override = serde_json::from_slice(&text).context(
                ErrorKind::Decode,
                format!("{} is not an override", path.display()),
            )?;
            let sel = Selector {
                pod: o.pod,
                container_id: o.container_id,
                interface: o.interface,
                network: o.network,
            };
            let Ok(target) = set::find(&all, &sel) else {
                return Ok(None); // not on this node (or not yet)
            };
            let want = set::limits_for(target, o.ingress.as_deref(), o.egress.as_deref())?;
            let runs = |d: Direction| target.directions.get(d).limit.map(|l| l.rate_bytes_per_sec);
            let wants = |d: Direction| d.limit(&want).map(|p| p.rate_bytes_per_sec);
            if Direction::ALL.iter().all(|&d| runs(d) == wants(d)) {
                return Ok(None);
            }
            set::apply(target, &want).map(Some)
        })();
        match applied {
            Ok(Some(said)) => out.push(Ok(said)),
            Ok(None) => {}
            Err(e) => out.push(Err(e)),
        }
    }
    out
}
