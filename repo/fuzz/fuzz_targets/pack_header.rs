//! A pack's header: its length field and the entries it lists, sealed with the
//! repository's key so inputs reach the decoder, and raw so the MAC check sees them too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_repo::Id;
use sluice_repo::crypto::Key;
use sluice_repo::pack::{decode_header, parse_tail};

fuzz_target!(|data: &[u8]| {
    let key = Key::from_kdf_output(&[7u8; 64]);
    let id = Id::hash(data);
    let _ = decode_header(data, &id);
    // The input as the decrypted header of a pack whose blobs take `area` bytes.
    let (area, header) = match data.split_first_chunk::<4>() {
        Some((a, rest)) => (u64::from(u32::from_le_bytes(*a) % (1 << 20)), rest),
        None => (0, data),
    };
    let mut tail = key.seal(header);
    let hlen = tail.len() as u32;
    tail.extend_from_slice(&hlen.to_le_bytes());
    let size = area + tail.len() as u64;
    if let Ok(Ok(blobs)) = parse_tail(&key, &id, &tail, size) {
        let end: u64 = blobs.iter().map(|b| u64::from(b.length)).sum();
        assert_eq!(
            end + tail.len() as u64,
            size,
            "accepted a header that does not fit"
        );
        for b in &blobs {
            let _ = b.plain_length();
        }
    }
    // The input as a pack's raw tail, of a pack of any size.
    for size in [data.len() as u64, data.len() as u64 + 100, u64::MAX] {
        let _ = parse_tail(&key, &id, data, size);
    }
});
