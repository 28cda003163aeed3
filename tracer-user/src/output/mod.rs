//! What leaves the agent: the schema's line types ([`line`], the summary's
//! reports in [`report`], their wire shapes in [`fields`], their JSON Schema
//! in [`schema`]), built from what
//! the pipeline knows ([`lines`], [`summary`]), their human rendering
//! ([`pretty`]), the non-blocking writer ([`sink`]) and the `--write-pcap`
//! evidence file ([`pcap`]).

mod fields;
pub mod line;
pub mod lines;
pub mod pcap;
pub mod pretty;
pub mod report;
pub mod schema;
pub mod sink;
pub mod summary;
