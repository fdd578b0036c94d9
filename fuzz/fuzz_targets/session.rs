//! libFuzzer target: [`fuzz::Session::run`] on arbitrary bytes.
#![no_main]

use std::sync::{LazyLock, Mutex};

static SESSION: LazyLock<Mutex<fuzz::Session>> = LazyLock::new(|| Mutex::new(fuzz::Session::new()));

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    SESSION
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .run(data)
});
