//! Column values between JSON and storage, checked against the column's
//! kind: a value that does not fit is refused with its field path and what
//! was expected, never stored half-right.

use partnerdb_store::Value;
use partnerdb_store::schema::{Column, Kind};
use serde_json::{Map, Value as Json};

use crate::error::ServiceError;

/// A request body (`path` empty) or a part of one as a JSON object.
pub(crate) fn object<'a>(
    body: &'a Json,
    path: &str,
) -> Result<&'a Map<String, Json>, ServiceError> {
    body.as_object().ok_or_else(|| {
        let detail = if path.is_empty() {
            "the request body must be a JSON object"
        } else {
            "expected a JSON object"
        };
        ServiceError::invalid("invalid_body", path, detail)
    })
}

/// Refuses the first field of a body that is not in `allowed`, naming it
/// and the fields `what` (`"a proposal"`) has.
pub(crate) fn only(
    object: &Map<String, Json>,
    allowed: &[&str],
    what: &str,
) -> Result<(), ServiceError> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(name) => {
            let listed = match allowed {
                [] => "no fields".to_owned(),
                [one] => (*one).to_owned(),
                [init @ .., last] => format!("{} and {last}", init.join(", ")),
            };
            Err(ServiceError::invalid(
                "unknown_field",
                format!("/{name}"),
                format!("{what} has {listed}, not `{name}`"),
            ))
        }
        None => Ok(()),
    }
}

/// A column's value as JSON.
pub fn to_json(column: &Column, value: &Value) -> Json {
    serde_json::to_value(ColumnValue(column, value)).unwrap_or(Json::Null)
}

/// A column's value, serialized as JSON without building a [`Json`] first:
/// NULL as null, rates as decimal strings, integers as numbers, text as
/// strings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ColumnValue<'a>(pub(crate) &'a Column, pub(crate) &'a Value);

impl serde::Serialize for ColumnValue<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match (self.0.kind, self.1) {
            (_, Value::Null | Value::NullInt) => serializer.serialize_none(),
            (Kind::Rate, Value::Int(ppm)) => serializer.serialize_str(&format_rate(*ppm)),
            (_, Value::Int(n)) => serializer.serialize_i64(*n),
            (_, Value::Text(text)) => serializer.serialize_str(text),
        }
    }
}

/// A JSON value for `column`, checked; `path` names it in errors.
pub fn from_json(column: &Column, json: &Json, path: &str) -> Result<Value, ServiceError> {
    if json.is_null() {
        if column.required || column.default.is_some() {
            return Err(ServiceError::invalid(
                "null_not_allowed",
                path,
                format!("`{}` cannot be null", column.name),
            ));
        }
        return Ok(Value::Null);
    }
    let wrong = |expected: &str| {
        ServiceError::invalid(
            "wrong_type",
            path,
            format!("`{}` must be {expected}", column.name),
        )
    };
    match column.kind {
        Kind::Money => json
            .as_i64()
            .map(Value::Int)
            .ok_or_else(|| wrong("an integer amount in minor units (cents)")),
        Kind::Rate => {
            let text = json
                .as_str()
                .ok_or_else(|| wrong("a decimal string such as \"0.125\""))?;
            parse_rate(text).map(Value::Int).ok_or_else(|| {
                wrong("a decimal string between \"0\" and \"1\" with at most six decimals")
            })
        }
        _ => {
            let text = json.as_str().ok_or_else(|| wrong("a string"))?;
            check_text(column, text, path)?;
            Ok(Value::Text(text.to_owned()))
        }
    }
}

