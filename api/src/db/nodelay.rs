//! `TCP_NODELAY` on the connections to PostgreSQL.
//!
//! sqlx 0.9.0 no longer sets `TCP_NODELAY` on its sockets
//! (launchbadge/sqlx#4335; fixed upstream by #4336, not in a release yet).
//! Without it, the kernel holds back the last part of a statement longer
//! than one TCP segment until the server acknowledges the rest, and the
//! server delays that acknowledgement by up to 40 ms: the CSV import's
//! 500-row inserts waited about 40 ms each, most of an import's time.
//! libpq and every other PostgreSQL driver set the option; until sqlx does
//! again, each new pool connection sets it on this process's sockets that
//! are connected to the database's port. Remove this module once sqlx sets
//! it itself (the test in this module then still passes).

/// Sets `TCP_NODELAY` on every TCP socket of this process whose peer port
/// is `port`, and returns how many it changed. Linux only (it lists the
/// process's sockets in `/proc/self/fd`); elsewhere it changes nothing.
pub(crate) fn set_on_sockets_to(port: u16) -> usize {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::{BorrowedFd, RawFd};
        let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
            return 0;
        };
        let mut changed = 0;
        for entry in entries.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<RawFd>().ok())
            else {
                continue;
            };
            // SAFETY: the descriptor is only borrowed for the two socket
            // option calls below. Should another thread close it meanwhile,
            // they fail with EBADF; should the number be reused at once, they
            // touch a socket that is this process's own all the same.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            let socket = socket2::SockRef::from(&fd);
            let to_port = socket
                .peer_addr()
                .ok()
                .and_then(|peer| peer.as_socket())
                .is_some_and(|peer| peer.port() == port);
            if to_port
                && socket.r#type().ok() == Some(socket2::Type::STREAM)
                && socket.tcp_nodelay().ok() == Some(false)
                && socket.set_tcp_nodelay(true).is_ok()
            {
                changed += 1;
            }
        }
        changed
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = port;
        0
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn sets_nodelay_on_sockets_to_the_port_only() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let other = TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let theirs = TcpStream::connect(other.local_addr().unwrap()).unwrap();
        ours.set_nodelay(false).unwrap();
        theirs.set_nodelay(false).unwrap();
        assert_eq!(
            super::set_on_sockets_to(server.local_addr().unwrap().port()),
            1
        );
        assert!(ours.nodelay().unwrap());
        assert!(
            !theirs.nodelay().unwrap(),
            "a socket to another port is left alone"
        );
        assert_eq!(
            super::set_on_sockets_to(server.local_addr().unwrap().port()),
            0,
            "a second call finds nothing left to change"
        );
    }
}
