//! One sentence per finding on what to check, in the operator's terms, in the
//! spirit of Cloudflare's troubleshooting pages.

use std::net::IpAddr;

use super::finding::Cause;
use crate::source::{event::Flow, kernel::listeners::Listening};

fn addr_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// `no_listener` once the agent read what does listen on the port
/// (`listening`, from /proc): where it listens instead, or that nothing
/// does.
pub fn no_listener_seen(flow: &Flow, listening: &[Listening]) -> String {
    let origin = addr_port(flow.origin, flow.origin_port);
    let port = flow.origin_port;
    if listening.is_empty() {
        return format!(
            "nothing listens on port {port} on this host, on any address: start the web server, or point the origin's DNS record or Origin Rule at the port it serves"
        );
    }
    let who = |l: &Listening| {
        let at = addr_port(l.addr, port);
        match &l.process {
            Some((pid, comm)) => format!("{at} ({comm}, pid {pid})"),
            None => at,
        }
    };
    let all: Vec<String> = listening.iter().map(who).collect();
    let covers = listening.iter().any(|l| {
        l.addr == flow.origin
            || (l.addr.is_unspecified() && l.addr.is_ipv4() == flow.origin.is_ipv4())
    });
    if covers {
        return format!(
            "{} listens now, but {origin} refused the edge: the server was restarting or not yet up then; check its restarts (`journalctl -u <server>`)",
            all.join(", ")
        );
    }
    format!(
        "port {port} listens only on {}, not on {origin} where the edge connects: bind the server to {} or to every address (nginx: `listen {port};` and `listen [::]:{port};`)",
        all.join(", "),
        flow.origin
    )
}

/// How a 520/524 over TLS was told: " (TLS 1.3, request and response
/// encrypted ...)"; nothing over plain HTTP.
fn over_tls(detail: Option<&str>) -> String {
    detail
        .filter(|d| d.starts_with("TLS"))
        .map(|d| format!(" ({d})"))
        .unwrap_or_default()
}

