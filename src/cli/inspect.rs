//! `natra inspect` and `natra stats`: what natra has attached on this node,
//! read back from bpffs and the kernel (links, maps through their BTF).
use std::fs;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use libbpf_rs::btf::{Btf, TypeId};
use libbpf_rs::query::LinkTypeInfo;
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle};
use serde_json::{json, Map, Value};

use crate::dataplane::pins::{self, BUCKET_MAP, CONFIG_MAP, COUNTERS_MAP};
use crate::dataplane::record::ATTACHMENT_MAP;
use crate::dataplane::{btf_json, Direction};
use crate::error::{Context, Error, ErrorKind, Result};
use crate::netlink;

/// The real directories (never symlinks) in `dir`, sorted.
fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(Error::new(ErrorKind::Io, "cannot list the pin root")
                .with_details(format!("{}: {e}", dir.display())))
        }
    };
    dirs.sort();
    Ok(dirs)
}

/// Every attachment under the pin root, as JSON: `<root>/<network>/<id>:<if>`,
/// and the legacy `<root>/<id>:<if>` of natra before network keying.
pub fn inspect_all(root: &Path) -> Result<Vec<Value>> {
    if !pins::trusted_root(root)? {
        return Ok(Vec::new());
    }
    let mut all = Vec::new();
    for dir in subdirs(root)? {
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        if name.contains(':') {
            all.push(inspect_one(&dir, None)?);
            continue;
        }
        let network = name.replace('~', ".");
        for attachment in subdirs(&dir)? {
            all.push(inspect_one(&attachment, Some(&network))?);
        }
    }
    Ok(all)
}

/// `<id>:<ifname>` with `~` back to `.`.
fn decode_dir_name(dir: &Path) -> (String, String) {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (id, ifname) = name.rsplit_once(':').unwrap_or((&name, ""));
    (id.replace('~', "."), ifname.replace('~', "."))
}

fn inspect_one(dir: &Path, network: Option<&str>) -> Result<Value> {
    let (container_id, ifname) = decode_dir_name(dir);
    let attachment = pins::AttachmentPins {
        dir: dir.to_path_buf(),
    };
    let mut memlock = 0u64;
    let mut prog_id = None;
    let mut directions = Map::new();
    for d in Direction::ALL {
        let pin = attachment.link(d.program_name());
        let mut entry = Map::new();
        if pin.exists() {
            let link = Link::open(&pin).context(
                ErrorKind::Dataplane,
                format!("cannot open {}", pin.display()),
            )?;
            memlock += fdinfo_memlock(link.as_fd().as_raw_fd());
            let info = link
                .info()
                .context(ErrorKind::Dataplane, "cannot read link info")?;
            prog_id.get_or_insert(info.prog_id);
            entry.insert("linkId".into(), json!(info.id));
            entry.insert("progId".into(), json!(info.prog_id));
            if let LinkTypeInfo::Tcx(tcx) = info.info {
                let hook = if tcx.attach_type as u32 == libbpf_sys::BPF_TCX_INGRESS {
                    "ingress"
                } else {
                    "egress"
                };
                entry.insert("attach".into(), json!(format!("tcx {hook}")));
                entry.insert("ifindex".into(), json!(tcx.ifindex));
                // Host-side links name a host interface; pod-side ones don't resolve here.
                let dev = netlink::link_by_index(tcx.ifindex).ok().map(|l| l.name);
                entry.insert("device".into(), json!(dev));
            }
            if let Some(mem) = prog_memlock(info.prog_id) {
                memlock += mem;
            }
        } else {
            entry.insert("attach".into(), Value::Null);
        }
        directions.insert(direction_label(d).into(), Value::Object(entry));
    }

    // clsact modes pin their programs instead of links.
    for d in Direction::ALL {
        let pin = crate::dataplane::modes::prog_pin(&attachment, d);
        if let Some(id) = pinned_prog_id(&pin) {
            prog_id.get_or_insert(id);
            if let Some(Value::Object(entry)) = directions.get_mut(direction_label(d)) {
                entry.insert("progId".into(), json!(id));
            }
            memlock += prog_memlock(id).unwrap_or(0);
        }
    }
    let btf = prog_id.and_then(|id| Btf::from_prog_id(id).ok());
    let record = MapHandle::from_pinned_path(attachment.map(ATTACHMENT_MAP))
        .ok()
        .and_then(|map| {
            memlock += fdinfo_memlock(map.as_fd().as_raw_fd());
            let ty = TypeId::from(map.info().ok()?.info.btf_value_type_id);
            let bytes = map.lookup(&0u32.to_ne_bytes(), MapFlags::ANY).ok()??;
            Some(btf_json::render(btf.as_ref()?, ty, &bytes))
        });
    for (map_name, field, per_cpu) in [
        (CONFIG_MAP, "config", false),
        (BUCKET_MAP, "bucket", false),
        (COUNTERS_MAP, "counters", true),
    ] {
        let path = attachment.map(map_name);
        let Ok(map) = MapHandle::from_pinned_path(&path) else {
            continue;
        };
        memlock += fdinfo_memlock(map.as_fd().as_raw_fd());
        let info = map
            .info()
            .context(ErrorKind::Dataplane, "cannot read map info")?;
        let value_type = TypeId::from(info.info.btf_value_type_id);
        for d in Direction::ALL {
            let key = d.index().to_ne_bytes();
            let bytes = if per_cpu {
                map.lookup_percpu(&key, MapFlags::ANY)
                    .ok()
                    .flatten()
                    .map(|cpus| sum_u64_words(&cpus))
            } else {
                map.lookup(&key, MapFlags::ANY).ok().flatten()
            };
            let rendered = match (&btf, bytes) {
                (Some(btf), Some(bytes)) => btf_json::render(btf, value_type, &bytes),
                _ => Value::Null,
            };
            if let Some(Value::Object(entry)) = directions.get_mut(direction_label(d)) {
                entry.insert(field.into(), rendered);
            }
        }
    }
    // The Pod as the runtime named it at ADD (CNI_ARGS); null before records
    // carried it.
    let pod = record
        .as_ref()
        .map(|r| r["pod"].clone())
        .unwrap_or(Value::Null);
    Ok(json!({
        "network": network,
        "containerId": container_id,
        "ifname": ifname,
        "pod": pod,
        "pinDir": dir,
        "bpfMemlockBytes": memlock,
        "attachment": record,
        "directions": directions,
    }))
}

