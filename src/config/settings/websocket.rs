//! `websocket:`: limits on relayed sockets (message sizes, timeouts, caps).

use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::super::raw::{self, ByteSize, DurationValue};
use super::super::{ConfigError, Ctx};
use crate::pipeline::WebSocketSettings;

/// tungstenite's own ceiling for a message; larger limits would only raise memory exposure.
const MESSAGE_CEILING: u64 = 64 << 20;

pub(in crate::config) fn websocket(
    raw: &raw::RawWebSocket,
    send_timeout: Duration,
    ctx: &Ctx<'_>,
) -> Result<WebSocketSettings, ConfigError> {
    let bytes =
        |v: &Option<Spanned<ByteSize>>, default: u64| v.as_ref().map_or(default, |b| b.value.0);
    let time = |v: &Option<Spanned<DurationValue>>, default: Duration| {
        v.as_ref().map_or(default, |d| d.value.0)
    };
    let at = |v: Option<Location>| v.unwrap_or(Location::UNKNOWN);

    let max_message = bytes(&raw.max_message_bytes, 64 << 10);
    let max_first = bytes(&raw.max_first_frame_bytes, 4 << 10);
    if max_message == 0 || max_message > MESSAGE_CEILING {
        return Err(ctx.err(
            at(raw.max_message_bytes.as_ref().map(|b| b.referenced)),
            "websocket.max_message_bytes",
            "must be between 1 byte and 64MiB",
            Some("the default is 64KiB; ARCP's own messages are a few KiB"),
        ));
    }
    if max_first == 0 || max_first > max_message {
        return Err(ctx.err(
            at(raw.max_first_frame_bytes.as_ref().map(|b| b.referenced)),
            "websocket.max_first_frame_bytes",
            "must be at least 1 byte and at most websocket.max_message_bytes",
            Some("the default is 4KiB, room for an authentication frame with its token"),
        ));
    }
    for (value, path) in [
        (&raw.auth_timeout, "websocket.auth_timeout"),
        (&raw.idle_timeout, "websocket.idle_timeout"),
    ] {
        if let Some(d) = value.as_ref().filter(|d| d.value.0.is_zero()) {
            return Err(ctx.err(d.referenced, path, "must be longer than 0", None));
        }
    }
    for (value, path) in [
        (&raw.max_per_address, "websocket.max_per_address"),
        (&raw.max_public, "websocket.max_public"),
    ] {
        if let Some(m) = value.as_ref().filter(|m| m.value == 0) {
            return Err(ctx.err(m.referenced, path, "must be at least 1", None));
        }
    }
    Ok(WebSocketSettings {
        // Both fit: at most MESSAGE_CEILING.
        max_message_bytes: max_message as usize,
        max_first_frame_bytes: max_first as usize,
        auth_timeout: time(&raw.auth_timeout, Duration::from_secs(30)),
        idle_timeout: time(&raw.idle_timeout, Duration::from_secs(300)),
        send_timeout,
        max_per_address: raw.max_per_address.as_ref().map_or(64, |m| m.value),
        max_public: raw.max_public.as_ref().map_or(256, |m| m.value),
    })
}
