//! Content sniffing: which [`MediaType`] an upload really is, decided from
//! its bytes alone, and the checks that run over the whole stream.
//!
//! The head (the first [`SNIFF_BYTES`]) decides the family by its magic
//! bytes (through the `infer` crate) and is searched for markup that a
//! browser would run: a PDF that is also an HTML page is refused. Word files
//! are containers (OLE2 or ZIP) whose telling parts may sit anywhere, so
//! their check finishes only when the last byte has passed:
//! [`ContentCheck`] looks for the parts a Word file must have and for the
//! macro projects it must not.

use chat_domain::MediaType;
use memchr::memmem;

/// How many leading bytes decide the type.
pub const SNIFF_BYTES: usize = 8 * 1024;

/// Markup that makes a file active content when a browser opens it. Matched
/// case-insensitively anywhere in the head.
const ACTIVE_MARKERS: &[&[u8]] = &[
    b"<!doctype html",
    b"<html",
    b"<head",
    b"<body",
    b"<script",
    b"<svg",
    b"<iframe",
    b"<object",
    b"<embed",
    b"<img",
    b"<meta",
    b"<a href",
    b"<?xml-stylesheet",
    b"javascript:",
];

/// `WordDocument`, the stream every Word 97-2003 file has, as an OLE2
/// directory stores names (UTF-16LE).
const OLE_WORD_DOCUMENT: &[u8] = b"W\0o\0r\0d\0D\0o\0c\0u\0m\0e\0n\0t\0";
/// `_VBA_PROJECT`, the stream of a macro project in an OLE2 file.
const OLE_VBA_PROJECT: &[u8] = b"_\0V\0B\0A\0_\0P\0R\0O\0J\0E\0C\0T\0";
/// ZIP entry names are stored uncompressed in every local header and in the
/// central directory, so a streaming search sees them.
const DOCX_CONTENT_TYPES: &[u8] = b"[Content_Types].xml";
const DOCX_MAIN_PART: &[u8] = b"word/document.xml";
const DOCX_MACROS: &[u8] = b"vbaProject.bin";

/// Why an upload's content is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentRejection {
    /// Zero bytes.
    #[error("the file is empty")]
    Empty,
    /// Not one of the accepted types, or active content.
    #[error("{0}")]
    Unsupported(String),
}

impl ContentRejection {
    fn unsupported(reason: impl Into<String>) -> Self {
        Self::Unsupported(reason.into())
    }
}

/// What the head decided, and what the rest of the stream must confirm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sniffed {
    /// The type, as far as the head can tell.
    pub media_type: MediaType,
    /// Byte strings that must occur somewhere in the file.
    required: &'static [&'static [u8]],
    /// Byte strings that must not occur anywhere in the file.
    forbidden: &'static [&'static [u8]],
}

impl Sniffed {
    /// A checker for the whole stream.
    pub fn content_check(&self) -> ContentCheck {
        ContentCheck::new(self.media_type, self.required, self.forbidden)
    }
}

/// Decides the type of an upload from its first bytes (at most
/// [`SNIFF_BYTES`] are looked at; give fewer only when the file is shorter).
///
/// # Errors
/// [`ContentRejection::Empty`] for no bytes, [`ContentRejection::Unsupported`]
/// for any type but JPEG, PNG, GIF, WebP, PDF, DOC and DOCX, and for any of
/// them that carries markup a browser would run.
///
/// ```
/// use chat_app::sniff::{sniff, ContentRejection};
/// use chat_domain::MediaType;
///
/// let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
/// assert_eq!(sniff(png).unwrap().media_type, MediaType::Png);
/// assert!(matches!(sniff(b"<svg onload=alert(1)>"), Err(ContentRejection::Unsupported(_))));
/// ```
pub fn sniff(head: &[u8]) -> Result<Sniffed, ContentRejection> {
    if head.is_empty() {
        return Err(ContentRejection::Empty);
    }
    let head = &head[..head.len().min(SNIFF_BYTES)];
    let lower = head.to_ascii_lowercase();
    if let Some(marker) = ACTIVE_MARKERS
        .iter()
        .find(|marker| memmem::find(&lower, marker).is_some())
    {
        return Err(ContentRejection::unsupported(format!(
            "the file contains active content (`{}`), which is never accepted",
            String::from_utf8_lossy(marker)
        )));
    }
    let plain = |media_type| Sniffed {
        media_type,
        required: &[],
        forbidden: &[],
    };
    let sniffed = if infer::image::is_jpeg(head) {
        plain(MediaType::Jpeg)
    } else if infer::image::is_png(head) {
        plain(MediaType::Png)
    } else if infer::image::is_gif(head) {
        plain(MediaType::Gif)
    } else if infer::image::is_webp(head) {
        plain(MediaType::Webp)
    } else if head.starts_with(b"%PDF-") {
        // `infer` also accepts a PDF header further in; a file that opens
        // as something else first is a polyglot.
        plain(MediaType::Pdf)
    } else if head.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        Sniffed {
            media_type: MediaType::Doc,
            required: &[OLE_WORD_DOCUMENT],
            forbidden: &[OLE_VBA_PROJECT],
        }
    } else if head.starts_with(b"PK\x03\x04") {
        Sniffed {
            media_type: MediaType::Docx,
            required: &[DOCX_CONTENT_TYPES, DOCX_MAIN_PART],
            forbidden: &[DOCX_MACROS],
        }
    } else {
        let what = infer::get(head).map_or("unknown", |t| t.mime_type());
        return Err(ContentRejection::unsupported(format!(
            "file type {what} is not accepted: send JPEG, PNG, GIF, WebP, PDF, DOC or DOCX"
        )));
    };
    Ok(sniffed)
}

