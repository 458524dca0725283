//! Protocol versions (`docs/protocol.md` §7).

/// A protocol version: `major << 16 | minor` on the wire.
///
/// Peers with different majors cannot talk; a higher minor only adds fields
/// in reserved space or new message types, which older peers skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Incompatible revisions.
    pub major: u16,
    /// Compatible additions.
    pub minor: u16,
}

/// The version this crate implements.
pub const PROTOCOL_VERSION: Version = Version { major: 1, minor: 0 };

impl Version {
    /// Wire form: `major << 16 | minor`.
    pub const fn to_wire(self) -> u32 {
        (self.major as u32) << 16 | self.minor as u32
    }

    /// Version of a wire word.
    pub const fn from_wire(w: u32) -> Self {
        Version {
            major: (w >> 16) as u16,
            minor: w as u16,
        }
    }

    /// The version a publisher speaking `ours` picks for a subscriber offering
    /// `min..=max`: the highest version in the range with our major and a minor
    /// no higher than ours. `None` when there is none.
    pub fn negotiate(ours: Version, min: Version, max: Version) -> Option<Version> {
        if min > max {
            return None;
        }
        let chosen = if max.major > ours.major {
            ours
        } else {
            core::cmp::min(ours, max)
        };
        if chosen.major == ours.major && chosen >= min && chosen <= max {
            Some(chosen)
        } else {
            None
        }
    }
}

impl core::fmt::Display for Version {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const fn v(major: u16, minor: u16) -> Version {
        Version { major, minor }
    }

    #[test]
    fn negotiation_picks_the_highest_common_version() {
        assert_eq!(Version::negotiate(v(1, 0), v(1, 0), v(1, 0)), Some(v(1, 0)));
        assert_eq!(Version::negotiate(v(1, 2), v(1, 0), v(1, 1)), Some(v(1, 1)));
        assert_eq!(Version::negotiate(v(1, 2), v(1, 0), v(3, 0)), Some(v(1, 2)));
        assert_eq!(Version::negotiate(v(1, 0), v(2, 0), v(2, 5)), None);
        assert_eq!(Version::negotiate(v(2, 0), v(1, 0), v(1, 9)), None);
        assert_eq!(Version::negotiate(v(1, 0), v(1, 1), v(1, 0)), None);
        assert_eq!(Version::from_wire(v(3, 7).to_wire()), v(3, 7));
    }
}
