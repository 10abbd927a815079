//! The HTTP/1.1 framing reader (`server::framing`) on arbitrary bytes read in arbitrary pieces.
//!
//! Input: two bytes that choose two cut positions, then the bytes of the connection.
//!
//! Invariants: nothing panics; the pieces give exactly what one read gives (the first
//! ambiguous head and why, the heads completed and begun, the reader's state), so a head
//! cannot pass or be flagged depending on how TCP cut it; a flagged head is one that was
//! completed; at most one head is begun and not completed.
#![no_main]

use arcp_gateway::server::scan_in_pieces;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (choice, input) = data.split_at(data.len().min(2));
    let whole = scan_in_pieces(input, &[]);
    let (flag, heads, begun, _) = &whole;
    assert!(heads <= begun && *begun <= heads + 1, "heads {heads}, begun {begun}");
    if let Some((index, _)) = flag {
        assert!(index < heads, "flagged head {index} of {heads}");
    }
    let mut cuts: Vec<usize> = choice
        .iter()
        .map(|&c| usize::from(c) * input.len() / 255)
        .collect();
    cuts.sort_unstable();
    assert_eq!(scan_in_pieces(input, &cuts), whole, "cut at {cuts:?}");
});
