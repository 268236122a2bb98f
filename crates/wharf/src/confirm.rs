//! Confirmed delivery: pushes that report what the receiving nodes did with them.
//!
//! A plain [`Sender`] push to another node's connection returns once it is published; this
//! handle asks the owner over the backplane and waits (bounded) for its answer. Room, user
//! and broadcast pushes report which nodes acknowledged, with their delivery counts, and
//! which nodes that presence lists for the target did not answer in time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::cluster::{AskTo, Command, NodePresence, Outcome, Scope};
use crate::{ConnId, Message, SendError, Sender};

/// How long a confirmed push waits for answers, unless [`Confirm::wait`] says otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(1);

/// Pushes that report their delivery, from [`Sender::confirm`].
///
/// ```no_run
/// # async fn demo(sender: wharf::Sender, id: wharf::ConnId) -> Result<(), wharf::SendError> {
/// // Ok only once the connection's node queued it; NotFound, Closed or QueueFull as that
/// // node says; NoAnswer when it did not answer within the wait.
/// sender.confirm().push(id, "hello").await?;
/// let receipt = sender.confirm().push_room("lobby", "news", None).await;
/// println!("{} here, {:?} elsewhere, no answer from {:?}", receipt.local, receipt.nodes, receipt.missing);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Confirm<'a> {
    sender: &'a Sender,
    wait: Duration,
}

/// What a confirmed room, user or broadcast push reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Receipt {
    /// This node's connections that queued it.
    pub local: usize,
    /// Every other node that answered within the wait, with how many of its connections
    /// queued it.
    pub nodes: BTreeMap<u16, usize>,
    /// Nodes that presence lists for the target (members of the room, connections of the
    /// user, or any live node for a broadcast) but that did not answer within the wait: a
    /// node that died, or one cut off from the backplane.
    pub missing: Vec<u16>,
    /// Whether it was published to the other nodes: false without a cluster or while the
    /// backplane is down.
    pub cluster: bool,
}

impl Sender {
    /// Pushes that wait for the receiving nodes' answers (at most one second by default).
    pub fn confirm(&self) -> Confirm<'_> {
        Confirm {
            sender: self,
            wait: DEFAULT_WAIT,
        }
    }
}

impl<'a> Confirm<'a> {
    /// The same handle with another bound on the wait for answers.
    pub fn wait(mut self, wait: Duration) -> Confirm<'a> {
        self.wait = wait;
        self
    }

    /// Queues `message` to connection `id` on any node and returns that node's answer:
    /// `Ok` once queued; [`SendError::NotFound`], [`SendError::Closed`] or
    /// [`SendError::QueueFull`] as the owner says; [`SendError::NoAnswer`] when it did not
    /// answer within the wait (the message may or may not have arrived);
    /// [`SendError::Backplane`] when the backplane is down (nothing was sent).
    pub async fn push(&self, id: ConnId, message: impl Into<Message>) -> Result<(), SendError> {
        let sender = self.sender;
        let cluster = match sender.cluster() {
            Some(cluster) if id.node() != sender.node() => cluster,
            _ => return sender.push(id, message),
        };
        if !cluster.is_connected() {
            return Err(SendError::Backplane(
                "the cluster backplane is unreachable".into(),
            ));
        }
        let command = Command::Push {
            conn: id,
            message: message.into(),
        };
        let mut asked = cluster.ask(AskTo::Node(id.node()), sender.node(), command);
        match tokio::time::timeout(self.wait, asked.answers.recv()).await {
            Ok(Some(answer)) => match answer.outcome {
                Outcome::Delivered => Ok(()),
                Outcome::NotFound => Err(SendError::NotFound(id)),
                Outcome::QueueFull => Err(SendError::QueueFull(id)),
                Outcome::Closing => Err(SendError::Closed(id)),
            },
            _ => Err(SendError::NoAnswer(id)),
        }
    }

    /// Sends `message` to every member of `room` on every node (but `except`) and reports
    /// which nodes delivered it to how many members.
    pub async fn push_room(
        &self,
        room: &str,
        message: impl Into<Message>,
        except: Option<ConnId>,
    ) -> Receipt {
        let message = message.into();
        let local = self.sender.room_local(room, &message, except);
        let command = Command::Room {
            room: room.to_owned(),
            message,
            except,
        };
        self.fan_out(AskTo::Room(room), command, local, |node| {
            node.rooms.get(room).is_some_and(|m| !m.is_empty())
        })
        .await
    }

    /// Sends `message` to every connection of `user` on every node and reports which nodes
    /// delivered it to how many connections.
    pub async fn push_user(&self, user: &str, message: impl Into<Message>) -> Receipt {
        let message = message.into();
        let local = self.sender.user_local(user, &message);
        let command = Command::User {
            user: user.to_owned(),
            message,
        };
        self.fan_out(AskTo::All, command, local, |node| {
            node.users.get(user).is_some_and(|c| !c.is_empty())
        })
        .await
    }

    /// Sends `message` to every connection in `scope` on every node and reports which nodes
    /// delivered it to how many connections.
    pub async fn broadcast(&self, message: impl Into<Message>, scope: Scope) -> Receipt {
        let message = message.into();
        let local = self.sender.scope_local(&scope, &message);
        let command = Command::Broadcast { scope, message };
        self.fan_out(AskTo::All, command, local, |_| true).await
    }

    /// Publishes `command` as an ask, then collects answers until every node presence lists
    /// as `expected` has answered, or the wait is over.
    async fn fan_out(
        &self,
        to: AskTo<'_>,
        command: Command,
        local: usize,
        expected: impl Fn(&NodePresence) -> bool,
    ) -> Receipt {
        let mut receipt = Receipt {
            local,
            ..Receipt::default()
        };
        let sender = self.sender;
        let Some(cluster) = sender.cluster() else {
            return receipt;
        };
        receipt.cluster = cluster.is_connected();
        let deadline = tokio::time::Instant::now() + self.wait;
        // Published first, presence read meanwhile: the answers wait in the ask's queue.
        let mut asked = cluster.ask(to, sender.node(), command);
        if !receipt.cluster {
            return receipt;
        }
        let waiting = tokio::time::timeout_at(deadline, cluster.others(sender.node())).await;
        let mut missing: BTreeSet<u16> = match waiting {
            Ok(Ok(others)) => others
                .iter()
                .filter(|node| expected(node))
                .map(|node| node.node)
                .collect(),
            _ => BTreeSet::new(),
        };
        while !missing.is_empty() {
            match tokio::time::timeout_at(deadline, asked.answers.recv()).await {
                Ok(Some(answer)) => {
                    missing.remove(&answer.node);
                    receipt.nodes.insert(answer.node, answer.count as usize);
                }
                _ => break,
            }
        }
        // Answers already here from nodes presence did not list (a member joined since).
        while let Ok(answer) = asked.answers.try_recv() {
            receipt.nodes.insert(answer.node, answer.count as usize);
        }
        receipt.missing = missing.into_iter().collect();
        receipt
    }
}
