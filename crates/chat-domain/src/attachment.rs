//! Attachments: the accepted media types, safe display names, checksums,
//! storage keys and the metadata of an uploaded file.
//!
//! Nothing a user typed ever reaches a storage path: a [`StorageKey`] is
//! built from ids, the upload month and the sniffed type only. The original
//! file name survives as display metadata ([`AttachmentName`]), sanitised.

use std::fmt;

use chrono::{DateTime, Datelike, Utc};

use crate::ids::{AttachmentId, ConversationId, MessageId, TenantId};
use crate::principal::Sender;

/// The most attachments one message may carry.
pub const MAX_ATTACHMENTS_PER_MESSAGE: usize = 10;

/// The attachments a send names, in the sender's order: at most
/// [`MAX_ATTACHMENTS_PER_MESSAGE`], each named once. May be empty (a message
/// with a body needs none).
///
/// ```
/// use chat_domain::{AttachmentId, AttachmentIds, AttachmentIdsError};
///
/// let (a, b) = (AttachmentId::new_v7(), AttachmentId::new_v7());
/// assert_eq!(AttachmentIds::parse(vec![a, b]).unwrap().as_slice(), &[a, b]);
/// assert_eq!(AttachmentIds::parse(vec![a, b, a]), Err(AttachmentIdsError::Repeated(a)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct AttachmentIds(Vec<AttachmentId>);

/// Why a list of attachment ids was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentIdsError {
    /// More than [`MAX_ATTACHMENTS_PER_MESSAGE`] ids (how many were given).
    #[error("at most {MAX_ATTACHMENTS_PER_MESSAGE} attachments per message, got {0}")]
    TooMany(usize),
    /// This id is named more than once (the first one repeated).
    #[error("attachment {0} is given twice")]
    Repeated(AttachmentId),
}

impl AttachmentIds {
    /// Validates a list: the count first, then repetitions.
    ///
    /// # Errors
    /// [`AttachmentIdsError::TooMany`] above [`MAX_ATTACHMENTS_PER_MESSAGE`],
    /// [`AttachmentIdsError::Repeated`] for the first id named twice.
    pub fn parse(ids: Vec<AttachmentId>) -> Result<Self, AttachmentIdsError> {
        if ids.len() > MAX_ATTACHMENTS_PER_MESSAGE {
            return Err(AttachmentIdsError::TooMany(ids.len()));
        }
        let mut seen = std::collections::HashSet::with_capacity(ids.len());
        if let Some(repeated) = ids.iter().find(|id| !seen.insert(**id)) {
            return Err(AttachmentIdsError::Repeated(*repeated));
        }
        Ok(Self(ids))
    }

    /// No attachment at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The ids, in order.
    pub fn as_slice(&self) -> &[AttachmentId] {
        &self.0
    }

    /// The ids, in order, owned.
    pub fn into_vec(self) -> Vec<AttachmentId> {
        self.0
    }
}

/// The file types accepted as attachments, as decided by sniffing their
/// content (never by name or declared type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaType {
    /// JPEG image.
    Jpeg,
    /// PNG image.
    Png,
    /// GIF image.
    Gif,
    /// WebP image.
    Webp,
    /// PDF document.
    Pdf,
    /// Word 97-2003 document (OLE2 compound file with a `WordDocument` stream).
    Doc,
    /// Word document (Office Open XML).
    Docx,
}

impl MediaType {
    /// Every accepted type.
    pub const ALL: [Self; 7] = [
        Self::Jpeg,
        Self::Png,
        Self::Gif,
        Self::Webp,
        Self::Pdf,
        Self::Doc,
        Self::Docx,
    ];

