//! The NATS contract as `docs/subjects.md` states it: the schemas of `docs/schemas/`, compiled
//! once and matched to subjects, and the `nats` commands of the page's code blocks, parsed so a
//! test can run exactly them.
#![allow(dead_code)]

pub mod facts;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")
}

/// Every schema of `docs/schemas/`, by file name.
pub struct Schemas {
    validators: BTreeMap<String, jsonschema::Validator>,
}

impl Schemas {
    pub fn load() -> Self {
        let mut validators = BTreeMap::new();
        for entry in std::fs::read_dir(docs().join("schemas")).expect("docs/schemas") {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let schema: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).expect(&name);
            validators.insert(name, compile(&schema));
        }
        Self { validators }
    }

    pub fn has(&self, file: &str) -> bool {
        self.validators.contains_key(file)
    }

    /// The problems `file` finds in `message`, one line each; empty when it is valid.
    pub fn errors(&self, file: &str, message: &Value) -> Vec<String> {
        let validator = self.validators.get(file).unwrap_or_else(|| panic!("no docs/schemas/{file}"));
        validator.iter_errors(message).map(|e| format!("at {}: {e}", e.instance_path())).collect()
    }

    /// Fails the test, naming what was checked, when `message` does not match `file`.
    pub fn check(&self, file: &str, what: &str, message: &Value) {
        let errors = self.errors(file, message);
        assert!(errors.is_empty(), "{what} does not match docs/schemas/{file}:\n{}\n{message:#}", errors.join("\n"));
    }
}

/// Draft 2020-12 (what the files declare), with `format` checked too (`date-time`).
pub fn compile(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft202012::options().should_validate_formats(true).build(schema).expect("a valid JSON Schema")
}

/// The schema of the messages published on `subject` (a concrete subject or a pattern).
pub fn event_schema(subject: &str) -> &'static str {
    if subject.starts_with("media.") {
        "media-event.json"
    } else if subject.starts_with("tracker.request.") && subject.ends_with(".progress") {
        "request-progress.json"
    } else if subject.starts_with("tracker.request.") {
        "request-change.json"
    } else {
        panic!("{subject} carries no event")
    }
}

/// The schemas of a request–reply subject: (request, reply). The request has none when the
/// responder ignores the body.
pub fn request_reply_schemas(subject: &str) -> (Option<String>, String) {
    let parts: Vec<&str> = subject.split('.').collect();
    match parts.as_slice() {
        ["tracker", "query", what] => (Some(format!("query-{what}-request.json")), format!("query-{what}-reply.json")),
        ["tracker", "cmd", _] => (Some("cmd-request.json".into()), "cmd-reply.json".into()),
        ["tracker", "health", _] => (None, "health-reply.json".into()),
        _ => panic!("{subject} is not a request–reply subject"),
    }
}

/// A `nats` command of the page, as the test runs it.
#[derive(Debug, Clone, PartialEq)]
pub enum NatsCommand {
    /// `nats sub [--all | --last | --last-per-subject] <subject>`; `deliver` is the flag.
    Sub { subject: String, deliver: Option<String> },
    /// `nats req <subject> <body>`.
    Req { subject: String, body: String },
    /// `nats stream view <stream> [--subject <filter>]`.
    StreamView { stream: String, subject: Option<String> },
    /// `nats stream get <stream> --last-for <subject>`.
    StreamGet { stream: String, last_for: String },
}

/// The `nats` commands in the code blocks of `docs/subjects.md`, in order. Any other `nats`
/// command there fails the test: the page only shows what the tests run.
pub fn doc_commands() -> Vec<NatsCommand> {
    let page = std::fs::read_to_string(docs().join("subjects.md")).expect("docs/subjects.md");
    let mut in_code = false;
    let mut commands = Vec::new();
    for line in page.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let line = line.trim().trim_start_matches("$ ");
        if in_code && line.starts_with("nats ") {
            commands
                .push(parse_command(&shell_words(line)).unwrap_or_else(|e| panic!("docs/subjects.md: {line}: {e}")));
        }
    }
    commands
}

