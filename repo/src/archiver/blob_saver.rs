//! The blob saver stage: workers that hash file chunks, reply with their
//! ids, and compress, encrypt and hand new blobs (data and trees) to the
//! pack sink.

use std::sync::atomic::Ordering;

use crate::handoff::{Receiver, Sender};

use super::{Archiver, bump};
use crate::Id;
use crate::pack::BlobType;
use crate::packer::PackSink;

/// Work for the blob workers.
pub(super) enum BlobJob {
    /// A file chunk: hash it, reply with its id, store it if new.
    Data { data: Vec<u8>, reply: Sender<Id> },
    /// A tree the tree saver found new.
    Tree { id: Id, data: Vec<u8> },
}

impl Archiver<'_> {
    /// True when `id` must be stored: neither the index nor this backup has it. A blob the
    /// index has is relied on where it is.
    pub(super) fn is_new_blob(&self, id: &Id) -> bool {
        !self.reused.rely_on(self.repo, id) && self.known.lock().expect("known").insert(*id, ())
    }

    pub(super) fn blob_worker(&self, rx: Receiver<BlobJob>, sink: &PackSink<'_>) {
        for job in rx {
            if self.failed.load(Ordering::Relaxed) {
                continue; // drain so senders never block
            }
            let (blob_type, id, data) = match job {
                BlobJob::Tree { id, data } => (BlobType::Tree, id, data),
                BlobJob::Data { data, reply } => {
                    let id = Id::hash(&data);
                    let len = data.len() as u64;
                    bump(&self.progress.bytes_done, len);
                    // The file's content list only needs the id.
                    let _ = reply.send(id);
                    if !self.is_new_blob(&id) {
                        continue;
                    }
                    bump(&self.counters.data_blobs, 1);
                    bump(&self.counters.data_added, len);
                    bump(&self.progress.bytes_added, len);
                    (BlobType::Data, id, data)
                }
            };
            let (sealed, ulen) = self.repo.seal_blob(blob_type, &data);
            drop(data);
            if blob_type == BlobType::Data {
                bump(&self.counters.data_added_packed, sealed.len() as u64);
            }
            if let Err(e) = sink.add(blob_type, id, &sealed, ulen) {
                self.fail(e);
            }
        }
    }
}