pub fn direction_label(d: Direction) -> &'static str {
    d.program_name()
}

/// Per-CPU counters summed: every field of natra_counters is a u64.
fn sum_u64_words(per_cpu: &[Vec<u8>]) -> Vec<u8> {
    let len = per_cpu.first().map_or(0, Vec::len);
    let mut sum = vec![0u64; len / 8];
    for cpu in per_cpu {
        for (i, word) in cpu.chunks_exact(8).enumerate() {
            sum[i] = sum[i].wrapping_add(u64::from_ne_bytes(word.try_into().unwrap()));
        }
    }
    sum.iter().flat_map(|w| w.to_ne_bytes()).collect()
}

/// What the kernel charges an object's fd for (`memlock:` in fdinfo).
fn fdinfo_memlock(fd: i32) -> u64 {
    fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("memlock:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The id of a program pinned at `pin`, if any.
fn pinned_prog_id(pin: &Path) -> Option<u32> {
    use std::ffi::CString;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    if !pin.exists() {
        return None;
    }
    let path = CString::new(pin.as_os_str().as_bytes()).ok()?;
    // SAFETY: path is a NUL-terminated string that outlives the call.
    let fd = unsafe { libbpf_sys::bpf_obj_get(path.as_ptr()) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this fd to us; OwnedFd closes it once.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of::<libbpf_sys::bpf_prog_info>() as u32;
    // SAFETY: info is a writable bpf_prog_info and len its size, as the
    // syscall expects; the kernel writes at most len bytes.
    let rc = unsafe {
        libbpf_sys::bpf_obj_get_info_by_fd(
            fd.as_raw_fd(),
            (&mut info as *mut libbpf_sys::bpf_prog_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(info.id)
}

fn prog_memlock(prog_id: u32) -> Option<u64> {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: plain syscall wrapper taking an id, no pointers.
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(prog_id) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this fd to us; OwnedFd closes it once.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Some(fdinfo_memlock(fd.as_raw_fd()))
}

/// A label value in the text exposition format: `\`, `"` and newlines escaped.
fn label_value(v: &Value) -> String {
    v.as_str()
        .unwrap_or_default()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `namespace/name ` of the Pod, or nothing where the runtime gave no name.
fn pod_prefix(a: &Value) -> String {
    match (a["pod"]["namespace"].as_str(), a["pod"]["name"].as_str()) {
        (Some(ns), Some(name)) if !name.is_empty() => format!("{ns}/{name} "),
        _ => String::new(),
    }
}

/// `natra stats --prometheus`: node_exporter textfile-collector format.
pub fn prometheus(attachments: &[Value]) -> String {
    let mut out = String::new();
    for (metric, suffix, help) in [
        (
            "natra_packets_total",
            "_packets",
            "Packets seen by natra, by verdict.",
        ),
        (
            "natra_bytes_total",
            "_bytes",
            "Wire bytes seen by natra, by verdict.",
        ),
    ] {
        out.push_str(&format!(
            "# HELP {metric} {help}\n# TYPE {metric} counter\n"
        ));
        for a in attachments {
            for (dir, entry) in a["directions"].as_object().into_iter().flatten() {
                let Some(counters) = entry["counters"].as_object() else {
                    continue;
                };
                for (field, value) in counters {
                    let Some(verdict) = field.strip_suffix(suffix) else {
                        continue;
                    };
                    out.push_str(&format!(
                        "{metric}{{namespace=\"{}\",pod=\"{}\",container_id=\"{}\",ifname=\"{}\",direction=\"{dir}\",verdict=\"{verdict}\"}} {}\n",
                        label_value(&a["pod"]["namespace"]),
                        label_value(&a["pod"]["name"]),
                        label_value(&a["containerId"]),
                        label_value(&a["ifname"]),
                        value
                    ));
                }
            }
        }
    }
    out
}

/// `natra stats`: one line per Pod interface and direction.
pub fn stats_table(attachments: &[Value]) -> String {
    let mut out = String::new();
    for a in attachments {
        for (dir, entry) in a["directions"].as_object().into_iter().flatten() {
            let Some(counters) = entry["counters"].as_object() else {
                continue;
            };
            let fields: Vec<String> = counters
                .iter()
                .filter(|(k, v)| k.ends_with("_packets") && v.as_u64() != Some(0))
                .map(|(k, v)| format!("{}={v}", k.trim_end_matches("_packets")))
                .collect();
            out.push_str(&format!(
                "{}{}:{} {dir}: {}\n",
                pod_prefix(a),
                a["containerId"].as_str().unwrap_or_default(),
                a["ifname"].as_str().unwrap_or_default(),
                if fields.is_empty() {
                    "no packets".to_string()
                } else {
                    fields.join(" ")
                }
            ));
        }
    }
    out
}

/// `natra inspect` without --json: a short human summary.
pub fn inspect_text(attachments: &[Value]) -> String {
    let mut out = String::new();
    for a in attachments {
        out.push_str(&format!(
            "{}{} {}  mode {} flags {}  (pins {}, BPF memlock {} B)\n",
            pod_prefix(a),
            a["containerId"].as_str().unwrap_or_default(),
            a["ifname"].as_str().unwrap_or_default(),
            a["attachment"]["mode"].as_str().unwrap_or("?"),
            a["attachment"]["flags"],
            a["pinDir"].as_str().unwrap_or_default(),
            a["bpfMemlockBytes"]
        ));
        for (dir, e) in a["directions"].as_object().into_iter().flatten() {
            if e["config"]["rate_bytes_per_sec"].as_u64().unwrap_or(0) == 0 {
                out.push_str(&format!("  {dir}: not limited\n"));
                continue;
            }
            let c = &e["config"];
            out.push_str(&format!(
                "  {dir}: {} on {} (ifindex {}), rate {} B/s, burst {} B\n",
                e["attach"].as_str().unwrap_or("?"),
                e["device"].as_str().unwrap_or("?"),
                e["ifindex"],
                c["rate_bytes_per_sec"],
                c["burst_bytes"],
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment(pod: Value) -> Value {
        json!({
            "containerId": "c1", "ifname": "eth0", "pod": pod,
            "directions": {"pod_egress": {"counters": {"dropped_packets": 7, "dropped_bytes": 700}}}
        })
    }

    #[test]
    fn series_carry_the_pods_namespace_and_name_escaped() {
        let prom = prometheus(&[attachment(
            json!({"namespace": "team-a", "name": "we\"b\\0\n", "uid": "u"}),
        )]);
        let line = prom
            .lines()
            .find(|l| l.starts_with("natra_packets_total{"))
            .unwrap();
        assert_eq!(
            line,
            r#"natra_packets_total{namespace="team-a",pod="we\"b\\0\n",container_id="c1",ifname="eth0",direction="pod_egress",verdict="dropped"} 7"#
        );
        assert!(
            stats_table(&[attachment(json!({"namespace": "team-a", "name": "web"}))])
                .starts_with("team-a/web c1:eth0 pod_egress: dropped=7")
        );
    }

    #[test]
    fn without_a_pod_name_the_labels_are_empty_and_text_shows_the_container() {
        let prom = prometheus(&[attachment(Value::Null)]);
        assert!(
            prom.contains(r#"{namespace="",pod="",container_id="c1""#),
            "{prom}"
        );
        assert!(stats_table(&[attachment(Value::Null)]).starts_with("c1:eth0 pod_egress"));
    }
}