/// The whole-stream part of sniffing: feed every chunk, then [`finish`].
///
/// [`finish`]: ContentCheck::finish
#[derive(Debug, Clone)]
pub struct ContentCheck {
    media_type: MediaType,
    required: Vec<(&'static [u8], bool)>,
    forbidden: &'static [&'static [u8]],
    /// The tail of the previous chunk, so needles across a boundary match.
    carry: Vec<u8>,
    overlap: usize,
    violation: Option<&'static [u8]>,
}

impl ContentCheck {
    fn new(
        media_type: MediaType,
        required: &'static [&'static [u8]],
        forbidden: &'static [&'static [u8]],
    ) -> Self {
        let longest = required
            .iter()
            .chain(forbidden)
            .map(|n| n.len())
            .max()
            .unwrap_or(0);
        Self {
            media_type,
            required: required.iter().map(|n| (*n, false)).collect(),
            forbidden,
            carry: Vec::new(),
            overlap: longest.saturating_sub(1),
            violation: None,
        }
    }

    /// Looks at the next chunk of the file.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.overlap == 0 || self.violation.is_some() {
            return;
        }
        // Search the carried tail and the chunk's start together, then the
        // chunk itself: no copy of the chunk is made.
        let take = chunk.len().min(self.overlap);
        let mut seam = std::mem::take(&mut self.carry);
        seam.extend_from_slice(&chunk[..take]);
        for window in [&seam[..], chunk] {
            for (needle, found) in &mut self.required {
                if !*found && memmem::find(window, needle).is_some() {
                    *found = true;
                }
            }
            if let Some(bad) = self
                .forbidden
                .iter()
                .find(|n| memmem::find(window, n).is_some())
            {
                self.violation = Some(bad);
            }
        }
        let keep_from = seam.len().saturating_sub(self.overlap);
        if chunk.len() >= self.overlap {
            self.carry = chunk[chunk.len() - self.overlap..].to_vec();
        } else {
            self.carry = seam[keep_from..].to_vec();
        }
    }

    /// The verdict once every byte was fed.
    ///
    /// # Errors
    /// [`ContentRejection::Unsupported`] when a required part is missing or a
    /// forbidden one occurred.
    pub fn finish(&self) -> Result<MediaType, ContentRejection> {
        let kind = match self.media_type {
            MediaType::Doc => "Word 97-2003 file",
            _ => "Word file",
        };
        if let Some(bad) = self.violation {
            return Err(ContentRejection::unsupported(format!(
                "the {kind} carries macros (`{}`), which are never accepted",
                String::from_utf8_lossy(bad).replace('\0', "")
            )));
        }
        if self.required.iter().any(|(_, found)| !found) {
            return Err(ContentRejection::unsupported(format!(
                "the container is not a {kind}: send JPEG, PNG, GIF, WebP, PDF, DOC or DOCX"
            )));
        }
        Ok(self.media_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docx_like(entries: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for name in entries {
            out.extend_from_slice(b"PK\x03\x04\x14\0\0\0\x08\0");
            out.extend_from_slice(&[0u8; 16]);
            out.extend_from_slice(&u16::try_from(name.len()).unwrap().to_le_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&[0x5a; 300]);
        }
        out
    }

    fn check_all(data: &[u8], chunk: usize) -> Result<MediaType, ContentRejection> {
        let sniffed = sniff(&data[..data.len().min(SNIFF_BYTES)])?;
        let mut check = sniffed.content_check();
        for piece in data.chunks(chunk) {
            check.feed(piece);
        }
        check.finish()
    }

    #[test]
    fn accepted_types_are_recognised_by_their_magic_bytes() {
        let mut webp = b"RIFF\x24\0\0\0WEBPVP8 ".to_vec();
        webp.extend_from_slice(&[0; 20]);
        let mut doc = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
        doc.extend_from_slice(&[0; 600]);
        doc.extend_from_slice(OLE_WORD_DOCUMENT);
        let docx = docx_like(&["[Content_Types].xml", "_rels/.rels", "word/document.xml"]);
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<u8>, MediaType)> = vec![
            ("jpeg", b"\xFF\xD8\xFF\xE0\0\x10JFIF\0".to_vec(), MediaType::Jpeg),
            ("png",  b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(), MediaType::Png),
            ("gif",  b"GIF89a\x01\0\x01\0".to_vec(),             MediaType::Gif),
            ("webp", webp,                                       MediaType::Webp),
            ("pdf",  b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj".to_vec(), MediaType::Pdf),
            ("doc",  doc,                                        MediaType::Doc),
            ("docx", docx,                                       MediaType::Docx),
        ];
        for (what, data, expected) in cases {
            assert_eq!(check_all(&data, 7), Ok(expected), "{what}");
        }
    }

    #[test]
    fn everything_else_is_unsupported() {
        let mut zip_of_other = docx_like(&["[Content_Types].xml", "xl/workbook.xml"]);
        zip_of_other.extend_from_slice(b"PK\x01\x02");
        let mut xls = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
        xls.extend_from_slice(&[0; 600]);
        xls.extend_from_slice(b"W\0o\0r\0k\0b\0o\0o\0k\0");
        let mut docm = docx_like(&["[Content_Types].xml", "word/document.xml"]);
        docm.extend_from_slice(&docx_like(&["word/vbaProject.bin"]));
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("elf executable",          b"\x7fELF\x02\x01\x01\0\0\0\0\0".to_vec()),
            ("windows executable",      b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff".to_vec()),
            ("svg",                     b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>".to_vec()),
            ("html",                    b"<!DOCTYPE html><html><body>hi</body></html>".to_vec()),
            ("html without doctype",    b"  <HTML><SCRIPT>alert(1)</SCRIPT>".to_vec()),
            ("plain text",              b"this is just text, declared as image/png".to_vec()),
            ("pdf/html polyglot",       b"%PDF-1.4\n%<html><script>alert(document.domain)</script>\n1 0 obj".to_vec()),
            ("pdf header not at start", b"<html>\n%PDF-1.4\n".to_vec()),
            ("gif with a script",       b"GIF89a/*<script>alert(1)</script>*/".to_vec()),
            ("jpeg with an svg",        b"\xFF\xD8\xFF\xE0<svg onload=alert(1)>".to_vec()),
            ("zip of a spreadsheet",    zip_of_other),
            ("ole2 that is not word",   xls),
            ("word with macros",        docm),
            ("javascript url",          b"%PDF-1.4 javascript:alert(1)".to_vec()),
        ];
        for (what, data) in cases {
            assert!(
                matches!(check_all(&data, 5), Err(ContentRejection::Unsupported(_))),
                "{what}"
            );
        }
        assert_eq!(sniff(b""), Err(ContentRejection::Empty));
    }

    #[test]
    fn needles_split_across_chunks_are_found() {
        let docx = docx_like(&["[Content_Types].xml", "word/document.xml"]);
        for chunk in [1, 2, 3, 16, 17, 64, docx.len()] {
            assert_eq!(
                check_all(&docx, chunk),
                Ok(MediaType::Docx),
                "chunk {chunk}"
            );
        }
        let mut docm = docx.clone();
        docm.extend_from_slice(b"word/vbaProject.bin");
        for chunk in [1, 5, 13, 1000] {
            assert!(check_all(&docm, chunk).is_err(), "chunk {chunk}");
        }
    }

    #[test]
    fn markers_beyond_the_head_do_not_matter() {
        let mut pdf = b"%PDF-1.4\n".to_vec();
        pdf.resize(SNIFF_BYTES + 10, b' ');
        pdf.extend_from_slice(b"<html>");
        assert_eq!(check_all(&pdf, 4096), Ok(MediaType::Pdf));
    }
}
