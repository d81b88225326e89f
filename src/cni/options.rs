//! natra's attach options, read from the raw netconf on stdin and overridden
//! by the environment (netconf < env):
//!
//! | netconf | env | values |
//! |---|---|---|
//! | `attachMode` | `NATRA_ATTACH_MODE` | `auto` (default), `tcx-hostside`, `tcx-podside`, `clsact-hostside`, `clsact-podside` |
//! | `edtPacing` | `NATRA_EDT_PACING` | `auto` (default), `on`, `off` |
//!
//! An unknown value is refused with CNI error 7 naming the field (or the
//! variable) and the value. An empty variable counts as unset.
use serde::Deserialize;
use serde_json::Value;

use crate::dataplane::modes::{AttachMode, EdtPacing, ModeChoice, Options};
use crate::error::{Context, Error, ErrorKind, Result};

pub const ATTACH_MODE_ENV: &str = "NATRA_ATTACH_MODE";
pub const EDT_PACING_ENV: &str = "NATRA_EDT_PACING";

/// The netconf fields, raw: a wrong type is reported like a wrong value.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOptions {
    #[serde(default)]
    attach_mode: Option<Value>,
    #[serde(default)]
    edt_pacing: Option<Value>,
}

/// The options of this invocation: stdin's netconf, then the environment.
pub fn parse(stdin: &[u8]) -> Result<Options> {
    parse_with_env(stdin, |name| std::env::var(name).ok())
}

/// [`parse`] with the environment given as a lookup (for tests).
pub fn parse_with_env(stdin: &[u8], env: impl Fn(&str) -> Option<String>) -> Result<Options> {
    let raw: RawOptions = serde_json::from_slice(stdin)
        .context(ErrorKind::Decode, "cannot decode the network configuration")?;
    let mut opts = Options::default();
    if let Some(value) = raw.attach_mode {
        opts.mode = mode_choice("attachMode", &netconf_string("attachMode", value)?)?;
    }
    if let Some(value) = raw.edt_pacing {
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
                "one of auto, tcx-hostside, tcx-podside, clsact-hostside, clsact-podside",
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

    #[test]
    fn defaults_are_auto() {
        let opts = parse_with_env(br#"{"cniVersion":"1.0.0"}"#, no_env).unwrap();
        assert_eq!(opts, Options::default());
        assert_eq!(opts.mode, ModeChoice::Auto);
        assert_eq!(opts.edt, EdtPacing::Auto);
    }

    #[test]
    fn netconf_fields_are_read() {
        let opts = parse_with_env(
            br#"{"cniVersion":"1.0.0","attachMode":"clsact-podside","edtPacing":"off"}"#,
            no_env,
        )
        .unwrap();
        assert_eq!(opts.mode, ModeChoice::Explicit(AttachMode::ClsactPodside));
        assert_eq!(opts.edt, EdtPacing::Off);
    }

    #[test]
    fn env_wins_over_netconf_and_empty_env_is_unset() {
        let stdin = br#"{"attachMode":"clsact-podside","edtPacing":"off"}"#;
        let opts = parse_with_env(stdin, |name| match name {
            ATTACH_MODE_ENV => Some("tcx-hostside".into()),
            EDT_PACING_ENV => Some("on".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(opts.mode, ModeChoice::Explicit(AttachMode::TcxHostside));
        assert_eq!(opts.edt, EdtPacing::On);
        let opts = parse_with_env(stdin, |_| Some(String::new())).unwrap();
        assert_eq!(opts.mode, ModeChoice::Explicit(AttachMode::ClsactPodside));
    }

    #[test]
    fn unknown_values_name_the_field_and_value() {
        for (stdin, field, value) in [
            (&br#"{"attachMode":"tcx"}"#[..], "attachMode", "tcx"),
            (br#"{"edtPacing":"yes"}"#, "edtPacing", "yes"),
            (br#"{"edtPacing":true}"#, "edtPacing", "true"),
        ] {
            let e = parse_with_env(stdin, no_env).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidConfig, "{e}");
            assert!(e.msg.contains(field) && e.msg.contains(value), "{e}");
        }
        let e = parse_with_env(b"{}", |name| {
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
