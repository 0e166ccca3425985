//! Opaque keyset cursors: the last row's sort value and id, signed with a
//! server key over the principal, the resource type, the filters and the
//! sort they were issued for. A cursor used under anything else — another
//! principal, other filters, another sort — or altered is refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use partnerdb_store::Value;
use partnerdb_store::records::After;
use sha2::Sha256;

use crate::auth::constant_time_eq;

/// Signs and checks cursors.
#[derive(Clone)]
pub struct CursorKey([u8; 32]);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

impl CursorKey {
    /// A key from its stored hex form (64 hex digits).
    pub fn from_hex(text: &str) -> Option<CursorKey> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut key = [0u8; 32];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let digits = std::str::from_utf8(pair).ok()?;
            key[i] = u8::from_str_radix(digits, 16).ok()?;
        }
        Some(CursorKey(key))
    }

    fn tag(&self, payload: &[u8], binding: &str) -> [u8; 16] {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mac) => mac,
            // HMAC accepts keys of any length.
            Err(_) => return [0; 16],
        };
        mac.update(payload);
        mac.update(&[0]);
        mac.update(binding.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&full[..16]);
        tag
    }

    /// A cursor after `after`, for the list described by `binding`.
    pub fn issue(&self, after: &After, binding: &str) -> String {
        let value = match &after.value {
            Value::Int(n) => serde_json::Value::from(*n),
            Value::Text(text) => serde_json::Value::from(text.as_str()),
            Value::Null | Value::NullInt => serde_json::Value::Null,
        };
        let payload = serde_json::json!([value, after.id]).to_string();
        let tag = self.tag(payload.as_bytes(), binding);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The position a cursor stands for, if it was issued for `binding`.
    pub fn check(&self, cursor: &str, binding: &str) -> Option<After> {
        if cursor.len() > 1024 {
            return None;
        }
        let (payload, tag) = cursor.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        if !constant_time_eq(&tag, &self.tag(&payload, binding)) {
            return None;
        }
        let parsed: (serde_json::Value, String) = serde_json::from_slice(&payload).ok()?;
        let value = match parsed.0 {
            serde_json::Value::Number(n) => Value::Int(n.as_i64()?),
            serde_json::Value::String(text) => Value::Text(text),
            serde_json::Value::Null => Value::Null,
            _ => return None,
        };
        Some(After {
            value,
            id: parsed.1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> CursorKey {
        CursorKey([byte; 32])
    }

    #[test]
    fn cursors_round_trip_and_refuse_other_bindings() {
        let after = After {
            value: Value::Text("acme".into()),
            id: "p1".into(),
        };
        let cursor = key(1).issue(&after, "u1|partner|status=active|name");
        assert_eq!(
            key(1).check(&cursor, "u1|partner|status=active|name"),
            Some(after)
        );
        assert_eq!(key(1).check(&cursor, "u2|partner|status=active|name"), None);
        assert_eq!(key(1).check(&cursor, "u1|partner||name"), None);
        assert_eq!(key(2).check(&cursor, "u1|partner|status=active|name"), None);
        let mut forged = cursor.clone();
        forged.insert(1, 'x');
        assert_eq!(key(1).check(&forged, "u1|partner|status=active|name"), None);
        assert_eq!(key(1).check("garbage", "x"), None);
    }

    #[test]
    fn keys_come_from_hex() {
        assert!(CursorKey::from_hex(&"ab".repeat(32)).is_some());
        assert!(CursorKey::from_hex("ab").is_none());
        assert!(CursorKey::from_hex(&"zz".repeat(32)).is_none());
    }
}
