//! `resume`: replays, in `seq` order, every message after each cursor,
//! skipping what this connection already sent live; later live events for
//! those conversations continue without gap or duplicate.
//!
//! At most `resume_max_messages` are replayed per conversation: the ack
//! says, per conversation, how many were, whether that was all
//! (`recovered`) and up to which seq, so a client pages the rest over REST
//! rather than guess.

use chat_app::{ChatError, MessageCursor, PageLimit};
use chat_domain::{ConversationId, Seq};

use super::{Handled, Refusal, Reply};
use crate::ws::connection::{Connection, Gone};
use crate::ws::protocol::{
    ConversationResumed, RequestId, ResumeFailure, ResumeFrame, ResumeReport, ServerFrame,
};

/// How far the replay of one conversation got.
struct Progress {
    /// The last `seq` covered (sent now or before).
    after: Seq,
    /// Messages sent by this replay.
    replayed: usize,
    /// The highest `seq` sent by this replay, or the cursor.
    last_sent: u64,
}

impl ResumeFrame {
    /// Replays each conversation, in id order.
    pub(super) async fn apply(
        self,
        conn: &mut Connection,
        request_id: Option<&RequestId>,
    ) -> Handled {
        let limit = PageLimit::parse(PageLimit::MAX)?;
        let mut report = ResumeReport::default();
        let mut failures = Vec::new();
        let mut cursors: Vec<(uuid::Uuid, u64)> = self.cursors.into_iter().collect();
        cursors.sort_unstable();
        for (id, cursor) in cursors {
            let conversation = ConversationId::from_uuid(id);
            let Ok(after) = Seq::from_u64(cursor) else {
                failures.push(ResumeFailure {
                    conversation_id: id,
                    code: "invalid_request",
                    message: None,
                });
                continue;
            };
            let known = conn.tracks.get(conversation);
            let mut progress = Progress {
                after,
                replayed: 0,
                last_sent: cursor,
            };
            let outcome = replay(conn, conversation, limit, &mut progress).await;
            // Whatever was sent, live events must continue after it.
            conn.tracks
                .replayed(conversation, cursor, known, progress.last_sent);
            report.replayed += progress.replayed;
            match outcome {
                Ok(recovered) => {
                    report.conversations.insert(
                        id,
                        ConversationResumed {
                            replayed: progress.replayed,
                            recovered,
                            up_to_seq: progress.after.get(),
                        },
                    );
                }
                Err(err) => {
                    let Refusal { code, message, .. } = Refusal::from(err);
                    failures.push(ResumeFailure {
                        conversation_id: id,
                        code,
                        message: Some(message),
                    });
                }
            }
        }
        report.recovered =
            failures.is_empty() && report.conversations.values().all(|c| c.recovered);
        let request_id = request_id.cloned();
        let frame = match failures.first() {
            None => ServerFrame::Resumed { request_id, report },
            Some(first) => ServerFrame::ResumeFailed {
                request_id,
                code: first.code,
                message: "some conversations could not be resumed",
                failures,
                report,
            },
        };
        Ok(Reply::Now(frame))
    }
}

/// Sends the messages of `conversation` after `progress.after`, page by
/// page, up to the cap; `Ok(true)` when that was all of them.
async fn replay(
    conn: &mut Connection,
    conversation: ConversationId,
    limit: PageLimit,
    progress: &mut Progress,
) -> Result<bool, ChatError> {
    let max = conn.rt.settings.resume_max_messages;
    let known = conn.tracks.get(conversation);
    loop {
        let page = conn
            .rt
            .service
            .list_messages(
                &conn.principal,
                conversation,
                MessageCursor::After(progress.after),
                limit,
            )
            .await?;
        for message in &page.messages {
            let seq = message.seq.get();
            if known.is_some_and(|t| t.covers(seq)) {
                progress.after = message.seq;
                continue;
            }
            if progress.replayed >= max {
                return Ok(false);
            }
            progress.after = message.seq;
            conn.emit(&ServerFrame::new_message(message.clone()))
                .await
                .map_err(|Gone| ChatError::Unexpected(anyhow::anyhow!("connection gone")))?;
            progress.replayed += 1;
            progress.last_sent = progress.last_sent.max(seq);
        }
        if !page.has_more {
            return Ok(true);
        }
    }
}
