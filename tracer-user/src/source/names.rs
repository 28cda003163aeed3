//! The kernel's names for its drop reasons and TCP states, decoded into
//! enums the diagnosis rules match on. Matched by name, never by value (the
//! values differ between kernels; [`crate::source::kernel::records`] names
//! them from the running kernel's BTF or tracefs). A name not listed here
//! keeps the kernel's own spelling in `Other`, and every name is written out
//! as the running kernel spells it.

use std::fmt;

/// One enum per kind of kernel name: the variants the rules need, each with
/// its kernel spelling, and `Other` for the rest.
macro_rules! kernel_names {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $spelling:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
            /// Any other name, as the running kernel spells it.
            Other(String),
        }

        impl $name {
            /// From the running kernel's name (without its enum prefix).
            pub fn from_kernel(name: &str) -> Self {
                match name {
                    $($spelling => Self::$variant,)*
                    other => Self::Other(other.to_owned()),
                }
            }

            /// The name as the kernel spells it.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $spelling,)*
                    Self::Other(name) => name,
                }
            }
        }

        impl From<&str> for $name {
            fn from(name: &str) -> Self {
                Self::from_kernel(name)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        /// The kernel's spelling: any non-empty name.
        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "description": concat!(stringify!($name), " as the running kernel spells it"),
                    "type": "string",
                    "minLength": 1,
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

kernel_names! {
    /// Why the kernel freed a packet (`enum skb_drop_reason`).
    DropReason {
        /// The kernel gave no reason.
        NotSpecified = "NOT_SPECIFIED",
        /// No socket for the segment: nothing listens on the port.
        NoSocket = "NO_SOCKET",
        /// A netfilter rule dropped it.
        NetfilterDrop = "NETFILTER_DROP",
        /// The reverse-path filter dropped it.
        IpRpfilter = "IP_RPFILTER",
        /// The listener's accept queue was full.
        TcpListenOverflow = "TCP_LISTEN_OVERFLOW",
        /// A closing socket purged its queues.
        QueuePurge = "QUEUE_PURGE",
    }
}

kernel_names! {
    /// A TCP socket state (`TCP_ESTABLISHED` ...).
    TcpState {
        /// A request socket that answered the SYN.
        SynRecv = "TCP_SYN_RECV",
        /// The handshake completed.
        Established = "TCP_ESTABLISHED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_decode_and_others_keep_their_spelling() {
        assert_eq!(DropReason::from_kernel("NO_SOCKET"), DropReason::NoSocket);
        assert_eq!(DropReason::NoSocket.as_str(), "NO_SOCKET");
        let other = DropReason::from_kernel("NEIGH_FAILED");
        assert_eq!(other, DropReason::Other("NEIGH_FAILED".into()));
        assert_eq!(other.to_string(), "NEIGH_FAILED");
        assert_eq!(TcpState::from_kernel("TCP_SYN_RECV"), TcpState::SynRecv);
        assert_eq!(TcpState::from_kernel("UNKNOWN(99)").as_str(), "UNKNOWN(99)");
    }
}
