//! `ls` and `dump`: read one snapshot without restoring it.

use std::io::Write;

use anyhow::{Context as _, Result};
use sluice_repo::{Repository, browse, snapshot::SnapshotEntry, snapshot::SnapshotFilter};

use crate::args::{DumpArgs, Global, LsArgs};
use crate::repo_open::RepoConfig;

/// Opens the repository with its index, under a shared lock, and finds the snapshot.
fn open(
    g: &Global,
    spec: &str,
    hosts: &[String],
) -> Result<(Repository, Option<sluice_repo::lock::Lock>, SnapshotEntry)> {
    let mut repo = RepoConfig::from_env(g)?.open()?;
    let lock = super::lock(&repo, g, false)?;
    let filter = SnapshotFilter {
        hosts: hosts.to_vec(),
        ..Default::default()
    };
    let snapshot = repo.find_snapshot(spec, &filter)?;
    repo.load_index()?;
    Ok((repo, lock, snapshot))
}

/// `ls`: one path per line, or with `--json` one JSON object per line.
pub fn ls(g: &Global, a: &LsArgs) -> Result<i32> {
    let (repo, _lock, snapshot) = open(g, &a.snapshot, &a.host)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let path = a.path.as_deref().unwrap_or("/");
    browse::list(&repo, &snapshot.snapshot.tree, path, &mut |entry| {
        if g.json {
            serde_json::to_writer(&mut out, &entry)?;
            writeln!(out)
        } else {
            writeln!(out, "{}", entry.path)
        }
    })
    .with_context(|| format!("listing {path:?} of snapshot {}", snapshot.id.short()))?;
    out.flush()
        .context("writing the listing to standard output")?;
    Ok(0)
}

/// `dump`: the file's bytes on standard output (or their base64 lines); what was written goes
/// to the termination log.
pub fn dump(g: &Global, a: &DumpArgs) -> Result<i32> {
    let (repo, _lock, snapshot) = open(g, &a.snapshot, &a.host)?;
    let stdout = std::io::stdout();
    let out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let context = || format!("dumping {:?} of snapshot {}", a.path, snapshot.id.short());
    let tree = &snapshot.snapshot.tree;
    let written = if a.base64 {
        let mut lines = Base64Lines::new(out);
        let written = browse::dump(&repo, tree, &a.path, &mut lines).with_context(context)?;
        lines.finish().context("writing to standard output")?;
        written
    } else {
        let mut out = out;
        browse::dump(&repo, tree, &a.path, &mut out).with_context(context)?
    };
    if let Some(log) = &g.termination_log {
        std::fs::write(log, dumped_line(written))
            .with_context(|| format!("writing {}", log.display()))?;
    }
    Ok(0)
}

/// Bytes in per line of [`Base64Lines`]: 57 encode to 76 characters.
const BASE64_LINE_BYTES: usize = 57;

/// A writer that encodes what it is given as base64 lines of 76 characters (MIME's width).
struct Base64Lines<W: Write> {
    out: W,
    /// Bytes of an incomplete line, fewer than [`BASE64_LINE_BYTES`].
    pending: Vec<u8>,
}

impl<W: Write> Base64Lines<W> {
    fn new(out: W) -> Self {
        Base64Lines {
            out,
            pending: Vec::with_capacity(BASE64_LINE_BYTES),
        }
    }

    fn line(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use base64::Engine as _;
        let mut text = [0u8; 76];
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(bytes, &mut text)
            .map_err(std::io::Error::other)?;
        self.out.write_all(&text[..n])?;
        self.out.write_all(b"\n")
    }

    /// Writes the last, shorter line, flushes, and returns the writer.
    fn finish(mut self) -> std::io::Result<W> {
        if !self.pending.is_empty() {
            let last = std::mem::take(&mut self.pending);
            self.line(&last)?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Base64Lines<W> {
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let given = buf.len();
        if !self.pending.is_empty() {
            let take = (BASE64_LINE_BYTES - self.pending.len()).min(buf.len());
            self.pending.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.pending.len() < BASE64_LINE_BYTES {
                return Ok(given);
            }
            let full = std::mem::take(&mut self.pending);
            self.line(&full)?;
        }
        let mut lines = buf.chunks_exact(BASE64_LINE_BYTES);
        for line in lines.by_ref() {
            self.line(line)?;
        }
        self.pending.extend_from_slice(lines.remainder());
        Ok(given)
    }

    /// Flushes whole lines only; [`Base64Lines::finish`] writes the last one.
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// What `dump` leaves in the termination log: `kubectl sluice dump` compares it with the
/// bytes that reached it through the Pod's log.
pub fn dumped_line(bytes: u64) -> String {
    format!("dumped {bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn base64_lines_decode_to_the_bytes_however_they_were_written() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 256) as u8).collect();
        for pieces in [
            vec![1000],
            vec![1; 1000],
            vec![56, 1, 57, 58, 828],
            vec![0, 1000],
        ] {
            let mut lines = Base64Lines::new(Vec::new());
            let mut at = 0;
            for n in pieces {
                lines.write_all(&data[at..at + n]).unwrap();
                at += n;
            }
            let out = lines.finish().unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.lines().all(|l| l.len() <= 76), "{text}");
            assert!(text.lines().rev().skip(1).all(|l| l.len() == 76));
            let decoded: Vec<u8> = text
                .lines()
                .flat_map(|l| base64::engine::general_purpose::STANDARD.decode(l).unwrap())
                .collect();
            assert_eq!(decoded, data);
        }
    }
}
