//! The fault proxy, one test per fault mode, asserting what a client sees: the Rust driver in
//! front of the stand, and a raw TCP client in front of an echo server where the driver's own
//! reconnects would hide the detail.

use std::time::{Duration, Instant};

use mongodb::Client;
use mongodb::bson::doc;
use mongodb::error::ErrorKind;
use mongodb::options::ClientOptions;
use sv0_testkit::{FaultProxy, stand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn client_through(proxy: &FaultProxy) -> Client {
    let mut options = ClientOptions::parse(stand().uri_via(proxy.addr()))
        .await
        .unwrap();
    options.retry_reads = Some(false);
    options.retry_writes = Some(false);
    options.server_selection_timeout = Some(Duration::from_secs(10));
    Client::with_options(options).unwrap()
}

async fn ping(client: &Client) -> mongodb::error::Result<()> {
    client
        .database("admin")
        .run_command(doc! {"ping": 1})
        .await
        .map(|_| ())
}

async fn echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = socket.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn latency_delays_every_round_trip_until_restored() {
    let proxy = FaultProxy::start(stand().addr()).unwrap();
    let client = client_through(&proxy).await;
    ping(&client).await.unwrap();

    proxy.set_latency(Duration::from_millis(500));
    let started = Instant::now();
    ping(&client).await.unwrap();
    let slow = started.elapsed();
    assert!(
        slow >= Duration::from_millis(1_000),
        "request and reply each delayed: {slow:?}"
    );

    proxy.restore();
    let started = Instant::now();
    ping(&client).await.unwrap();
    let fast = started.elapsed();
    assert!(
        fast < Duration::from_millis(1_000),
        "latency ended: {fast:?}"
    );
}

#[tokio::test]
async fn cut_closes_open_connections_and_the_next_operation_on_them_fails() {
    let proxy = FaultProxy::start(stand().addr()).unwrap();
    let client = client_through(&proxy).await;
    ping(&client).await.unwrap();
    assert!(proxy.open_connections() >= 1);

    proxy.cut_connections();
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.open_connections() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(proxy.open_connections(), 0, "every connection was closed");

    let error = ping(&client)
        .await
        .expect_err("the pooled connection is gone");
    assert!(
        matches!(
            error.kind.as_ref(),
            ErrorKind::Io(_) | ErrorKind::ConnectionPoolCleared { .. }
        ),
        "a network error, not a server error: {error}"
    );
    ping(&client)
        .await
        .expect("the next operation opens a new connection and succeeds");
}

#[tokio::test]
async fn cut_ends_a_raw_connection_with_eof() {
    let proxy = FaultProxy::start(echo_server().await).unwrap();
    let mut socket = TcpStream::connect(proxy.addr()).await.unwrap();
    socket.write_all(b"ping").await.unwrap();
    let mut reply = [0u8; 4];
    socket.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"ping");

    proxy.cut_connections();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the client sees the close: {read:?}"
    );
}

#[tokio::test]
async fn black_hole_accepts_but_never_answers_until_restored() {
    let proxy = FaultProxy::start(stand().addr()).unwrap();
    let client = client_through(&proxy).await;
    ping(&client).await.unwrap();

    proxy.black_hole();
    let during = tokio::time::timeout(Duration::from_secs(2), ping(&client)).await;
    assert!(during.is_err(), "no answer while black-holed: {during:?}");

    proxy.restore();
    tokio::time::timeout(Duration::from_secs(15), ping(&client))
        .await
        .expect("answered after restore")
        .expect("a successful ping after restore");
}

#[tokio::test]
async fn black_hole_holds_bytes_and_delivers_them_after_restore() {
    let proxy = FaultProxy::start(echo_server().await).unwrap();
    proxy.black_hole();
    let mut socket = TcpStream::connect(proxy.addr())
        .await
        .expect("a black-holed proxy still accepts connections");
    socket.write_all(b"held").await.unwrap();
    let mut reply = [0u8; 4];
    let silent =
        tokio::time::timeout(Duration::from_millis(700), socket.read_exact(&mut reply)).await;
    assert!(silent.is_err(), "nothing comes back during the black hole");

    proxy.restore();
    tokio::time::timeout(Duration::from_secs(5), socket.read_exact(&mut reply))
        .await
        .expect("the held bytes are delivered after restore")
        .unwrap();
    assert_eq!(&reply, b"held");
}
