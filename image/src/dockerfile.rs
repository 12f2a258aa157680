//! The final stage of the project's Dockerfile: the one description of the
//! image that both `docker build` and `make image` follow.
//!
//! `docker build` runs every stage. `make image` has no Docker engine, so it
//! reads only the final stage and assembles the same file system itself:
//! the base it names (see [`crate::base`]), the files its `COPY --from`
//! lines take from the build stage (which `make image` replaces with the
//! binaries cargo built here), and the user, entrypoint, command,
//! environment and labels. An instruction it cannot reproduce is an error
//! naming the line, so the two recipes cannot drift apart silently.

use anyhow::{Context, Result, bail};

/// What the final stage of a Dockerfile says the image is.
#[derive(Debug, Default, PartialEq)]
pub struct FinalStage {
    /// The `FROM` image of the final stage.
    pub base: String,
    /// Its `COPY` instructions, in order.
    pub copies: Vec<Copy>,
    /// `USER`, e.g. `65532:65532`.
    pub user: Option<String>,
    /// `ENTRYPOINT`, exec form.
    pub entrypoint: Vec<String>,
    /// `CMD`, exec form.
    pub cmd: Vec<String>,
    /// `ENV` pairs.
    pub env: Vec<(String, String)>,
    /// `LABEL` pairs.
    pub labels: Vec<(String, String)>,
}

/// One `COPY [--from=STAGE] SRC... DEST`.
#[derive(Debug, PartialEq)]
pub struct Copy {
    /// The stage the files come from; `None` copies from the build context.
    pub from: Option<String>,
    /// Source paths.
    pub sources: Vec<String>,
    /// Destination: a directory when it ends in `/` or there are several
    /// sources, else a file path.
    pub dest: String,
}

impl Copy {
    /// Where `source` lands in the image.
    pub fn destination_of(&self, source: &str) -> String {
        if self.dest.ends_with('/') || self.sources.len() > 1 {
            let name = source.rsplit('/').next().unwrap_or(source);
            format!("{}/{name}", self.dest.trim_end_matches('/'))
        } else {
            self.dest.clone()
        }
    }
}

/// Parses the final stage of `text`.
pub fn parse_final_stage(text: &str) -> Result<FinalStage> {
    let lines = logical_lines(text);
    let split = |line: &str| -> (String, String) {
        let (instruction, rest) = line
            .split_once(char::is_whitespace)
            .map(|(i, r)| (i, r.trim()))
            .unwrap_or((line, ""));
        (instruction.to_ascii_uppercase(), rest.to_string())
    };
    if let Some((line_no, line)) = lines.first()
        && split(line).0 != "FROM"
        && split(line).0 != "ARG"
    {
        bail!("line {line_no}: {line}: a Dockerfile starts with FROM");
    }
    // Earlier stages belong to `docker build` alone.
    let start = lines
        .iter()
        .rposition(|(_, line)| split(line).0 == "FROM")
        .context("the Dockerfile has no FROM")?;
    let (from_line, from) = &lines[start];
    let base = split(from)
        .1
        .split_whitespace()
        .find(|w| !w.starts_with("--"))
        .map(str::to_string)
        .with_context(|| format!("line {from_line}: FROM without an image"))?;
    let mut stage = FinalStage {
        base,
        ..FinalStage::default()
    };
    for (line_no, line) in &lines[start + 1..] {
        let (instruction, rest) = split(line);
        stage
            .apply(&instruction, &rest)
            .with_context(|| format!("line {line_no}: {line}"))?;
    }
    if stage.entrypoint.is_empty() && stage.cmd.is_empty() {
        bail!("the final stage has neither ENTRYPOINT nor CMD");
    }
    Ok(stage)
}

