//! People and tokens: password verification, gateway tokens, upstream token checks, PINs
//! and the gateway-owned `/auth/*` endpoints.

pub mod credentials;
