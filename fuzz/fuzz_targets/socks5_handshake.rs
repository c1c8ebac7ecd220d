//! The SOCKS5 handshake a client sends an egress listener with `protocol = "socks5"`
//! (src/egress/socks5.rs): the greeting, RFC 1929 credentials and the CONNECT request.
//!
//! Properties, for any bytes:
//! - no parser panics;
//! - a message parsed takes no more bytes than there are, and parses the same from
//!   exactly those bytes; no shorter prefix parses (messages delimit themselves, so a
//!   client's next message is never eaten);
//! - the method chosen is one offered, or "no acceptable methods";
//! - a request's host is not empty and its port not 0.

#![no_main]

use junction::egress::socks5::{
    NO_ACCEPTABLE, Parsed, choose_method, parse_credentials, parse_greeting, parse_request,
};
use libfuzzer_sys::fuzz_target;

fn delimited<T: PartialEq + std::fmt::Debug>(data: &[u8], parse: fn(&[u8]) -> Parsed<T>) -> Option<T> {
    let (value, used) = parse(data).ok()??;
    assert!(used <= data.len());
    assert_eq!(parse(&data[..used]), Ok(Some((value, used))));
    for shorter in 0..used {
        assert!(!matches!(parse(&data[..shorter]), Ok(Some(_))), "{shorter} of {used}");
    }
    parse(data).ok()?.map(|(value, _)| value)
}

fuzz_target!(|data: &[u8]| {
    if let Some(methods) = delimited(data, parse_greeting) {
        for required in [false, true] {
            let method = choose_method(&methods, required);
            assert!(method == NO_ACCEPTABLE || methods.contains(&method));
        }
    }
    delimited(data, parse_credentials);
    if let Some(target) = delimited(data, parse_request) {
        assert!(!target.host.is_empty());
        assert_ne!(target.port, 0);
    }
});
