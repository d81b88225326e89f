//! natra's attach options, read from the decoded netconf and overridden
//! by the environment (netconf < env):
//!
//! | netconf | env | values |
//! |---|---|---|
//! | `attachMode` | `NATRA_ATTACH_MODE` | `auto` (default), `tcx-hostside`, `tcx-podside`, `clsact-hostside`, `clsact-podside` |
//! | `edtPacing` | `NATRA_EDT_PACING` | `auto` (default), `on`, `off` |
//!
//! An unknown value is refused with CNI error 7 naming the field (or the
//! variable) and the value. An empty variable counts as unset.
use serde_json::Value;

use super::config::NetConf;
use crate::dataplane::modes::{AttachMode, EdtPacing, ModeChoice, Options};
use crate::error::{Error, ErrorKind, Result};

pub const ATTACH_MODE_ENV: &str = "NATRA_ATTACH_MODE";
pub const EDT_PACING_ENV: &str = "NATRA_EDT_PACING";

/// The options of this invocation: the netconf's, then the environment.
pub fn parse(conf: &NetConf) -> Result<Options> {
    parse_with_env(conf, |name| std::env::var(name).ok())
}

/// [`parse`] with the environment given as a lookup (for tests).
pub fn parse_with_env(conf: &NetConf, env: impl Fn(&str) -> Option<String>) -> Result<Options> {
    let mut opts = Options::default();
    if let Some(value) = conf.attach_mode.clone() {
        opts.mode = mode_choice("attachMode", &netconf_string("attachMode", value)?)?;
    }
    if let Some(value) = conf.edt_pacing.clone() {
        opts.edt = edt_pacing("edtPacing", &netconf_string("edtPacing", value)?)?;
    }
    if let Some(value) = env(ATTACH_MODE_ENV).filter(|v| !v.is_empty()) {
        opts.mode = mode_choice(ATTACH_MODE_ENV, &value)?;
    }
    if let Some(value) = env(EDT_PACING_ENV).filter(|v| !v.is_empty()) {
        opts.edt = edt_pacing(EDT_PACING_ENV, &value)?;
    }
    Ok(opts)
}

fn netconf_string(field: &str, value: Value) -> Result<String> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(invalid(field, &other.to_string(), "a string")),
    }
}

fn mode_choice(field: &str, value: &str) -> Result<ModeChoice> {
    if value == "auto" {
        return Ok(ModeChoice::Auto);
    }
    AttachMode::parse(value)
        .map(ModeChoice::Explicit)
        .ok_or_else(|| {
            invalid(
                field,
                value,
                "one of auto, tcx-hostside, tcx-podside, tcx-split, clsact-hostside, clsact-podside",
            )
        })
}

fn edt_pacing(field: &str, value: &str) -> Result<EdtPacing> {
    EdtPacing::parse(value).ok_or_else(|| invalid(field, value, "one of auto, on, off"))
}

fn invalid(field: &str, value: &str, expected: &str) -> Error {
    Error::new(
        ErrorKind::InvalidConfig,
        format!("invalid {field} {value:?}"),
    )
    .with_details(format!("expected {expected}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// A netconf of `fields` (a JSON object's members, or nothing).
    fn conf(fields: &[u8]) -> NetConf {
        let mut doc: serde_json::Map<String, Value> = serde_json::from_slice(fields).unwrap();
        doc.entry("cniVersion").or_insert("1.0.0".into());
        NetConf::decode(Value::Object(doc).to_string().as_bytes()).unwrap()
    }

    #[test]
    fn defaults_are_auto() {
        let opts = parse_with_env(&conf(br#"{"cniVersion":"1.0.0"}"#), no_env).unwrap();
        assert_eq!(opts, Options::default());
        assert_eq!(opts.mode, ModeChoice::Auto);
        assert_eq!(opts.edt, EdtPacing::Auto);
    }

    #[test]
    fn netconf_fields_are_read() {
        let opts = parse_with_env(
            &conf(br#"{"cniVersion":"1.0.0","attachMode":"clsact-podside","edtPacing":"off"}"#),
            no_env,
        )
        .unwrap();
        assert_eq!(opts.mode, ModeChoice::Explicit(AttachMode::ClsactPodside));
        assert_eq!(opts.edt, EdtPacing::Off);
    }

    #[test]
    fn env_wins_over_netconf_and_empty_env_is_unset() {
        let stdin = br#"{"attachMode":"clsact-podside","edtPacing":"off"}"#;
        let opts = parse_with_env(&conf(stdin), |name| match name {
            ATTACH_MODE_ENV => Some("tcx-hostside".into()),
            EDT_PACING_ENV => Some("on".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(opts.mode, ModeChoice::Explicit(AttachMode::TcxHostside));
        assert_eq!(opts.edt, EdtPacing::On);
        let opts = parse_with_env(&conf(stdin), |_| Some(String::new())).unwrap();
        assert_eq!(opts.mode, ModeChoice::Explicit(AttachMode::ClsactPodside));
    }

    #[test]
    fn unknown_values_name_the_field_and_value() {
        for (stdin, field, value) in [
            (&br#"{"attachMode":"tcx"}"#[..], "attachMode", "tcx"),
            (br#"{"edtPacing":"yes"}"#, "edtPacing", "yes"),
            (br#"{"edtPacing":true}"#, "edtPacing", "true"),
        ] {
            let e = parse_with_env(&conf(stdin), no_env).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidConfig, "{e}");
            assert!(e.msg.contains(field) && e.msg.contains(value), "{e}");
        }
        let e = parse_with_env(&conf(b"{}"), |name| {
            (name == ATTACH_MODE_ENV).then(|| "sideways".to_owned())
        })
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidConfig);
        assert!(
            e.msg.contains(ATTACH_MODE_ENV) && e.msg.contains("sideways"),
            "{e}"
        );
    }
}
