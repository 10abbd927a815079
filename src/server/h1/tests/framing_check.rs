//! The own loop's parser against the framing check hyper's requests pass through.

use super::super::accept;
use crate::server::framing::bodyless;

/// Every head the own loop serves is one the framing check finds unambiguous and bodyless
/// (the parser takes those facts in its own pass instead of calling the check): every
/// request line from a pool, then up to two field lines and the empty line, each line from a
/// pool of fields that hit each of the check's rules, each ended in CRLF, LF, CR or nothing.
/// A head of plain lines and harmless fields is served.
#[test]
fn every_head_served_is_one_the_framing_check_passes() {
    let request_lines = [
        "GET / HTTP/1.1",
        "POST /x HTTP/1.1",
        "CONNECT gw:443 HTTP/1.1",
        "",
        "GET / HTTP/1.0",
        "PRI * HTTP/2.0",
        " GET / HTTP/1.1",
        "\r\nGET / HTTP/1.1",
        "\nGET / HTTP/1.1",
    ];
    // (field, harmless)
    let pool = [
        ("Host: gw", true),
        ("X-Client-Fingerprint: fp", true),
        ("Content-Length: 0", true),
        ("Content-Length: 0000000000000000000", true),
        ("Content-Length: 00000000000000000000", false),
        ("Content-Length: 5", false),
        ("Content-Length: 0 ", true),
        ("Transfer-Encoding: chunked", false),
        ("Upgrade: websocket", false),
        ("upgrade: h2c", false),
        (" folded", false),
        ("\tfolded", false),
        ("X-A: a\0b", false),
        ("X-B: a\rb", false),
        ("X-C: a\nb", false),
        ("NoColon", false),
        ("", false),
    ];
    let ends = ["\r\n", "\n", "\r", ""];
    let mut heads: Vec<(String, bool)> = Vec::new();
    let fields = |n: usize| -> Vec<Vec<(usize, usize)>> {
        let one: Vec<(usize, usize)> = (0..pool.len())
            .flat_map(|f| (0..ends.len()).map(move |e| (f, e)))
            .collect();
        match n {
            0 => vec![vec![]],
            1 => one.iter().map(|&x| vec![x]).collect(),
            _ => one
                .iter()
                .flat_map(|&x| one.iter().map(move |&y| vec![x, y]))
                .collect(),
        }
    };
    for (r, request_line) in request_lines.iter().enumerate() {
        for n in 0..=2 {
            for chosen in fields(n) {
                for (line_end, last_end) in [(0, 0), (1, 0), (0, 1), (2, 0)] {
                    let mut head = format!("{request_line}{}", ends[line_end]);
                    let mut harmless = r < 2 && line_end == 0 && last_end == 0;
                    for &(f, e) in &chosen {
                        head.push_str(pool[f].0);
                        head.push_str(ends[e]);
                        harmless &= pool[f].1 && e == 0;
                    }
                    head.push_str(ends[last_end]);
                    let lengths = chosen
                        .iter()
                        .filter(|&&(f, _)| pool[f].0.starts_with("Content-Length"))
                        .count();
                    heads.push((head, harmless && lengths <= 1));
                }
            }
        }
    }
    let mut served = 0;
    for (head, harmless) in &heads {
        let parsed = accept(head.as_bytes());
        if parsed.is_some() {
            assert!(
                bodyless(head.as_bytes()),
                "served, but the framing check refuses {head:?}"
            );
            served += 1;
        }
        if *harmless {
            assert!(bodyless(head.as_bytes()), "{head:?}");
            assert!(parsed.is_some(), "not served: {head:?}");
        }
    }
    assert!(heads.len() > 30_000, "{}", heads.len());
    assert!(served > 100, "{served}");
}
