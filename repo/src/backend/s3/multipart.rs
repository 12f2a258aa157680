//! Uploads of pack files: one PUT for small ones, multipart with a bounded
//! number of parts in flight for large ones, so an upload's memory never
//! grows with the file.

use std::fs::File;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};

use super::S3Backend;
use super::classify::one_line;
use crate::backend::{BackendError, BackendErrorKind, BackendResult};

/// Files up to this size are sent in one PUT, read into memory once.
const SINGLE_PUT_MAX: u64 = 32 << 20;
/// Part size of multipart uploads (S3 wants at least 5 MiB but the last).
const PART_SIZE: u64 = 16 << 20;
/// Parts of one upload in flight at once: with [`PART_SIZE`] this bounds an
/// upload's memory to [`SINGLE_PUT_MAX`], whatever the file's size.
const PARTS_IN_FLIGHT: usize = 2;

impl S3Backend {
    pub(super) fn put_file(
        &self,
        key: &ObjectPath,
        what: &str,
        file: &File,
        len: u64,
    ) -> BackendResult<()> {
        let read = |offset: u64, n: u64| -> BackendResult<Bytes> {
            let mut buf = vec![0u8; n as usize];
            file.read_exact_at(&mut buf, offset).map_err(|e| {
                BackendError::from_io(format!("read the payload of {what} for {}", self.url), &e)
            })?;
            Ok(Bytes::from(buf))
        };
        if len <= SINGLE_PUT_MAX {
            let body = read(0, len)?;
            return self
                .runtime
                .block_on(self.store.put(key, PutPayload::from(body)))
                .map(|_| ())
                .map_err(|e| self.store_error("save", what, &e));
        }

        let mut upload = self
            .runtime
            .block_on(self.store.put_multipart(key))
            .map_err(|e| self.store_error("start multipart upload of", what, &e))?;
        let mut in_flight = std::collections::VecDeque::new();
        let mut send_parts = || -> BackendResult<()> {
            let mut offset = 0;
            while offset < len {
                if in_flight.len() == PARTS_IN_FLIGHT {
                    let oldest = in_flight.pop_front().expect("a part in flight");
                    self.join_part(oldest, what)?;
                }
                let n = PART_SIZE.min(len - offset);
                let part = upload.put_part(PutPayload::from(read(offset, n)?));
                in_flight.push_back(self.runtime.spawn(part));
                offset += n;
            }
            while let Some(part) = in_flight.pop_front() {
                self.join_part(part, what)?;
            }
            Ok(())
        };
        let sent = send_parts();
        let result = sent.and_then(|()| {
            self.runtime
                .block_on(upload.complete())
                .map(|_| ())
                .map_err(|e| self.store_error("complete multipart upload of", what, &e))
        });
        if result.is_err() {
            for part in &in_flight {
                part.abort();
            }
            // Best effort: an upload left behind holds storage until the
            // bucket's lifecycle rules remove it, but never becomes visible.
            if let Err(e) = self.runtime.block_on(upload.abort()) {
                tracing::debug!(key = %key, error = %one_line(&e.to_string()), "aborting a failed multipart upload failed");
            }
        }
        result
    }

    fn join_part(
        &self,
        part: tokio::task::JoinHandle<object_store::Result<()>>,
        what: &str,
    ) -> BackendResult<()> {
        match self.runtime.block_on(part) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.store_error("save part of", what, &e)),
            Err(e) => Err(self.error(
                "save part of",
                what,
                BackendErrorKind::Other,
                &e.to_string(),
            )),
        }
    }
}