impl FinalStage {
    fn apply(&mut self, instruction: &str, rest: &str) -> Result<()> {
        match instruction {
            "COPY" => {
                let mut from = None;
                let mut words = Vec::new();
                for word in rest.split_whitespace() {
                    match word.strip_prefix("--from=") {
                        Some(stage) => from = Some(stage.to_string()),
                        None if word.starts_with("--") => {
                            bail!("COPY option {word} is not supported by make image")
                        }
                        None => words.push(word.to_string()),
                    }
                }
                let Some(dest) = words.pop().filter(|_| !words.is_empty()) else {
                    bail!("COPY needs a source and a destination");
                };
                self.copies.push(Copy {
                    from,
                    sources: words,
                    dest,
                });
            }
            "USER" => self.user = Some(rest.to_string()),
            "ENTRYPOINT" => self.entrypoint = exec_form(rest)?,
            "CMD" => self.cmd = exec_form(rest)?,
            "ENV" => self.env.push(key_value(rest)?),
            "LABEL" => self.labels.push(key_value(rest)?),
            // A comment-only change of the stage does nothing; anything that
            // would run in the image cannot be reproduced without a shell.
            other => bail!(
                "{other} in the final stage is not supported by make image \
                 (it reproduces FROM, COPY, USER, ENTRYPOINT, CMD, ENV and LABEL)"
            ),
        }
        Ok(())
    }
}

/// `["a", "b"]`: the image has no shell, so the shell form cannot run.
fn exec_form(rest: &str) -> Result<Vec<String>> {
    serde_json::from_str(rest)
        .with_context(|| "use the exec form [\"program\", \"arg\"]: the image has no shell")
}

/// `KEY=VALUE` (one pair per instruction).
fn key_value(rest: &str) -> Result<(String, String)> {
    let (key, value) = rest
        .split_once('=')
        .context("expected KEY=VALUE (one pair per line)")?;
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Ok((key.trim().to_string(), value.to_string()))
}

/// Joins `\`-continued lines and drops comments and blank lines; yields
/// each instruction with the number of its first line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_none()) {
            continue;
        }
        let (body, continues) = match line.strip_suffix('\\') {
            Some(body) => (body.trim_end(), true),
            None => (line, false),
        };
        let entry = current.get_or_insert_with(|| (i + 1, String::new()));
        if !entry.1.is_empty() && !body.is_empty() {
            entry.1.push(' ');
        }
        entry.1.push_str(body);
        if !continues {
            out.extend(current.take());
        }
    }
    out.extend(current);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCKERFILE: &str = r#"
# comment
FROM rust:1.95-bookworm AS build
RUN cargo build \
    --release
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sluice-mover \
     /out/sluice-operator /usr/local/bin/
LABEL org.opencontainers.image.source="https://github.com/sluice-dev/sluice"
ENV RUST_BACKTRACE=1
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sluice-operator"]
CMD ["run"]
"#;

    #[test]
    fn reads_the_final_stage_only() {
        let stage = parse_final_stage(DOCKERFILE).unwrap();
        assert_eq!(stage.base, "gcr.io/distroless/cc-debian12:nonroot");
        assert_eq!(
            stage.copies,
            vec![Copy {
                from: Some("build".into()),
                sources: vec!["/out/sluice-mover".into(), "/out/sluice-operator".into()],
                dest: "/usr/local/bin/".into(),
            }]
        );
        assert_eq!(stage.user.as_deref(), Some("65532:65532"));
        assert_eq!(stage.entrypoint, ["/usr/local/bin/sluice-operator"]);
        assert_eq!(stage.cmd, ["run"]);
        assert_eq!(stage.env, [("RUST_BACKTRACE".into(), "1".into())]);
        assert_eq!(
            stage.labels,
            [(
                "org.opencontainers.image.source".into(),
                "https://github.com/sluice-dev/sluice".into()
            )]
        );
        assert_eq!(
            stage.copies[0].destination_of("/out/sluice-mover"),
            "/usr/local/bin/sluice-mover"
        );
    }

    #[test]
    fn refuses_what_it_cannot_reproduce() {
        for (dockerfile, message) in [
            (
                "FROM scratch\nRUN true\nCMD [\"x\"]",
                "RUN in the final stage",
            ),
            ("FROM scratch\nCMD x", "exec form"),
            (
                "FROM scratch\nCOPY --chown=1 a /b\nCMD [\"x\"]",
                "--chown=1",
            ),
            (
                "FROM scratch\nCOPY a\nCMD [\"x\"]",
                "a source and a destination",
            ),
            ("FROM scratch\nUSER 1", "neither ENTRYPOINT nor CMD"),
            ("CMD [\"x\"]", "starts with FROM"),
        ] {
            let error = format!("{:#}", parse_final_stage(dockerfile).unwrap_err());
            assert!(error.contains(message), "{dockerfile:?}: {error}");
        }
    }
}
