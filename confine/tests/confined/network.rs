//! TCP: connects only to the listed ports, no binds, and no socket kind that slips past the
//! port rules.

use std::net::TcpListener;

use crate::harness::{Feature, needs, owned_dir, policy, python_errno};

const CONNECT: &str = r#"
import socket
def attempt():
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
"#;

fn listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a local listener");
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

#[test]
fn connect_to_a_listed_port_succeeds() {
    if !needs(&[Feature::LandlockNetwork, Feature::Python]) {
        return;
    }
    let write = owned_dir();
    let (_listener, port) = listener();
    let errno = python_errno(
        &policy(write.path(), &[port]),
        CONNECT,
        &[&port.to_string()],
    );
    assert_eq!(errno, "ok");
}

#[test]
fn connect_to_an_unlisted_port_is_refused_with_eacces() {
    if !needs(&[Feature::LandlockNetwork, Feature::Python]) {
        return;
    }
    let write = owned_dir();
    let (_allowed, allowed) = listener();
    let (other, port) = listener();
    let errno = python_errno(
        &policy(write.path(), &[allowed]),
        CONNECT,
        &[&port.to_string()],
    );
    // EACCES is Landlock's refusal; ECONNREFUSED would mean the connect reached the network.
    assert_eq!(errno, "EACCES");
    assert!(other.accept().is_err(), "a connection reached the listener");
}

#[test]
fn tcp_bind_is_refused() {
    if !needs(&[Feature::LandlockNetwork, Feature::Python]) {
        return;
    }
    let write = owned_dir();
    let code = r#"
import socket
def attempt():
    socket.socket().bind(("127.0.0.1", 0))
"#;
    assert_eq!(
        python_errno(&policy(write.path(), &[]), code, &[]),
        "EACCES"
    );
}

#[test]
fn mptcp_socket_is_not_supported() {
    if !needs(&[Feature::Seccomp, Feature::Python]) {
        return;
    }
    let write = owned_dir();
    let code = r#"
import socket
def attempt():
    socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
"#;
    assert_eq!(
        python_errno(&policy(write.path(), &[]), code, &[]),
        "EPROTONOSUPPORT"
    );
}

#[test]
fn tcp_fast_open_send_is_refused() {
    if !needs(&[Feature::Seccomp, Feature::Python]) {
        return;
    }
    let write = owned_dir();
    let (other, port) = listener();
    let code = r#"
import socket
def attempt():
    socket.socket().sendto(b"x", socket.MSG_FASTOPEN, ("127.0.0.1", int(sys.argv[1])))
"#;
    assert_eq!(
        python_errno(&policy(write.path(), &[]), code, &[&port.to_string()]),
        "EPERM"
    );
    assert!(other.accept().is_err(), "a connection reached the listener");
}

/// A named Unix socket a confined process could otherwise reach (Landlock does not check the
/// connect): one nobody may use by its permissions, in a directory it may search.
#[test]
fn a_named_unix_socket_cannot_be_reached_but_a_socket_pair_works() {
    use std::os::unix::fs::PermissionsExt;
    if !needs(&[Feature::Seccomp, Feature::Python]) {
        return;
    }
    let write = owned_dir();
    let outside = tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o755))
        .tempdir()
        .unwrap();
    let path = outside.path().join("service.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let connect = r#"
import socket
def attempt():
    socket.socket(socket.AF_UNIX).connect(sys.argv[1])
"#;
    let path = path.to_str().unwrap();
    assert_eq!(
        python_errno(&policy(write.path(), &[]), connect, &[path]),
        "EPERM"
    );
    let pair = r#"
import socket
def attempt():
    a, b = socket.socketpair()
    a.send(b"x")
    assert b.recv(1) == b"x"
"#;
    assert_eq!(python_errno(&policy(write.path(), &[]), pair, &[]), "ok");
}
