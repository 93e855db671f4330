//! Log output: tracing events to stderr, as human lines or one JSON object per line.
//!
//! Text lines are for people: `2026-11-27T02:30:00.123Z  INFO server=living-room
//! run_id=01J…: run finished outcome=completed`. The fields of the spans an event happened
//! in come first, without the span's name, and no module path is shown: a reader wants to
//! know which server and which run, not which source file spoke. (tracing-subscriber's
//! own text format writes `server{server=living-room}:run{run_id=…}:
//! jellyfin_export_scheduler::daemon::server_loop: run finished`.)
//!
//! JSON lines keep everything and are flat: `timestamp`, `level`, `target`, `message`, then the event's fields
//! and the fields of the spans it happened in (so a `server` recorded on a per-server span
//! appears on every line from that server's loop). tracing-subscriber's own JSON format
//! nests span fields under `spans`, which log collectors then have to dig out; flat objects
//! are what `jq 'select(.server == "x")'` and Loki expect.

use crate::config::LogFormat;
use std::fmt;
use std::io::IsTerminal;
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Install the global subscriber. `RUST_LOG`, when set, wins over `level`. A second call
/// (tests) is a no-op.
pub fn init(format: LogFormat, level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => {
            let ansi = std::io::stderr().is_terminal() && !no_color();
            builder
                .with_ansi(ansi)
                .event_format(PlainText { ansi })
                .try_init()
        }
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .try_init(),
    };
}

/// The variable that overrides `[daemon] log_format`, for container log collectors. `main`
/// reads it through clap (the `--log-format` option of `run` and `reload`).
pub const FORMAT_ENV: &str = "JELLYFIN_EXPORT_SCHEDULER_LOG_FORMAT";

/// `NO_COLOR` set to anything but the empty string turns colours off (no-color.org).
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// One human line per event: time, level, the span fields, the message and the event's
/// fields; no span names, no target.
pub struct PlainText {
    /// Colour the level (only on a terminal).
    pub ansi: bool,
}

impl<S, N> FormatEvent<S, N> for PlainText
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = *event.metadata().level();
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let (on, off) = match (self.ansi, level) {
            (false, _) => ("", ""),
            (true, tracing::Level::ERROR) => ("\x1b[31m", "\x1b[0m"),
            (true, tracing::Level::WARN) => ("\x1b[33m", "\x1b[0m"),
            (true, tracing::Level::INFO) => ("\x1b[32m", "\x1b[0m"),
            (true, _) => ("\x1b[2m", "\x1b[0m"),
        };
        write!(writer, "{time} {on}{level:>5}{off} ")?;
        // The span fields straight from the spans, without copies: a fleet due the same
        // second writes thousands of these lines while its starts go out.
        let mut any_span = false;
        for_each_span_fields(ctx, |fields| {
            if fields.is_empty() {
                return Ok(());
            }
            let sep = if any_span { " " } else { "" };
            any_span = true;
            write!(writer, "{sep}{fields}")
        })?;
        if any_span {
            write!(writer, ": ")?;
        }
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// `f` for the fields of each span an event happened in, as the fields formatter wrote
/// them, outermost first; borrowed from the spans, not copied.
fn for_each_span_fields<S, N>(
    ctx: &FmtContext<'_, S, N>,
    mut f: impl FnMut(&str) -> fmt::Result,
) -> fmt::Result
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let Some(scope) = ctx.event_scope() else {
        return Ok(());
    };
    for span in scope.from_root() {
        if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
            f(&fields.fields)?;
        }
    }
    Ok(())
}

/// One flat JSON object per event.
pub struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut obj = serde_json::Map::new();
        obj.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into(),
        );
        obj.insert("level".into(), meta.level().as_str().into());
        obj.insert("target".into(), meta.target().into());
        // Span fields first (outermost to innermost), so the event's own fields win.
        for_each_span_fields(ctx, |fields| {
            if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(fields) {
                obj.extend(map);
            }
            Ok(())
        })?;
        let mut visitor = JsonVisitor(&mut obj);
        event.record(&mut visitor);
        if !obj.contains_key("message") {
            obj.insert("message".into(), "".into());
        }
        let line = serde_json::Value::Object(obj).to_string();
        writeln!(writer, "{line}")
    }
}

struct JsonVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    /// What `run` would print for one event inside a server's and a run's span.
    fn one_line(format: LogFormat) -> String {
        let buf = Buf::default();
        let builder = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .with_ansi(false);
        let event = || {
            // As the daemon records them: `%` (Display).
            let server = tracing::info_span!("server", server = %"living-room");
            let _s = server.enter();
            let run = tracing::info_span!("run", run_id = %"01JRUN");
            let _r = run.enter();
            tracing::info!(outcome = "completed", duration_ms = 12u64, "run finished");
        };
        match format {
            LogFormat::Text => tracing::subscriber::with_default(
                builder.event_format(PlainText { ansi: false }).finish(),
                event,
            ),
            LogFormat::Json => tracing::subscriber::with_default(
                builder
                    .fmt_fields(JsonFields::new())
                    .event_format(FlatJson)
                    .finish(),
                event,
            ),
        }
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn text_lines_have_span_fields_and_no_module_path() {
        let line = one_line(LogFormat::Text);
        let (time, rest) = line.split_once(' ').unwrap();
        assert!(time.ends_with('Z'), "{line}");
        assert_eq!(
            rest,
            " INFO server=living-room run_id=01JRUN: run finished outcome=\"completed\" duration_ms=12\n"
        );
        assert!(!line.contains("jellyfin_export_scheduler"), "{line}");
        assert!(
            !line.contains('{'),
            "span names and braces are gone: {line}"
        );
    }

    #[test]
    fn json_lines_keep_the_target_and_every_field() {
        let v: serde_json::Value = serde_json::from_str(one_line(LogFormat::Json).trim()).unwrap();
        assert_eq!(v["server"], "living-room");
        assert_eq!(v["run_id"], "01JRUN");
        assert_eq!(v["outcome"], "completed");
        assert_eq!(v["message"], "run finished");
        assert!(
            v["target"]
                .as_str()
                .unwrap()
                .starts_with("jellyfin_export_scheduler::logging")
        );
    }

    #[test]
    fn json_lines_are_flat_with_span_fields() {
        let buf = Buf::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("server", server = "living-room");
            let _g = span.enter();
            tracing::info!(run_id = "abc", duration_ms = 12u64, "run finished");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["message"], "run finished");
        assert_eq!(v["server"], "living-room");
        assert_eq!(v["run_id"], "abc");
        assert_eq!(v["duration_ms"], 12);
        assert_eq!(v["level"], "INFO");
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(
            v["target"]
                .as_str()
                .unwrap()
                .starts_with("jellyfin_export_scheduler")
        );
    }
}
