//! A real S3 server for benchmarks and manual tries: s3s-fs serving a folder over HTTP on
//! 127.0.0.1 (`cargo run --release --example s3-server -- DIR PORT ACCESS_KEY SECRET_KEY`).
//! Buckets are the folder's subfolders.

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, root, port, access, secret] = args.as_slice() else {
        eprintln!("usage: s3-server DIR PORT ACCESS_KEY SECRET_KEY");
        std::process::exit(2);
    };
    let fs = s3s_fs::FileSystem::new(root).map_err(|e| format!("cannot serve {root}: {e:?}"))?;
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(access.as_str(), secret.as_str()));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>()?)).await?;
    eprintln!("s3-server: http://{} serving {root}", listener.local_addr()?);
    let http = ConnBuilder::new(TokioExecutor::new());
    loop {
        let (socket, _) = listener.accept().await?;
        // As S3 endpoints do: a small answer's body must not wait for the ACK of its headers
        // (Nagle beside the client's delayed ACK costs 40 ms per request).
        socket.set_nodelay(true)?;
        let conn = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
