//! The client's IP: the socket peer, unless that peer is a trusted proxy; then the rightmost
//! `X-Forwarded-For` hop that is not a trusted proxy (the leftmost hops are client-controlled).

use actix_web::HttpRequest;
use ipnet::IpNet;
use std::net::IpAddr;

pub fn client_ip(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    resolve(peer, forwarded_for(req).as_deref(), trusted)
}

fn forwarded_for(req: &HttpRequest) -> Option<String> {
    let values: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// Pure core of `client_ip`, testable without a socket.
pub fn resolve(peer: IpAddr, xff: Option<&str>, trusted: &[IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let Some(xff) = xff else { return Some(peer) };
    let mut hops = Vec::new();
    for hop in xff.split(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => hops.push(ip),
            // A garbled chain cannot be trusted past this point; stop at the proxy.
            Err(_) => return Some(peer),
        }
    }
    let mut last = peer;
    for ip in hops.into_iter().rev() {
        if !is_trusted(&ip) {
            return Some(ip);
        }
        last = ip;
    }
    Some(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_cannot_spoof_their_address() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            resolve(ip("198.51.100.9"), Some("1.2.3.4"), &trusted),
            Some(ip("198.51.100.9"))
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            resolve(
                ip("10.0.0.1"),
                Some("6.6.6.6, 203.0.113.5, 10.0.0.7"),
                &trusted
            ),
            Some(ip("203.0.113.5"))
        );
        assert_eq!(
            resolve(ip("10.0.0.1"), None, &trusted),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(
            resolve(ip("10.0.0.1"), Some("garbage"), &trusted),
            Some(ip("10.0.0.1"))
        );
    }
}
