//! Replays the committed corpus of every fuzz target through its property: a short,
//! deterministic fuzz run for CI (the corpus holds the inputs libFuzzer kept for new
//! coverage, so this walks every path the long runs reached).

use std::path::Path;

fn replay(target: &str, mut property: impl FnMut(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus directory exists") {
        let path = entry.expect("readable").path();
        let data = std::fs::read(&path).expect("readable input");
        property(&data);
        count += 1;
    }
    count
}

#[test]
fn the_frame_decode_corpus_holds_its_property() {
    let inputs = replay("frame_decode", fuzz::frame_decode);
    assert!(inputs >= 50, "only {inputs} inputs: the corpus is missing");
}

#[test]
fn the_session_corpus_holds_its_property() {
    let mut session = fuzz::Session::new();
    let inputs = replay("session", |data| session.run(data));
    assert!(inputs >= 50, "only {inputs} inputs: the corpus is missing");
}