fn parse_command(words: &[String]) -> Result<NatsCommand, String> {
    let mut args: Vec<&str> = words.iter().skip(1).map(String::as_str).collect();
    if args.first() == Some(&"-s") {
        args.drain(..2);
    }
    let positional: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| !a.starts_with("--") && !is_value(&args, *i))
        .map(|(_, a)| *a)
        .collect();
    match positional.as_slice() {
        ["sub", subject] => {
            let deliver = args.iter().find(|a| a.starts_with("--")).map(|f| f.to_string());
            match deliver.as_deref() {
                None | Some("--all" | "--last" | "--last-per-subject") => {
                    Ok(NatsCommand::Sub { subject: subject.to_string(), deliver })
                }
                Some(other) => Err(format!("flag {other} is not run by the tests")),
            }
        }
        ["req", subject, body] => Ok(NatsCommand::Req { subject: subject.to_string(), body: body.to_string() }),
        ["stream", "view", stream] => Ok(NatsCommand::StreamView {
            stream: stream.to_string(),
            subject: flag(&args, "--subject").map(str::to_owned),
        }),
        ["stream", "get", stream] => match flag(&args, "--last-for") {
            Some(subject) => Ok(NatsCommand::StreamGet { stream: stream.to_string(), last_for: subject.to_owned() }),
            None => Err("only `stream get --last-for` is run by the tests".into()),
        },
        _ => Err("not a command the tests run (sub, req, stream view, stream get)".into()),
    }
}

/// The value of `--name value` in `args`.
fn flag<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    args.iter().position(|a| *a == name).and_then(|i| args.get(i + 1)).copied()
}

/// Whether `args[i]` is the value of a flag that takes one.
fn is_value(args: &[&str], i: usize) -> bool {
    i > 0 && matches!(args[i - 1], "--subject" | "--last-for")
}

/// Splits a command line as a POSIX shell would for the quoting the page uses: single and
/// double quotes, and `#` comments.
fn shell_words(line: &str) -> Vec<String> {
    let (mut words, mut word, mut quote, mut started) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => (quote, started) = (Some(c), true),
            (None, '#') if !started => break,
            (None, c) if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut word));
                }
                started = false;
            }
            (None, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// The example messages of `docs/subjects.md`: each ```json block under a
/// `<!-- schema: <file> -->` line, with that file's name.
pub fn doc_examples() -> Vec<(String, String)> {
    let page = std::fs::read_to_string(docs().join("subjects.md")).expect("docs/subjects.md");
    let (mut examples, mut schema, mut block) = (Vec::new(), None::<String>, None::<String>);
    for line in page.lines() {
        if let Some(text) = block.as_mut() {
            if line.starts_with("```") {
                examples.push((schema.take().unwrap_or_default(), block.take().unwrap_or_default()));
            } else {
                text.push_str(line);
                text.push('\n');
            }
        } else if let Some(file) = line.strip_prefix("<!-- schema: ").and_then(|l| l.strip_suffix(" -->")) {
            schema = Some(file.to_owned());
        } else if line == "```json" {
            assert!(schema.is_some(), "docs/subjects.md: a JSON example without a `<!-- schema: … -->` line");
            block = Some(String::new());
        }
    }
    examples
}

/// The schema files `docs/subjects.md` links to (`schemas/<file>.json`).
pub fn linked_schemas() -> Vec<String> {
    let page = std::fs::read_to_string(docs().join("subjects.md")).expect("docs/subjects.md");
    page.match_indices("(schemas/")
        .filter_map(|(i, _)| {
            let rest = &page[i + "(schemas/".len()..];
            rest.find(')').map(|end| rest[..end].to_owned())
        })
        .filter(|file| file.ends_with(".json"))
        .collect()
}

#[test]
fn shell_words_follow_the_quoting_of_the_page() {
    assert_eq!(
        shell_words(r#"nats req tracker.query.get '{"id": 1}'   # the request"#),
        ["nats", "req", "tracker.query.get", r#"{"id": 1}"#]
    );
    assert_eq!(
        parse_command(&shell_words("nats sub --last-per-subject 'tracker.request.>'")),
        Ok(NatsCommand::Sub { subject: "tracker.request.>".into(), deliver: Some("--last-per-subject".into()) })
    );
    assert_eq!(
        parse_command(&shell_words("nats stream view MEDIA --subject 'media.radarr.>'")),
        Ok(NatsCommand::StreamView { stream: "MEDIA".into(), subject: Some("media.radarr.>".into()) })
    );
    assert!(parse_command(&shell_words("nats sub --since 1h 'media.>'")).is_err());
}
