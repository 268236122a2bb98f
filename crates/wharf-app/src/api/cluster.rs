//! `GET /api/cluster`: this node, the connections of the whole cluster, and the backplane's
//! counters (`null` without a backplane).

use std::sync::Arc;

use wharf::axum::Json;
use wharf::axum::extract::State;

use super::ApiState;
use super::admin::Admin;

/// `{"node", "local_connections", "connections" (cluster-wide, or null when the backplane
/// is down), "backplane": {…} | null}`.
pub(crate) async fn show(
    _admin: Admin,
    State(state): State<Arc<ApiState>>,
) -> Json<serde_json::Value> {
    let sender = &state.sender;
    Json(serde_json::json!({
        "node": sender.node(),
        "local_connections": sender.count(),
        "connections": sender.count_all().await.ok(),
        "backplane": sender.cluster_stats(),
    }))
}