    /// The MIME type sent as `Content-Type`.
    pub const fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Gif => "image/gif",
            Self::Webp => "image/webp",
            Self::Pdf => "application/pdf",
            Self::Doc => "application/msword",
            Self::Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        }
    }

    /// The canonical file extension (without the dot), used in storage keys
    /// and appended to display names that lack a matching one.
    pub const fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Gif => "gif",
            Self::Webp => "webp",
            Self::Pdf => "pdf",
            Self::Doc => "doc",
            Self::Docx => "docx",
        }
    }

    /// Whether `ext` (lowercase, without the dot) names this type.
    fn matches_extension(self, ext: &str) -> bool {
        ext == self.extension() || (self == Self::Jpeg && ext == "jpeg")
    }

    /// The type of a stored MIME string.
    pub fn from_mime(mime: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.mime() == mime)
    }

    /// Whether browsers display it as an image.
    pub const fn is_image(self) -> bool {
        matches!(self, Self::Jpeg | Self::Png | Self::Gif | Self::Webp)
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mime())
    }
}

/// A file name fit for display and for `Content-Disposition`: no path
/// parts, no control or bidirectional-override characters, no quotes, at
/// most [`AttachmentName::MAX_CHARS`] characters, never empty, and ending in
/// an extension of the sniffed type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttachmentName(String);

/// A stored name that breaks the [`AttachmentName`] rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("attachment name is not sanitised")]
pub struct AttachmentNameError;

impl AttachmentName {
    /// The longest name, in characters.
    pub const MAX_CHARS: usize = 120;

    /// The name used when nothing usable is left of the original.
    pub const FALLBACK_STEM: &'static str = "attachment";

    fn is_banned(c: char) -> bool {
        c.is_control()
            || matches!(c, '"' | '\\' | '/' | '<' | '>' | ':' | '|' | '?' | '*' | ';')
            // Bidirectional overrides and isolates ("invoice\u{202e}fdp.exe").
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }

    /// Makes a safe display name out of whatever the client sent (or
    /// nothing). Never fails: what cannot be kept is dropped.
    ///
    /// ```
    /// use chat_domain::{AttachmentName, MediaType};
    /// let name = AttachmentName::sanitize(Some("../../etc/passwd"), MediaType::Pdf);
    /// assert_eq!(name.as_str(), "passwd.pdf");
    /// let name = AttachmentName::sanitize(Some("scan.JPEG"), MediaType::Jpeg);
    /// assert_eq!(name.as_str(), "scan.JPEG");
    /// ```
    pub fn sanitize(raw: Option<&str>, media: MediaType) -> Self {
        let raw = raw.unwrap_or_default();
        // Only the last path component, whichever separator the client used.
        let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
        let cleaned: String = base.chars().filter(|c| !Self::is_banned(*c)).collect();
        let trimmed = cleaned.trim().trim_matches('.').trim();
        let (stem, ext) = match trimmed.rsplit_once('.') {
            Some((stem, ext)) if media.matches_extension(&ext.to_ascii_lowercase()) => {
                (stem.trim_end_matches('.').trim_end(), ext)
            }
            _ => (trimmed, media.extension()),
        };
        let stem = if stem.is_empty() {
            Self::FALLBACK_STEM
        } else {
            stem
        };
        let room = Self::MAX_CHARS - 1 - ext.chars().count();
        let stem: String = stem.chars().take(room).collect();
        Self(format!("{}.{ext}", stem.trim_end()))
    }

