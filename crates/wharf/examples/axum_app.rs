//! An ordinary axum application (its own routes and state) with wharf inside it: a chat
//! route and a push endpoint, on the application's own port. What wharf adds to the
//! application is the `push` handler and the lines marked `+ wharf`: 15 lines of code. The
//! chat handler is the application's WebSocket logic, as `index` is its HTTP logic.
//!
//! ```text
//! cargo run -p wharf --example axum_app
//! websocat ws://127.0.0.1:3000/chat/lobby           # in two terminals: they hear each other
//! curl -d 'from the API' http://127.0.0.1:3000/push/lobby
//! curl http://127.0.0.1:3000/                         # the app's own route
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use wharf::{Conn, HandlerError, Message, OpenRequest};

/// The application's state.
#[derive(Clone)]
struct AppState {
    visits: Arc<AtomicU64>,
    chat: wharf::Sender, // + wharf
}

async fn index(State(state): State<AppState>) -> String {
    let visits = state.visits.fetch_add(1, Ordering::Relaxed) + 1;
    format!("hello, visitor {visits}\n")
}

/// `POST /push/{room}`: the body goes to everyone in the room, on every node. (+ wharf)
async fn push(State(state): State<AppState>, Path(room): Path<String>, body: String) -> String {
    format!("{} connections\n", state.chat.push_room(&room, body, None)) // + wharf
} // + wharf

/// `/chat/{room}`: everyone in a room hears everyone else.
struct Chat;

impl wharf::Handler for Chat {
    async fn on_open(&self, conn: &Conn, _request: &OpenRequest) -> Result<(), HandlerError> {
        conn.join(conn.param("room").unwrap_or("lobby"));
        Ok(())
    }

    async fn on_message(&self, conn: &Conn, message: Message) -> Result<(), HandlerError> {
        for room in conn.rooms() {
            conn.sender()
                .push_room(&room, message.clone(), Some(conn.id()));
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = wharf::Config::empty().with_server(wharf::ServerConfig::mounted("chat")); // + wharf
    let wharf = wharf::Server::builder(config) // + wharf
        .websocket("chat", wharf::Router::new().route("/chat/{room}", Chat)) // + wharf
        .bind() // + wharf
        .await?; // + wharf
    let state = AppState {
        visits: Arc::default(),
        chat: wharf.sender(), // + wharf
    };
    let app = Router::new()
        .route("/", get(index))
        .route("/push/{room}", post(push)) // + wharf
        .route_service("/chat/{room}", wharf.service("chat")?) // + wharf
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    // On Ctrl-C or SIGTERM wharf closes its connections (1001) and runs every `on_close`.
    let chat = tokio::spawn(wharf.serve(wharf::shutdown_signal())); // + wharf
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(wharf::shutdown_signal())
    .await?;
    chat.await??; // + wharf
    Ok(())
}
