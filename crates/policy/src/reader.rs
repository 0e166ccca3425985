//! A small reader over a spanned TOML tree that records every problem as a
//! [`Diagnostic`] instead of stopping at the first, shared by the policy
//! parser and the test-case parser.

use std::borrow::Cow;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diagnostic::{Diagnostic, SourceFile, Span};
use crate::schema::suggest;

/// A spanned TOML value.
pub(crate) type Item<'i> = Spanned<DeValue<'i>>;
/// A spanned TOML table key.
pub(crate) type Key<'i> = Spanned<Cow<'i, str>>;

pub(crate) fn span_of<T>(spanned: &Spanned<T>) -> Span {
    spanned.span().into()
}

/// Parses TOML text, turning syntax errors into diagnostics.
pub(crate) fn parse_toml(source: &SourceFile) -> Result<Spanned<DeTable<'_>>, Vec<Diagnostic>> {
    let (table, errors) = DeTable::parse_recoverable(source.text());
    if errors.is_empty() {
        return Ok(table);
    }
    Err(errors
        .into_iter()
        .map(|error| {
            let span = error.span().map_or(Span::new(0, 0), |range| range.into());
            Diagnostic::error(
                "toml-syntax",
                format!("invalid TOML: {}", error.message().trim_end_matches('.')),
                span,
            )
        })
        .collect())
}

/// Collects diagnostics while reading values.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl Reader {
    pub(crate) fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    pub(crate) fn error(&mut self, code: &'static str, message: impl Into<String>, span: Span) {
        self.push(Diagnostic::error(code, message, span));
    }

    fn wrong_type(&mut self, item: &Item<'_>, expected: &str, what: &str) {
        self.push(
            Diagnostic::error(
                "wrong-type",
                format!(
                    "expected {expected} for {what}, found {}",
                    article(item.get_ref().type_str())
                ),
                span_of(item),
            )
            .with_label(format!("expected {expected}")),
        );
    }

    pub(crate) fn table<'a, 'i>(
        &mut self,
        item: &'a Item<'i>,
        what: &str,
    ) -> Option<&'a DeTable<'i>> {
        match item.get_ref() {
            DeValue::Table(table) => Some(table),
            _ => {
                self.wrong_type(item, "a table", what);
                None
            }
        }
    }

    pub(crate) fn string<'a>(&mut self, item: &'a Item<'_>, what: &str) -> Option<&'a str> {
        match item.get_ref() {
            DeValue::String(text) => Some(text),
            _ => {
                self.wrong_type(item, "a string", what);
                None
            }
        }
    }

    pub(crate) fn boolean(&mut self, item: &Item<'_>, what: &str) -> Option<bool> {
        match item.get_ref() {
            DeValue::Boolean(value) => Some(*value),
            _ => {
                self.wrong_type(item, "true or false", what);
                None
            }
        }
    }

    /// An integer within `min..=max`.
    pub(crate) fn integer(
        &mut self,
        item: &Item<'_>,
        what: &str,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        let DeValue::Integer(integer) = item.get_ref() else {
            self.wrong_type(item, "an integer", what);
            return None;
        };
        let value = i128::from_str_radix(integer.as_str(), integer.radix()).ok();
        match value {
            Some(value) if value >= i128::from(min) && value <= i128::from(max) => {
                u64::try_from(value).ok()
            }
            _ => {
                self.error(
                    "invalid-value",
                    format!("{what} must be between {min} and {max}"),
                    span_of(item),
                );
                None
            }
        }
    }

    pub(crate) fn array<'a, 'i>(
        &mut self,
        item: &'a Item<'i>,
        what: &str,
    ) -> Option<&'a [Item<'i>]> {
        match item.get_ref() {
            DeValue::Array(array) => Some(array),
            _ => {
                self.wrong_type(item, "an array", what);
                None
            }
        }
    }

    /// An array of strings, each with its span; `None` if the value or any
    /// element has the wrong type.
    pub(crate) fn strings<'a>(
        &mut self,
        item: &'a Item<'_>,
        what: &str,
    ) -> Option<Vec<(&'a str, Span)>> {
        let array = self.array(item, what)?;
        let mut out = Vec::with_capacity(array.len());
        let mut ok = true;
        for element in array {
            match self.string(element, &format!("an element of {what}")) {
                Some(text) => out.push((text, span_of(element))),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// Reports every key of `table` not in `allowed`, suggesting the closest.
    pub(crate) fn unknown_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], context: &str) {
        for (key, _) in table.iter() {
            let name: &str = key.get_ref();
            if allowed.contains(&name) {
                continue;
            }
            let mut message = format!("unknown key \"{name}\" in {context}");
            if let Some(best) = suggest(name, allowed.iter().copied()) {
                message.push_str(&format!("; did you mean \"{best}\"?"));
            }
            self.push(
                Diagnostic::error("unknown-key", message, span_of(key))
                    .with_label("unknown key")
                    .with_help(format!("{context} takes: {}", allowed.join(", "))),
            );
        }
    }
}

/// The key and value named `name`, if present.
pub(crate) fn entry<'a, 'i>(
    table: &'a DeTable<'i>,
    name: &str,
) -> Option<(&'a Key<'i>, &'a Item<'i>)> {
    table.iter().find(|(key, _)| key.get_ref().as_ref() == name)
}

/// The value named `name`, if present.
pub(crate) fn get<'a, 'i>(table: &'a DeTable<'i>, name: &str) -> Option<&'a Item<'i>> {
    entry(table, name).map(|(_, value)| value)
}

fn article(type_name: &str) -> String {
    match type_name.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {type_name}"),
        _ => format!("a {type_name}"),
    }
}