/// One sentence on what to check, in the operator's terms.
pub fn hint(cause: Cause, flow: &Flow, drop_reason: Option<&str>) -> String {
    let origin = addr_port(flow.origin, flow.origin_port);
    let port = flow.origin_port;
    let edge = flow.edge;
    match cause {
        Cause::NoListener => format!(
            "nothing listens on {origin}: is the web server running and bound to this address? check `ss -tlnp 'sport = :{port}'`"
        ),
        Cause::FirewallReject => format!(
            "a firewall rule rejects {edge} on port {port}: find the REJECT rule (`nft list ruleset`, `iptables -S`) and allow Cloudflare's IP ranges"
        ),
        Cause::FirewallDrop => format!(
            "a firewall rule drops SYNs from {edge} to port {port}: check `nft list ruleset` / `iptables -L -v -n` and allow Cloudflare's IP ranges"
        ),
        Cause::ListenOverflow => format!(
            "the listener on port {port} accepts too slowly and its accept queue is full: check the server's workers (hung or overloaded?) and its backlog (`ss -tln 'sport = :{port}'`, net.core.somaxconn)"
        ),
        Cause::SynackUnacked => {
            let dropped = drop_reason.map(|r| format!(" (this host dropped it: {r})")).unwrap_or_default();
            format!(
                "the SYN-ACK to {edge} was never acknowledged{dropped}: the return path is broken; check `ip route get {edge}`, the next hop, asymmetric routing, rp_filter and egress firewall rules"
            )
        }
        Cause::KernelDrop => match drop_reason {
            Some("IP_RPFILTER") => format!(
                "the reverse-path filter dropped the SYN from {edge}: the route back to it leaves by another interface; check rp_filter and `ip route get {edge}`"
            ),
            Some(r) => format!(
                "the kernel dropped the SYN from {edge} to port {port} ({r}): check `nstat -az` and the kernel log for that reason"
            ),
            None => format!("the kernel dropped the SYN from {edge} to port {port}"),
        },
        Cause::TlsAlertFromOrigin => format!(
            "the origin's TLS stack refused the edge's handshake on port {port} ({}): check the server's TLS versions, ciphers and the certificate for the SNI (`openssl s_client -connect {origin} -servername <host>`)",
            drop_reason.unwrap_or("alert")
        ),
        Cause::TlsClosedDuringHandshake => format!(
            "the origin closed the connection after the edge's ClientHello without answering: check the TLS configuration for this SNI and the server's error log (`openssl s_client -connect {origin}`)"
        ),
        Cause::NotTls => format!(
            "the origin answered the edge's ClientHello on port {port} with something that is not TLS: is this port serving plain HTTP? set the Cloudflare SSL mode or the listener right"
        ),
        Cause::EdgeRejectedCertificate => format!(
            "the edge rejected the origin's certificate ({}): check expiry, the hostnames in its SAN and its chain (`--check-certs`, Cloudflare Full (strict) needs a publicly trusted or Origin CA certificate)",
            drop_reason.unwrap_or("certificate alert")
        ),
        Cause::EdgeAbortedAfterCertificate => "with TLS 1.3 the edge closed right after the origin's certificate without finishing the handshake (its alert is encrypted, so this is inferred): most likely it rejected the certificate; run with --check-certs".to_owned(),
        Cause::ResetAfterRequest => format!(
            "the origin reset the connection after reading the request, before answering: check the application server behind {origin} (crashes, worker limits, SO_LINGER 0 closes) and its logs{}",
            over_tls(drop_reason)
        ),
        Cause::ClosedWithoutResponse => format!(
            "the origin closed the connection after reading the request without any response byte: check the application's error log and timeouts (e.g. an upstream that crashes or a keepalive mismatch){}",
            over_tls(drop_reason)
        ),
        Cause::HeadersTooLarge => format!(
            "the response header block is over Cloudflare's 16 KiB limit ({}): trim large headers or cookies set by the application",
            drop_reason.unwrap_or("size unknown")
        ),
        Cause::MalformedResponse => format!(
            "the origin answered an HTTP request on port {port} with bytes that are not an HTTP status line: is another service listening on this port?"
        ),
        Cause::ResponseTimeout => format!(
            "the origin read the request but sent no response byte in time: find the slow handler or upstream behind {origin} (Cloudflare waits 100 s){}",
            over_tls(drop_reason)
        ),
        Cause::RequestUnacked => format!(
            "the edge's request to {origin} was not acknowledged after the handshake{}: a firewall or security group dropping established traffic (`nft list ruleset`, conntrack), or a receive path that drops (MTU, offloads)",
            drop_reason.map_or(String::new(), |r| format!(" (the kernel dropped it: {r})"))
        ),
        // Its line's hint is the status's own (diagnose::statuses).
        Cause::OriginErrorStatus => format!(
            "the origin itself answered with an error status on port {port}: check the web server's error log and its upstream"
        ),
        Cause::KeepaliveRace => format!(
            "the origin closed this kept-alive connection (its keep-alive timeout ran out) just as the edge sent a new request on it: raise the keep-alive timeout of the server behind {origin} above the edge's idle timeout (Cloudflare: 900 s; nginx keepalive_timeout, Apache KeepAliveTimeout){}",
            over_tls(drop_reason)
        ),
        Cause::SynUnanswered => format!(
            "SYNs from {edge} to port {port} got no answer and nothing on this host explained why: check upstream firewalls or security groups, and that the SYNs reach this host's TCP stack"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listening(addr: &str, process: Option<(u32, &str)>) -> Listening {
        Listening {
            addr: addr.parse().unwrap(),
            inode: 1,
            process: process.map(|(p, c)| (p, c.to_owned())),
        }
    }

    #[test]
    fn no_listener_says_where_it_listens_instead() {
        let flow = Flow {
            edge: "198.18.0.1".parse().unwrap(),
            edge_port: 40_000,
            origin: "198.18.0.2".parse().unwrap(),
            origin_port: 8080,
        };
        assert!(no_listener_seen(&flow, &[]).starts_with("nothing listens on port 8080"));
        let h = no_listener_seen(
            &flow,
            &[
                listening("127.0.0.1", Some((42, "node"))),
                listening("::1", None),
            ],
        );
        assert!(
            h.contains(
                "listens only on 127.0.0.1:8080 (node, pid 42), [::1]:8080, not on 198.18.0.2:8080"
            ),
            "{h}"
        );
        // Bound to every IPv4 address by now: it was down or restarting.
        for addr in ["0.0.0.0", "198.18.0.2"] {
            let h = no_listener_seen(&flow, &[listening(addr, None)]);
            assert!(h.contains("listens now"), "{h}");
        }
        // `::` does not say whether it takes IPv4 (IPV6_V6ONLY).
        let h = no_listener_seen(&flow, &[listening("::", None)]);
        assert!(h.contains("listens only on [::]:8080"), "{h}");
    }
}
