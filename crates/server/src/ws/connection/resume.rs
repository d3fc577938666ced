//! Where a `resume` and live events meet: what this connection has sent of
//! each conversation, so that a replay skips what already went out live
//! and live events skip what a replay sent.

use std::collections::HashMap;

use chat_domain::ConversationId;

/// Every `seq` from `lo` to `hi` of one conversation has been sent
/// (contiguous: live messages come in order, replays fill from a cursor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::ws) struct Track {
    /// The lowest `seq` sent.
    pub(in crate::ws) lo: u64,
    /// The highest `seq` sent.
    pub(in crate::ws) hi: u64,
}

impl Track {
    /// Whether `seq` was sent.
    pub(in crate::ws) fn covers(self, seq: u64) -> bool {
        (self.lo..=self.hi).contains(&seq)
    }
}

/// What this connection has sent, by conversation.
#[derive(Debug, Default)]
pub(in crate::ws) struct Tracks(HashMap<ConversationId, Track>);

impl Tracks {
    /// What was sent of `conversation`.
    pub(in crate::ws) fn get(&self, conversation: ConversationId) -> Option<Track> {
        self.0.get(&conversation).copied()
    }

    /// Records live message `seq`; `false` when a replay already sent it.
    pub(super) fn live(&mut self, conversation: ConversationId, seq: u64) -> bool {
        match self.0.get_mut(&conversation) {
            None => {
                self.0.insert(conversation, Track { lo: seq, hi: seq });
                true
            }
            Some(track) if seq > track.hi => {
                track.hi = seq;
                true
            }
            Some(track) => seq < track.lo,
        }
    }

    /// Records a replay of `conversation` from `cursor` (exclusive) that
    /// sent up to `last_sent` (`cursor` when it sent nothing), beside
    /// `known`, what was sent before it: live events continue after it.
    pub(in crate::ws) fn replayed(
        &mut self,
        conversation: ConversationId,
        cursor: u64,
        known: Option<Track>,
        last_sent: u64,
    ) {
        let hi = known.map_or(last_sent, |t| t.hi.max(last_sent));
        let lo = known.map_or(cursor + 1, |t| t.lo.min(cursor + 1));
        if hi >= cursor {
            self.0.insert(conversation, Track { lo, hi });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_messages_a_replay_sent_are_dropped_and_the_rest_pass() {
        let c = ConversationId::new_v7();
        let mut tracks = Tracks::default();
        // Replayed 4..=6 after cursor 3.
        tracks.replayed(c, 3, None, 6);
        assert_eq!(tracks.get(c), Some(Track { lo: 4, hi: 6 }));
        for (seq, passes) in [(5, false), (6, false), (7, true), (7, false), (2, true)] {
            assert_eq!(tracks.live(c, seq), passes, "seq {seq}");
        }
    }

    #[test]
    fn a_replay_extends_what_went_out_live() {
        let c = ConversationId::new_v7();
        let mut tracks = Tracks::default();
        assert!(tracks.live(c, 10));
        assert!(tracks.live(c, 11));
        let known = tracks.get(c);
        // Replayed from 2, skipping 10 and 11, up to 9.
        tracks.replayed(c, 2, known, 9);
        assert_eq!(tracks.get(c), Some(Track { lo: 3, hi: 11 }));
        assert!(tracks.get(c).is_some_and(|t| t.covers(3) && !t.covers(12)));
    }

    #[test]
    fn a_replay_that_sent_nothing_still_marks_where_live_events_resume() {
        let c = ConversationId::new_v7();
        let mut tracks = Tracks::default();
        tracks.replayed(c, 8, None, 8);
        assert_eq!(tracks.get(c), Some(Track { lo: 9, hi: 8 }));
        assert!(tracks.live(c, 9));
        assert!(!tracks.live(c, 9), "sent once");
    }
}
