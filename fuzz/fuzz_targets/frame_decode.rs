//! libFuzzer target: [`fuzz::frame_decode`] on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz::frame_decode(data));