fn check_text(column: &Column, text: &str, path: &str) -> Result<(), ServiceError> {
    let invalid = |detail: String| ServiceError::invalid("invalid_value", path, detail);
    let name = column.name;
    match column.kind {
        Kind::Text { max } => {
            let length = text.chars().count();
            if length > max {
                return Err(ServiceError::invalid(
                    "value_too_long",
                    path,
                    format!("`{name}` has {length} characters; at most {max} are allowed"),
                ));
            }
            if column.required && text.trim().is_empty() {
                return Err(invalid(format!("`{name}` cannot be empty")));
            }
        }
        Kind::Enum(values) => {
            if !values.contains(&text) {
                return Err(invalid(format!(
                    "`{name}` must be one of: {}",
                    values.join(", ")
                )));
            }
        }
        Kind::Currency => {
            if text.len() != 3 || !text.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(invalid(format!(
                    "`{name}` must be a three-letter ISO 4217 code such as \"EUR\""
                )));
            }
        }
        Kind::Date => {
            if text.len() != 10 || text.parse::<jiff::civil::Date>().is_err() {
                return Err(invalid(format!("`{name}` must be a date, YYYY-MM-DD")));
            }
        }
        Kind::Timestamp => {
            if text.len() > 40 || text.parse::<jiff::Timestamp>().is_err() {
                return Err(invalid(format!(
                    "`{name}` must be an RFC 3339 time such as \"2026-01-31T12:00:00Z\""
                )));
            }
        }
        Kind::Email => {
            let ok = text.len() <= 254
                && text
                    .split_once('@')
                    .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
            if !ok {
                return Err(invalid(format!("`{name}` must be an e-mail address")));
            }
        }
        Kind::Ref(_) => {
            if text.is_empty() || text.len() > 64 {
                return Err(invalid(format!("`{name}` must be a record id")));
            }
        }
        Kind::Money | Kind::Rate => {}
    }
    Ok(())
}

/// A timestamp as stored (fixed-width UTC), from any RFC 3339 text.
pub fn normalize_timestamp(text: &str) -> Option<String> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(partnerdb_store::format_time)
}

/// `"0.125"` → 125000 (millionths); `None` outside 0..=1 or with more than
/// six decimals.
pub fn parse_rate(text: &str) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > 6
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || whole.len() > 2
    {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let mut fraction_digits = fraction.to_owned();
    while fraction_digits.len() < 6 {
        fraction_digits.push('0');
    }
    let fraction: i64 = fraction_digits.parse().ok()?;
    let ppm = whole * 1_000_000 + fraction;
    (0..=1_000_000).contains(&ppm).then_some(ppm)
}

/// 125000 → `"0.125"`.
pub fn format_rate(ppm: i64) -> String {
    let whole = ppm / 1_000_000;
    let fraction = (ppm % 1_000_000).abs();
    let mut text = format!("{whole}.{fraction:06}");
    while text.ends_with('0') && !text.ends_with(".0") {
        text.pop();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_name_the_unknown_field_and_the_known_ones() {
        let detail = |allowed: &[&str]| {
            let body = serde_json::json!({"reason": "x", "extra": 1});
            match object(&body, "").and_then(|o| only(o, allowed, "a thing")) {
                Err(ServiceError::Invalid {
                    code, path, detail, ..
                }) => {
                    assert_eq!((code, path.as_str()), ("unknown_field", "/extra"));
                    detail
                }
                other => format!("{other:?}"),
            }
        };
        assert_eq!(detail(&["reason"]), "a thing has reason, not `extra`");
        assert_eq!(
            detail(&["reason", "ttl"]),
            "a thing has reason and ttl, not `extra`"
        );
        assert_eq!(
            detail(&["a", "reason", "c"]),
            "a thing has a, reason and c, not `extra`"
        );
        let body = serde_json::json!([1]);
        assert!(matches!(
            object(&body, ""),
            Err(ServiceError::Invalid {
                code: "invalid_body",
                ..
            })
        ));
        assert!(object(&body, "/partner").is_err());
    }

    #[test]
    fn rates_round_trip_exactly() {
        for (text, ppm) in [
            ("0.125", 125_000),
            ("1", 1_000_000),
            ("0", 0),
            ("0.000001", 1),
        ] {
            assert_eq!(parse_rate(text), Some(ppm), "{text}");
        }
        assert_eq!(format_rate(125_000), "0.125");
        assert_eq!(format_rate(0), "0.0");
        assert_eq!(parse_rate("1.5"), None);
        assert_eq!(parse_rate("0.1234567"), None);
        assert_eq!(parse_rate("-1"), None);
        assert_eq!(parse_rate(".5"), None);
    }

    #[test]
    fn timestamps_are_normalized() {
        assert_eq!(
            normalize_timestamp("2026-01-31T13:00:00+01:00").as_deref(),
            Some("2026-01-31T12:00:00.000000Z")
        );
        assert_eq!(normalize_timestamp("yesterday"), None);
    }
}
