//! A hand-driven HTTP/1.1 request over rustls, for what a normal client cannot do: announce a
//! body and not send it, or stream a chunked body that never ends, and see when the server
//! answers.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, ServerName};

/// What the server did with the request.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The status line, or what went wrong reading it.
    pub(crate) status: String,
    /// Body bytes the client managed to write before the answer (or an error) came.
    pub(crate) written: usize,
    /// From the first byte sent to the status line.
    pub(crate) elapsed: Duration,
}

/// POSTs to `/validate/enforce` at `addr` with `headers` (besides Host and Content-Type),
/// then writes `chunks` until they run out or the connection refuses more, then reads the
/// status line (waiting at most 10 s).
pub(crate) fn post(
    addr: SocketAddr,
    ca_pem: &str,
    headers: &str,
    chunks: impl Iterator<Item = Vec<u8>>,
) -> Outcome {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("ca pem")).expect("ca");
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let connection = rustls::ClientConnection::new(Arc::new(config), name).expect("tls");
    let socket = TcpStream::connect(addr).expect("connect");
    socket
        .set_write_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(connection, socket);

    let started = Instant::now();
    let head = format!(
        "POST /validate/enforce HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{headers}\r\n"
    );
    let mut written = 0;
    if tls.write_all(head.as_bytes()).is_ok() {
        for chunk in chunks {
            if tls.write_all(&chunk).and_then(|()| tls.flush()).is_err() {
                break;
            }
            written += chunk.len();
        }
    }
    // Read with rustls by hand: StreamOwned would first try to write what is pending, and a
    // server that stopped reading may have closed its side for writing already.
    let rustls::StreamOwned { conn, sock } = &mut tls;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let status = loop {
        match conn.reader().read(&mut buffer) {
            Ok(n) if n > 0 => {
                answer.extend_from_slice(&buffer[..n]);
                if let Some(end) = answer.windows(2).position(|w| w == b"\r\n") {
                    break String::from_utf8_lossy(&answer[..end]).to_string();
                }
                continue;
            }
            Ok(_) => break "(closed without an answer)".to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => break format!("(no answer: {e})"),
        }
        match conn.read_tls(sock) {
            Ok(0) => break "(connection closed without an answer)".to_string(),
            Ok(_) => {
                if let Err(e) = conn.process_new_packets() {
                    break format!("(tls error: {e})");
                }
            }
            Err(e) => break format!("(no answer: {e})"),
        }
    };
    Outcome {
        status,
        written,
        elapsed: started.elapsed(),
    }
}
