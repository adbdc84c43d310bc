//! The file service's requests, responses and manifests decoded from arbitrary bytes, and
//! what a storing node does with them before touching its store: no panic.
#![no_main]

use chord_files::manifest::{check_name, output_name};
use chord_files::service::{FilesRequest, FilesResponse};
use chord_files::store::verify;
use chord_files::{decode, Manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(FilesRequest::Store { key, data }) = decode::<FilesRequest>(data) {
        let _ = verify(&key, &data);
        if let Ok(m) = decode::<Manifest>(&data) {
            if m.validate().is_ok() {
                for i in 0..m.chunks.len().min(64) {
                    let _ = m.chunk_len(i);
                }
                let _ = m.supersedes(&m);
            }
        }
    }
    let _ = decode::<FilesResponse>(data);
    if let Some(at) = FilesResponse::data_at(data) {
        assert!(at <= data.len());
    }
    if let Ok(m) = decode::<Manifest>(data) {
        let _ = m.validate();
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = check_name(s);
        let _ = output_name(s);
    }
});
