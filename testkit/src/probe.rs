//! Readiness checks over plain HTTP.
//!
//! etcd and MinIO answer health checks without TLS; a few lines of HTTP/1.0
//! keep the harness free of an HTTP client stack.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// The status code and body of `GET path` on `127.0.0.1:port`, or None when
/// nothing answers yet.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_at(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port), path)
}

/// The status code and body of `GET path` on `address`, or None when
/// nothing answers yet.
pub fn http_get_at(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&address, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Some((status, body))
}
