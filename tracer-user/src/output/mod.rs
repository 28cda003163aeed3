//! What leaves the agent: the schema's lines ([`summary`] among them), their
//! human rendering ([`pretty`]), the non-blocking writer ([`sink`]) and the
//! `--write-pcap` evidence file ([`pcap`]).

pub mod line;
pub mod lines;
pub mod pcap;
pub mod pretty;
pub mod sink;
pub mod summary;
