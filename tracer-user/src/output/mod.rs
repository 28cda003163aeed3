//! What leaves the agent: the schema's line types ([`line`]), built from what
//! the pipeline knows ([`lines`], [`summary`]), their human rendering
//! ([`pretty`]), the non-blocking writer ([`sink`]) and the `--write-pcap`
//! evidence file ([`pcap`]).

pub mod line;
pub mod lines;
pub mod pcap;
pub mod pretty;
pub mod sink;
pub mod summary;
