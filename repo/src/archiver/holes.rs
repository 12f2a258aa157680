//! Where a sparse file's holes are, so the file reader does not read them.

use std::fs::File;

/// What lies at a file offset, up to which offset.
pub(super) enum Region {
    Data(u64),
    Hole(u64),
}

/// A sparse file's holes, found with `SEEK_DATA`/`SEEK_HOLE` so they are
/// not read from disk.
pub(super) struct Holes {
    fd: std::os::fd::RawFd,
    /// The size when the file was opened; bytes past it are read as data
    /// (the file may have grown).
    size: u64,
    /// The data extent last found: [start, end).
    data: (u64, u64),
}

impl Holes {
    pub(super) fn new(file: &File, size: u64) -> Holes {
        use std::os::fd::AsRawFd;
        Holes {
            fd: file.as_raw_fd(),
            size,
            data: (0, 0),
        }
    }

    pub(super) fn at(&mut self, pos: u64) -> Region {
        if pos >= self.size {
            return Region::Data(u64::MAX);
        }
        if (self.data.0..self.data.1).contains(&pos) {
            return Region::Data(self.data.1);
        }
        let seek = |whence| {
            // SAFETY: lseek on a descriptor the caller keeps open.
            let r = unsafe { libc::lseek(self.fd, pos as libc::off_t, whence) };
            (r >= 0).then_some(r as u64)
        };
        match seek(libc::SEEK_DATA) {
            // No data after `pos`: a hole up to the end.
            None if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) => {
                Region::Hole(self.size)
            }
            // The file system cannot tell: read everything.
            None => Region::Data(u64::MAX),
            Some(d) if d > pos => Region::Hole(d.min(self.size)),
            Some(_) => {
                let end = seek(libc::SEEK_HOLE).unwrap_or(u64::MAX).max(pos + 1);
                self.data = (pos, end);
                Region::Data(end)
            }
        }
    }
}
