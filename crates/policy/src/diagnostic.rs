//! Findings that point into a policy file: check errors and lint findings
//! share one shape, one text rendering (file, line and column with the
//! offending text underlined) and one JSON form.

use std::fmt::{self, Write as _};
use std::ops::Range;

use serde::Serialize;

/// A byte range in a source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span over `range`.
    pub const fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }
}

impl From<Range<usize>> for Span {
    fn from(range: Range<usize>) -> Span {
        Span::new(range.start, range.end)
    }
}

/// A named source text (a policy file, a test file) with a line index.
#[derive(Clone, Debug)]
pub struct SourceFile {
    name: String,
    text: String,
    line_starts: Vec<usize>,
}

/// A 1-based line and column (the column counts characters, not bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

impl SourceFile {
    /// Wraps `text` read from `name` (a path as the user gave it, or `-`).
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> SourceFile {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// The name the file was read under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The whole text.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn line_index(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(line) => line,
            Err(next) => next.saturating_sub(1),
        }
    }

    /// The text of 0-based line `index`, without its line break.
    fn line_text(&self, index: usize) -> &str {
        let start = self.line_starts.get(index).copied().unwrap_or(0);
        let end = self
            .line_starts
            .get(index + 1)
            .copied()
            .unwrap_or(self.text.len());
        self.text
            .get(start..end)
            .unwrap_or("")
            .trim_end_matches(['\n', '\r'])
    }

    /// Line and column of a byte offset (clamped to the text).
    pub fn location(&self, offset: usize) -> Location {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let line = self.line_index(offset);
        let start = self.line_starts.get(line).copied().unwrap_or(0);
        let column = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count())
            + 1;
        Location {
            line: line + 1,
            column,
        }
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational: worth knowing, nothing to fix.
    Info,
    /// Probably a mistake; the policy still works as written.
    Warning,
    /// Must be fixed.
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// One finding about a source file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// How serious it is.
    pub severity: Severity,
    /// Stable identifier of the kind of finding (`unknown-action`).
    pub code: &'static str,
    /// What is wrong, one line, lowercase, no final period.
    pub message: String,
    /// Where (absent for findings about the file as a whole).
    pub span: Option<Span>,
    /// A short note printed under the underlined text.
    pub label: Option<String>,
    /// How to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(code: &'static str, message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic::new(Severity::Error, code, message, Some(span))
    }

    /// A finding of any severity.
    pub fn new(
        severity: Severity,
        code: &'static str,
        message: impl Into<String>,
        span: Option<Span>,
    ) -> Diagnostic {
        Diagnostic {
            severity,
            code,
            message: message.into(),
            span,
            label: None,
            help: None,
        }
    }

    /// Adds the note printed under the underlined text.
    #[must_use]
    pub fn with_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = Some(label.into());
        self
    }

    /// Adds a fix hint.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Renders the finding the way a compiler would:
    ///
    /// ```text
    /// error[unknown-action]: unknown action "aprove" on contract; did you mean "approve"?
    ///   --> policy.toml:12:40
    ///    |
    /// 12 |   { on = "contract", can = ["read", "aprove"] },
    ///    |                                     ^^^^^^^^ not an action of contract
    ///    = help: …
    /// ```
    pub fn render(&self, source: &SourceFile) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}[{}]: {}", self.severity, self.code, self.message);
        match self.span {
            Some(span) => render_snippet(&mut out, source, span, self.label.as_deref()),
            None => {
                let _ = writeln!(out, "  --> {}", source.name());
            }
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "   = help: {help}");
        }
        out
    }

    /// The JSON form: severity, code, message, file, line, column, end line
    /// and column, label, help.
    pub fn to_json(&self, source: &SourceFile) -> serde_json::Value {
        let (start, end) = match self.span {
            Some(span) => (
                Some(source.location(span.start)),
                Some(source.location(span.end)),
            ),
            None => (None, None),
        };
        serde_json::json!({
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "file": source.name(),
            "line": start.map(|l| l.line),
            "column": start.map(|l| l.column),
            "end_line": end.map(|l| l.line),
            "end_column": end.map(|l| l.column),
            "label": self.label,
            "help": self.help,
        })
    }
}

fn render_snippet(out: &mut String, source: &SourceFile, span: Span, label: Option<&str>) {
    let start = source.location(span.start);
    let line_text = source.line_text(start.line - 1);
    let gutter = start.line.to_string().len().max(2);
    let pad = " ".repeat(gutter);
    let _ = writeln!(
        out,
        "{pad}--> {}:{}:{}",
        source.name(),
        start.line,
        start.column
    );
    let _ = writeln!(out, "{pad} |");
    let _ = writeln!(out, "{:>gutter$} | {line_text}", start.line);
    // Underline from the start column to the span's end, or to the end of
    // the line when the span runs over several lines.
    let line_chars = line_text.chars().count();
    let end = source.location(span.end.max(span.start));
    let end_column = if end.line == start.line {
        end.column
    } else {
        line_chars + 1
    };
    let width = end_column.saturating_sub(start.column).max(1);
    let indent: String = line_text
        .chars()
        .take(start.column - 1)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let _ = write!(out, "{pad} | {indent}{}", "^".repeat(width));
    match label {
        Some(label) => {
            let _ = writeln!(out, " {label}");
        }
        None => out.push('\n'),
    }
}

/// A file's findings, rendered one after the other.
#[derive(Debug)]
pub struct Report<'a> {
    /// The file the findings point into.
    pub source: &'a SourceFile,
    /// The findings.
    pub diagnostics: &'a [Diagnostic],
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_char('\n')?;
            }
            f.write_str(&diagnostic.render(self.source))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_count_lines_and_characters() {
        let source = SourceFile::new("p.toml", "a = 1\nbé = \"x\"\n");
        assert_eq!(source.location(0), Location { line: 1, column: 1 });
        assert_eq!(source.location(6), Location { line: 2, column: 1 });
        // "é" is two bytes: the `=` after it is the fourth character.
        assert_eq!(source.location(10), Location { line: 2, column: 4 });
        assert_eq!(source.location(999).line, 3);
    }

    #[test]
    fn renders_an_underlined_snippet() {
        let text = "[roles.a]\ngrants = [{ on = \"contract\", can = [\"aprove\"] }]\n";
        let source = SourceFile::new("p.toml", text);
        let start = text.find("\"aprove\"").unwrap();
        let diagnostic = Diagnostic::error(
            "unknown-action",
            "unknown action \"aprove\" on contract; did you mean \"approve\"?",
            Span::new(start, start + 8),
        )
        .with_label("not an action of contract")
        .with_help("contract actions are: read, approve");
        assert_eq!(
            diagnostic.render(&source),
            "error[unknown-action]: unknown action \"aprove\" on contract; did you mean \"approve\"?\n  \
             --> p.toml:2:37\n   |\n 2 | grants = [{ on = \"contract\", can = [\"aprove\"] }]\n   \
             |                                     ^^^^^^^^ not an action of contract\n   \
             = help: contract actions are: read, approve\n"
        );
    }
}
