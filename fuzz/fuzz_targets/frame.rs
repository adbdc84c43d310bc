//! Every frame a peer or client can send, decoded from arbitrary bytes: no panic, no
//! allocation beyond the frame cap.
#![no_main]

use chord_net::frame::{check_header, decode, read_frame};
use chord_net::wire::{Frame, Hello, HelloReply};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let _ = decode::<Hello>(data);
    let _ = decode::<HelloReply>(data);
    let _ = decode::<Frame>(data);
    if let Some((_, at)) = chord_net::wire::service_answer_at(data) {
        assert!(at <= data.len());
    }
    if data.len() >= 4 {
        let _ = check_header([data[0], data[1], data[2], data[3]], 1 << 20);
    }
    // The same bytes as a stream: a sequence of frames read until the first error.
    futures_lite::future::block_on(async {
        let mut r = futures_lite::io::Cursor::new(data);
        for _ in 0..16 {
            let d = Duration::from_secs(1);
            if read_frame::<_, Frame>(&mut r, 1 << 16, d, d).await.is_err() {
                break;
            }
        }
    });
});