    /// Re-validates a name read back from storage.
    ///
    /// # Errors
    /// [`AttachmentNameError`] when it is not what [`AttachmentName::sanitize`]
    /// produces.
    pub fn parse(stored: &str) -> Result<Self, AttachmentNameError> {
        let ok = !stored.is_empty()
            && stored.chars().count() <= Self::MAX_CHARS
            && !stored.starts_with('.')
            && !stored.chars().any(Self::is_banned);
        if ok {
            Ok(Self(stored.to_owned()))
        } else {
            Err(AttachmentNameError)
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `Content-Disposition` value that makes browsers save the file
    /// under this name instead of opening it: an ASCII `filename` for old
    /// clients and the exact name as RFC 5987 `filename*`.
    ///
    /// ```
    /// use chat_domain::{AttachmentName, MediaType};
    /// let name = AttachmentName::sanitize(Some("Überweisung 1.pdf"), MediaType::Pdf);
    /// assert_eq!(
    ///     name.content_disposition(),
    ///     "attachment; filename=\"_berweisung 1.pdf\"; filename*=UTF-8''%C3%9Cberweisung%201.pdf"
    /// );
    /// ```
    pub fn content_disposition(&self) -> String {
        let ascii: String = self
            .0
            .chars()
            .map(|c| if c.is_ascii() { c } else { '_' })
            .collect();
        let mut encoded = String::with_capacity(self.0.len() * 3);
        for byte in self.0.bytes() {
            let keep = byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte);
            if keep {
                encoded.push(char::from(byte));
            } else {
                encoded.push_str(&format!("%{byte:02X}"));
            }
        }
        format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
    }
}

impl fmt::Display for AttachmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A SHA-256 digest of an attachment's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest([u8; 32]);

/// Text that is not 64 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a sha256 digest is 64 lowercase hex digits")]
pub struct DigestError;

impl Sha256Digest {
    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses the lowercase hex form.
    ///
    /// # Errors
    /// [`DigestError`] for anything but 64 lowercase hex digits.
    pub fn parse_hex(raw: &str) -> Result<Self, DigestError> {
        let raw = raw.as_bytes();
        if raw.len() != 64 {
            return Err(DigestError);
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(DigestError),
        };
        let mut out = [0u8; 32];
        for (i, pair) in raw.chunks_exact(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

/// Where an attachment's bytes live in a file store:
/// `chat/<tenant>/<conversation>/<yyyy>/<mm>/<uuid>.<ext>`. Built from ids,
/// the upload time and the sniffed type only.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StorageKey(String);

/// A stored key that is not of the [`StorageKey`] form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("storage key is not of the form chat/<tenant>/<conversation>/<yyyy>/<mm>/<uuid>.<ext>")]
pub struct StorageKeyError;

impl StorageKey {
    /// The key of an attachment uploaded at `at`.
    ///
    /// ```
    /// use chat_domain::{AttachmentId, ConversationId, MediaType, StorageKey, TenantId};
    /// use chrono::{TimeZone, Utc};
    /// let at = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
    /// let key = StorageKey::for_attachment(
    ///     TenantId::new_v4(), ConversationId::new_v7(), AttachmentId::new_v7(), MediaType::Png, at);
    /// assert!(key.as_str().starts_with("chat/"));
    /// assert!(key.as_str().contains("/2026/03/"));
    /// assert!(key.as_str().ends_with(".png"));
    /// ```
    pub fn for_attachment(
        tenant: TenantId,
        conversation: ConversationId,
        id: AttachmentId,
        media: MediaType,
        at: DateTime<Utc>,
    ) -> Self {
        Self(format!(
            "chat/{tenant}/{conversation}/{:04}/{:02}/{id}.{}",
            at.year(),
            at.month(),
            media.extension()
        ))
    }

    /// Re-validates a key read back from storage: only lowercase ASCII
    /// letters, digits, `-`, `.` and `/`, no empty or dot-only segment.
    ///
    /// # Errors
    /// [`StorageKeyError`] otherwise.
    pub fn parse(raw: &str) -> Result<Self, StorageKeyError> {
        let charset = raw.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b'/')
        });
        let segments_ok = raw
            .split('/')
            .all(|s| !s.is_empty() && s.bytes().any(|b| b != b'.'));
        if raw.starts_with("chat/") && raw.len() <= 256 && charset && segments_ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(StorageKeyError)
        }
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An upload to record, once its bytes are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAttachment {
    /// Its id.
    pub id: AttachmentId,
    /// The tenant.
    pub tenant: TenantId,
    /// The conversation it was uploaded into; only its messages may use it.
    pub conversation_id: ConversationId,
    /// Who uploaded it; only they may attach it to a message.
    pub uploader: Sender,
    /// Display name.
    pub name: AttachmentName,
    /// Sniffed type.
    pub media_type: MediaType,
    /// Size in bytes (at least 1).
    pub size: u64,
    /// SHA-256 of the bytes.
    pub sha256: Sha256Digest,
    /// Where the bytes are.
    pub storage_key: StorageKey,
    /// Upload time.
    pub created_at: DateTime<Utc>,
}

impl NewAttachment {
    /// The stored form, not attached to any message yet.
    pub fn into_attachment(self) -> Attachment {
        Attachment {
            id: self.id,
            tenant: self.tenant,
            conversation_id: self.conversation_id,
            uploader: self.uploader,
            name: self.name,
            media_type: self.media_type,
            size: self.size,
            sha256: self.sha256,
            storage_key: self.storage_key,
            created_at: self.created_at,
            message_id: None,
        }
    }
}

/// A stored attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Its id.
    pub id: AttachmentId,
    /// The tenant.
    pub tenant: TenantId,
    /// The conversation it belongs to.
    pub conversation_id: ConversationId,
    /// Who uploaded it.
    pub uploader: Sender,
    /// Display name.
    pub name: AttachmentName,
    /// Sniffed type.
    pub media_type: MediaType,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes.
    pub sha256: Sha256Digest,
    /// Where the bytes are.
    pub storage_key: StorageKey,
    /// Upload time.
    pub created_at: DateTime<Utc>,
    /// The message that carries it; `None` while it waits to be sent (and is
    /// swept as an orphan if it waits too long).
    pub message_id: Option<MessageId>,
}

/// An attachment as its message shows it: what a reader needs to list and
/// fetch the file, without where its bytes are or their checksum (those
/// stay with the stored [`Attachment`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedFile {
    /// Its id (the file is fetched by it).
    pub id: AttachmentId,
    /// Display name.
    pub name: AttachmentName,
    /// Sniffed type.
    pub media_type: MediaType,
    /// Size in bytes.
    pub size: u64,
}

