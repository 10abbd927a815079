//! Unit tests of socket admission.

use super::*;

#[test]
fn upgrade_detection() {
    let req = Request::builder()
        .header(UPGRADE, "WebSocket")
        .header(CONNECTION, "keep-alive, Upgrade")
        .body(())
        .unwrap();
    assert!(is_upgrade(&req));
    let plain = Request::builder().body(()).unwrap();
    assert!(!is_upgrade(&plain));
}
