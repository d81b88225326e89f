//! Renders map values as JSON through the BTF the kernel holds for them —
//! the same field names `bpftool map dump` prints, with no hand-kept list of
//! fields that could drift from include/natra.h.
use libbpf_rs::btf::types::{Array, Composite, Enum, Int, MemberAttr};
use libbpf_rs::btf::{Btf, BtfKind, BtfType, TypeId};
use serde_json::{Map, Value};

/// `bytes` (one value of the type) as JSON: structs become objects, enums
/// their enumerator's name, integers numbers, `char` arrays strings (up to
/// their first NUL), other arrays lists.
pub fn render(btf: &Btf<'_>, ty: TypeId, bytes: &[u8]) -> Value {
    let Some(t) = btf.type_by_id::<BtfType<'_>>(ty) else {
        return Value::Null;
    };
    render_type(btf, t.skip_mods_and_typedefs(), bytes)
}

fn render_type(btf: &Btf<'_>, t: BtfType<'_>, bytes: &[u8]) -> Value {
    match t.kind() {
        BtfKind::Struct | BtfKind::Union => {
            let Ok(c) = Composite::try_from(t) else {
                return Value::Null;
            };
            let mut obj = Map::new();
            for m in c.iter() {
                let (MemberAttr::Normal { offset } | MemberAttr::BitField { offset, .. }) = m.attr;
                let start = (offset / 8) as usize;
                let name = m
                    .name
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                obj.insert(name, render(btf, m.ty, bytes.get(start..).unwrap_or(&[])));
            }
            Value::Object(obj)
        }
        BtfKind::Int => {
            let Ok(i) = Int::try_from(t) else {
                return Value::Null;
            };
            let size = usize::from(i.bits.div_ceil(8));
            let raw = read_le(bytes, size);
            if matches!(i.encoding, libbpf_rs::btf::types::IntEncoding::Signed) {
                let shift = 64 - 8 * size as u32;
                Value::from(((raw << shift) as i64) >> shift)
            } else {
                Value::from(raw)
            }
        }
        BtfKind::Enum => {
            let Ok(e) = Enum::try_from(t) else {
                return Value::Null;
            };
            let raw = read_le(bytes, 4) as i64;
            let name = e
                .iter()
                .find(|m| m.value == raw)
                .and_then(|m| m.name)
                .map(|n| n.to_string_lossy().into_owned());
            name.map(Value::from).unwrap_or(Value::from(raw))
        }
        BtfKind::Array => {
            let Ok(a) = Array::try_from(t) else {
                return Value::Null;
            };
            let elem = a.contained_type().skip_mods_and_typedefs();
            if elem.kind() == BtfKind::Int && elem.name().is_some_and(|n| n == "char") {
                let text = bytes.get(..a.capacity()).unwrap_or(bytes);
                let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
                return Value::from(String::from_utf8_lossy(&text[..end]).into_owned());
            }
            let size = type_size(elem);
            Value::Array(
                (0..a.capacity())
                    .map(|i| render_type(btf, elem, bytes.get(i * size..).unwrap_or(&[])))
                    .collect(),
            )
        }
        _ => Value::Null,
    }
}

fn type_size(t: BtfType<'_>) -> usize {
    use libbpf_rs::btf::HasSize;
    if let Ok(i) = Int::try_from(t) {
        return usize::from(i.bits.div_ceil(8));
    }
    if let Ok(c) = Composite::try_from(t) {
        return c.size();
    }
    if let Ok(e) = Enum::try_from(t) {
        return e.size();
    }
    0
}

fn read_le(bytes: &[u8], size: usize) -> u64 {
    let mut buf = [0u8; 8];
    let n = size.min(8).min(bytes.len());
    buf[..n].copy_from_slice(&bytes[..n]);
    u64::from_ne_bytes(buf)
}
