//! Where events come from: the kernel's programs ([`kernel`]) live, or a
//! packet capture ([`capture`]) offline. Both produce [`event`] types and
//! share the edge-range filter ([`ranges`]).

pub mod capture;
pub mod event;
pub mod kernel;
pub mod names;
pub mod ranges;