impl From<Attachment> for AttachedFile {
    fn from(attachment: Attachment) -> Self {
        Self {
            id: attachment.id,
            name: attachment.name,
            media_type: attachment.media_type,
            size: attachment.size,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn ids(raw: &[u128]) -> Vec<AttachmentId> {
        raw.iter()
            .map(|n| AttachmentId::from_uuid(uuid::Uuid::from_u128(*n)))
            .collect()
    }

    #[test]
    fn attachment_id_lists_hold_at_most_ten_distinct_ids() {
        let ten: Vec<u128> = (1..=10).collect();
        let eleven: Vec<u128> = (1..=11).collect();
        let first = ids(&[1])[0];
        let third = ids(&[3])[0];
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<AttachmentId>, Result<(), AttachmentIdsError>)> = vec![
            ("none",                         ids(&[]),              Ok(())),
            ("one",                          ids(&[1]),             Ok(())),
            ("ten",                          ids(&ten),             Ok(())),
            ("eleven",                       ids(&eleven),          Err(AttachmentIdsError::TooMany(11))),
            ("one twice",                    ids(&[1, 1]),          Err(AttachmentIdsError::Repeated(first))),
            ("the first repeat is named",    ids(&[3, 1, 3, 1]),    Err(AttachmentIdsError::Repeated(third))),
            ("too many wins over repeats",   vec![first; 11],       Err(AttachmentIdsError::TooMany(11))),
        ];
        for (label, given, expected) in cases {
            let parsed = AttachmentIds::parse(given.clone());
            assert_eq!(parsed.as_ref().err(), expected.err().as_ref(), "{label}");
            if let Ok(list) = parsed {
                assert_eq!(list.as_slice(), given.as_slice(), "{label}: order kept");
                assert_eq!(list.len(), given.len(), "{label}");
                assert_eq!(list.is_empty(), given.is_empty(), "{label}");
                assert_eq!(list.into_vec(), given, "{label}");
            }
        }
        assert_eq!(
            AttachmentIds::default(),
            AttachmentIds::parse(Vec::new()).unwrap()
        );
    }

    #[test]
    fn names_are_sanitised() {
        use MediaType::*;
        let long = format!("{}.pdf", "a".repeat(500));
        #[rustfmt::skip]
        let cases: Vec<(Option<&str>, MediaType, &str)> = vec![
            (Some("rx.pdf"),                      Pdf,  "rx.pdf"),
            (Some("../../etc/passwd"),            Pdf,  "passwd.pdf"),
            (Some("..\\..\\boot.ini"),            Doc,  "boot.ini.doc"),
            (Some("C:\\Users\\me\\photo.jpeg"),   Jpeg, "photo.jpeg"),
            (Some("photo.JPG"),                   Jpeg, "photo.JPG"),
            (Some("evil.exe"),                    Pdf,  "evil.exe.pdf"),
            (Some("page.html"),                   Png,  "page.html.png"),
            (Some("invoice\u{202e}fdp.exe"),      Pdf,  "invoicefdp.exe.pdf"),
            (Some("a\u{0}b\nc\r\u{7f}d.png"),     Png,  "abcd.png"),
            (Some("say \"hi\"; x=y.gif"),         Gif,  "say hi x=y.gif"),
            (Some("   "),                         Webp, "attachment.webp"),
            (Some(".."),                          Pdf,  "attachment.pdf"),
            (Some(".hidden.pdf"),                 Pdf,  "hidden.pdf"),
            (Some("dir/"),                        Docx, "attachment.docx"),
            (None,                                Docx, "attachment.docx"),
            (Some("report.pdf."),                 Pdf,  "report.pdf"),
        ];
        for (raw, media, expected) in cases {
            let name = AttachmentName::sanitize(raw, media);
            assert_eq!(name.as_str(), expected, "{raw:?}");
            assert_eq!(AttachmentName::parse(name.as_str()), Ok(name), "{raw:?}");
        }
        let name = AttachmentName::sanitize(Some(&long), Pdf);
        assert_eq!(name.as_str().chars().count(), AttachmentName::MAX_CHARS);
        assert!(name.as_str().ends_with(".pdf"));
    }

    #[test]
    fn stored_names_that_break_the_rules_are_rejected() {
        for raw in ["", "a/b.pdf", ".x.pdf", "a\nb.pdf", "q\"uote.pdf"] {
            assert_eq!(
                AttachmentName::parse(raw),
                Err(AttachmentNameError),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn storage_keys_follow_the_path_convention() {
        let tenant = TenantId::new_v4();
        let conversation = ConversationId::new_v7();
        let id = AttachmentId::new_v7();
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 23, 59, 59).unwrap();
        let key = StorageKey::for_attachment(tenant, conversation, id, MediaType::Docx, at);
        assert_eq!(
            key.as_str(),
            format!("chat/{tenant}/{conversation}/2026/11/{id}.docx")
        );
        assert_eq!(StorageKey::parse(key.as_str()), Ok(key));
        for bad in [
            "chat/../x",
            "/chat/a",
            "chat//a",
            "chat/A.pdf",
            "other/a.pdf",
            "chat/a b.pdf",
            "chat/./a",
        ] {
            assert_eq!(StorageKey::parse(bad), Err(StorageKeyError), "{bad}");
        }
    }

    #[test]
    fn digests_round_trip_through_hex() {
        let digest = Sha256Digest::from_bytes([0xab; 32]);
        let hex = digest.to_string();
        assert_eq!(hex, "ab".repeat(32));
        assert_eq!(Sha256Digest::parse_hex(&hex), Ok(digest));
        assert_eq!(Sha256Digest::parse_hex("AB"), Err(DigestError));
        assert_eq!(Sha256Digest::parse_hex(&"AB".repeat(32)), Err(DigestError));
    }

    #[test]
    fn media_types_round_trip_through_their_mime() {
        for media in MediaType::ALL {
            assert_eq!(MediaType::from_mime(media.mime()), Some(media));
        }
        assert_eq!(MediaType::from_mime("image/svg+xml"), None);
        assert_eq!(MediaType::from_mime("text/html"), None);
    }
}
