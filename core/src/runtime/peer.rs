//! The credentials of the process at the other end of a connected Unix
//! socket: `SO_PEERCRED` (socket(7), unix(7)), recorded by the kernel when
//! the peer called `connect` or `listen`.
//!
//! Read through `nix`, whose `pid` is a plain `pid_t`: a peer in another PID
//! namespace (a container) is reported with pid 0, which rustix 1.1's
//! `socket_peercred` cannot represent (its `Pid` is non-zero, so that read
//! comes back as a bogus "Success" error).

use rustix::fd::AsFd;

/// A peer's pid (0 when it is in another PID namespace), uid and gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// `getsockopt(SOL_SOCKET, SO_PEERCRED)` on `socket`.
pub(crate) fn peer_cred(socket: &impl AsFd) -> Result<PeerCred, rustix::io::Errno> {
    let c = nix::sys::socket::getsockopt(socket, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| rustix::io::Errno::from_raw_os_error(e as i32))?;
    Ok(PeerCred {
        pid: c.pid(),
        uid: c.uid(),
        gid: c.gid(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socketpair_reports_this_process() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let c = peer_cred(&a).unwrap();
        assert_eq!(c.pid, std::process::id() as i32);
        assert_eq!(c.uid, rustix::process::getuid().as_raw());
        assert_eq!(c.gid, rustix::process::getgid().as_raw());
    }
}
