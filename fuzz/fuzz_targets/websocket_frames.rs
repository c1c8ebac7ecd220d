//! The WebSocket frames a masking route reads (src/masking/websocket.rs), from either
//! side, in any pieces.
//!
//! Properties, for any bytes:
//! - nothing panics, and a frame is never longer than the limit;
//! - read in two pieces (split where the input says) the bytes give the same frames and
//!   the same refusal as read whole;
//! - every frame read, written again as the relay writes it, is read back the same, and
//!   the messages its data frames make up are within the limit.

#![no_main]

use junction::masking::websocket::{
    Frame, FrameReader, MessageJoiner, Refusal, Sender, write_frame,
};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 4096;

fn read(sender: Sender, pieces: &[&[u8]]) -> (Vec<Frame>, Option<Refusal>) {
    let mut reader = FrameReader::new(sender, LIMIT);
    let mut frames = Vec::new();
    for piece in pieces {
        reader.push(piece);
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(refusal) => return (frames, Some(refusal)),
            }
        }
    }
    (frames, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, bytes)) = data.split_first() else {
        return;
    };
    let sender = if first & 1 == 0 {
        Sender::Client
    } else {
        Sender::Endpoint
    };
    let cut = usize::from(first >> 1) * bytes.len() / 128;
    let whole = read(sender, &[bytes]);
    let split = read(sender, &[&bytes[..cut.min(bytes.len())], &bytes[cut.min(bytes.len())..]]);
    assert_eq!(whole, split, "pieces read as the whole");

    let mut joiner = MessageJoiner::default();
    for frame in whole.0 {
        assert!(frame.payload.len() <= LIMIT);
        let mut again = Vec::new();
        write_frame(&mut again, frame.fin, frame.opcode, &frame.payload, frame.key);
        let (reread, refusal) = read(sender, &[&again]);
        assert_eq!(refusal, None);
        assert_eq!(reread, [frame.clone()]);
        if !frame.is_control()
            && let Ok(Some(message)) = joiner.push(frame, LIMIT)
        {
            assert!(message.data.len() <= LIMIT);
        }
    }
});

