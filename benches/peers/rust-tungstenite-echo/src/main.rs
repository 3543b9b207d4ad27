//! tokio-tungstenite echo server, a benchmark peer: `tungstenite-echo-peer 127.0.0.1:PORT`.
//!
//! One current_thread tokio runtime, so the server uses one core like the runner it is
//! compared with (compare.sh pins it to one core as well). No permessage-deflate (the
//! crate has none without its feature); messages and frames up to 16 MiB. The echo loop is
//! the crate's own example: forward every text/binary message back on the same socket.

use futures_util::{future, StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8003".into());
    let listener = TcpListener::bind(&addr).await?;
    eprintln!("tokio-tungstenite echo listening on ws://{addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream));
    }
}

async fn serve(stream: TcpStream) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(16 << 20))
        .max_frame_size(Some(16 << 20));
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (write, read) = ws.split();
    let _ = read
        .try_filter(|m| future::ready(m.is_text() || m.is_binary()))
        .forward(write)
        .await;
}
