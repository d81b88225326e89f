//! `natra set`: change a running Pod interface's limits in place, through
//! its pinned maps (dataplane::set_limits): no re-attach, no packet lost, the
//! bucket's level carried over. The runtime never calls CNI again when an
//! annotation changes, so a live change needs this (or the agent).
use crate::cni::quantity::parse_quantity;
use crate::dataplane::{self, AttachmentView, Direction};
use crate::error::{Error, ErrorKind, Result};
use crate::limits::{pod_limits, PodLimits, RequestedLimit, Tuning};
use crate::units;

/// Which attachment: a Pod by `namespace/name`, or a container ID (a unique
/// prefix will do), and optionally its interface and network.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub pod: Option<String>,
    pub container_id: Option<String>,
    pub interface: Option<String>,
    pub network: Option<String>,
}

impl Selector {
    fn matches(&self, a: &AttachmentView) -> bool {
        let pod_ok = self.pod.as_deref().is_none_or(|want| {
            a.pod
                .as_ref()
                .is_some_and(|p| format!("{}/{}", p.namespace, p.name) == want)
        });
        let id_ok = self
            .container_id
            .as_deref()
            .is_none_or(|id| a.container_id.starts_with(id));
        let if_ok = self.interface.as_deref().is_none_or(|i| a.ifname == i);
        let net_ok = self
            .network
            .as_deref()
            .is_none_or(|n| a.network.as_deref() == Some(n));
        pod_ok && id_ok && if_ok && net_ok
    }
}

/// The one attachment `sel` names among `all`.
pub fn find<'a>(all: &'a [AttachmentView], sel: &Selector) -> Result<&'a AttachmentView> {
    if sel.pod.is_none() && sel.container_id.is_none() {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            "name the Pod: --pod NAMESPACE/NAME or --container-id ID",
        ));
    }
    let found: Vec<&AttachmentView> = all.iter().filter(|a| sel.matches(a)).collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::new(
            ErrorKind::InvalidConfig,
            "no Pod interface natra limits matches",
        )),
        many => Err(Error::new(
            ErrorKind::InvalidConfig,
            format!("{} Pod interfaces match; name one", many.len()),
        )
        .with_details(
            many.iter()
                .map(|a| format!("{}:{}", a.container_id, a.ifname))
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// A direction's new rate: a Kubernetes quantity in bit/s (`10M`), `0` to
/// lift the limit; None keeps what the attachment has.
fn requested(
    flag: &str,
    value: Option<&str>,
    current: &AttachmentView,
    dir: Direction,
) -> Result<RequestedLimit> {
    let now = current.directions.get(dir).limit;
    match value {
        None => Ok(now.map_or(RequestedLimit::default(), |l| RequestedLimit {
            rate_bits: l.rate_bytes_per_sec * 8,
            burst_bits: l.burst_bytes * 8,
        })),
        Some(text) => {
            let rate_bits = parse_quantity(text).ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidConfig,
                    format!("{flag} {text:?} is not a Kubernetes quantity (e.g. 10M, 1Gi)"),
                )
            })?;
            Ok(RequestedLimit {
                rate_bits,
                burst_bits: 0,
            })
        }
    }
}

/// The limits `natra set` writes: each given direction's new rate, the
/// other's as it is.
pub fn limits_for(
    current: &AttachmentView,
    ingress: Option<&str>,
    egress: Option<&str>,
) -> Result<PodLimits> {
    pod_limits(
        requested("--ingress", ingress, current, Direction::PodIngress)?,
        requested("--egress", egress, current, Direction::PodEgress)?,
        &Tuning::default(),
    )
}

/// Applies and says what changed, one line per direction.
pub fn apply(a: &AttachmentView, limits: &PodLimits) -> Result<String> {
    let changed = dataplane::set_view_limits(a, limits)?;
    let who = match &a.pod {
        Some(p) if !p.name.is_empty() => format!("{}/{} ", p.namespace, p.name),
        _ => String::new(),
    };
    let rate = |r: u64| {
        if r == 0 {
            "not limited".to_owned()
        } else {
            units::rate(r)
        }
    };
    Ok(changed
        .iter()
        .map(|c| {
            format!(
                "{who}{}:{} {}: {} -> {}{}\n",
                a.container_id,
                a.ifname,
                c.direction.program_name(),
                rate(c.rate_before),
                rate(c.rate_after),
                if c.level_clamped {
                    " (bucket level lowered into the smaller bucket)"
                } else {
                    ""
                }
            )
        })
        .collect())
}
