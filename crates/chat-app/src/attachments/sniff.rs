//! Content sniffing: which [`MediaType`] an upload really is, decided from
//! its bytes alone, and the check of the whole file once it has arrived.
//!
//! The head (the first [`SNIFF_BYTES`]) decides the family by its magic
//! bytes (through the `infer` crate) and is searched for markup that a
//! browser would run: a PDF that is also an HTML page is refused. Word files
//! are containers whose telling parts may sit anywhere, so [`ContentCheck`]
//! keeps them whole and reads their structure once the last byte has passed:
//! the ZIP package of a DOCX (its part names, `[Content_Types].xml` and every
//! relationship part) and the OLE2 directory of a DOC. Either must have the
//! parts a Word file has, and none of those of a macro project, whatever
//! case their names are written in.

use std::collections::HashSet;
use std::io::{Cursor, Read as _};
use std::path::Path;

use chat_domain::MediaType;
use memchr::memmem;
use quick_xml::events::Event;
use quick_xml::XmlVersion;

/// How many leading bytes decide the type.
pub const SNIFF_BYTES: usize = 8 * 1024;

/// Markup that makes a file active content when a browser opens it. Matched
/// case-insensitively anywhere in the head.
const ACTIVE_MARKERS: &[&str] = &[
    "<!doctype html",
    "<html",
    "<head",
    "<body",
    "<script",
    "<svg",
    "<iframe",
    "<object",
    "<embed",
    "<img",
    "<meta",
    "<a href",
    "<?xml-stylesheet",
    "javascript:",
];

/// The most entries (ZIP parts, OLE2 directory entries) a Word file may
/// have: far more than any real document, few enough to list quickly.
const MAX_CONTAINER_ENTRIES: usize = 10_000;
/// The most a DOCX XML part that is read ([`CONTENT_TYPES_PART`] and the
/// relationship parts) may inflate to.
const MAX_XML_PART_BYTES: u64 = 1024 * 1024;
/// The most all the XML parts read from one DOCX may inflate to together.
const MAX_XML_TOTAL_BYTES: u64 = 8 * 1024 * 1024;

/// The part that declares every part's content type, lowercased (OPC part
/// names compare case-insensitively).
const CONTENT_TYPES_PART: &str = "[content_types].xml";
/// The main part of a Word document, lowercased.
const DOCX_MAIN_PART: &str = "word/document.xml";
/// Fragments of the content types of macro-enabled documents and templates
/// and of VBA projects, their signatures and data, lowercased.
const MACRO_CONTENT_TYPES: &[&str] = &[
    "macroenabled",
    "vnd.ms-office.vbaproject",
    "vnd.ms-word.vbadata",
];
/// The OLE2 storages and streams of a VBA project, lowercased: a `VBA`
/// storage (under `Macros` in a Word file, anywhere in an embedded object)
/// holding the `_VBA_PROJECT` stream, beside a `PROJECT` stream (and its
/// `PROJECTwm` name map).
const OLE_MACRO_STORAGES: &[&str] = &["vba"];
const OLE_MACRO_STREAMS: &[&str] = &["_vba_project", "project", "projectwm"];
/// The stream every Word 97-2003 file has at its root, lowercased.
const OLE_WORD_DOCUMENT: &str = "worddocument";

/// Why an upload's content is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentRejection {
    /// Zero bytes.
    #[error("the file is empty")]
    Empty,
    /// Not one of the accepted types, or active content.
    #[error(transparent)]
    Unsupported(UnsupportedContent),
}

/// Why an upload's content is not an accepted file. Its `Display` says
/// why, in words meant for the uploader.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsupportedContent {
    /// The head holds markup a browser would run.
    #[error("the file contains active content (`{marker}`), which is never accepted")]
    ActiveContent {
        /// The markup found, lowercased.
        marker: &'static str,
    },
    /// The head is none of the accepted types.
    #[error(
        "file type {} is not accepted: send JPEG, PNG, GIF, WebP, PDF, DOC or DOCX",
        detected.unwrap_or("unknown")
    )]
    TypeNotAccepted {
        /// The type it seems to be, when known.
        detected: Option<&'static str>,
    },
    /// A Word file carries a macro project.
    #[error("the {} carries macros ({found}), which are never accepted", word_kind(*media_type))]
    Macros {
        /// DOC or DOCX.
        media_type: MediaType,
        /// What gave the macros away.
        found: MacroSign,
    },
    /// A Word container lacks the parts a Word file has.
    #[error(
        "the container is not a {}: send JPEG, PNG, GIF, WebP, PDF, DOC or DOCX",
        word_kind(*media_type)
    )]
    NotWord {
        /// DOC or DOCX, as the head said.
        media_type: MediaType,
    },
    /// A Word file cannot be read within the limits.
    #[error("the {} cannot be checked ({why}), so it is not accepted", word_kind(*media_type))]
    Unreadable {
        /// DOC or DOCX.
        media_type: MediaType,
        /// What stopped the check.
        why: UnreadableContainer,
    },
    /// The check of the whole file did not finish.
    #[error("the file could not be checked, so it is not accepted")]
    Unchecked,
}

/// What gave a Word file's macros away (names as the file spells them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacroSign {
    /// A DOCX part of a macro project.
    #[error("part `{0}`")]
    Part(String),
    /// A macro-enabled or VBA content type of a DOCX.
    #[error("content type `{0}`")]
    ContentType(String),
    /// A VBA relationship of a DOCX.
    #[error("relationship `{0}`")]
    Relationship(String),
    /// A VBA storage or stream of a DOC, by its path.
    #[error("`{0}`")]
    OleEntry(String),
}

/// Why the structure of a Word file could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnreadableContainer {
    /// A DOCX with more ZIP parts than any real document.
    #[error("it has more than {MAX_CONTAINER_ENTRIES} parts")]
    TooManyParts,
    /// A DOC with more OLE2 entries than any real document.
    #[error("it has more than {MAX_CONTAINER_ENTRIES} entries")]
    TooManyEntries,
    /// The ZIP local headers and central directory disagree.
    #[error("its ZIP headers disagree")]
    HeadersDisagree,
    /// A part name is not readable.
    #[error("a part name is unreadable")]
    PartNameUnreadable,
    /// Two parts have the same name (compared as OPC compares them).
    #[error("two parts have the same name")]
    DuplicatePartName,
    /// A part cannot be opened.
    #[error("a part is encrypted or damaged")]
    PartEncryptedOrDamaged,
    /// A part cannot be inflated.
    #[error("a part is damaged")]
    PartDamaged,
    /// The XML parts inflate beyond the limits.
    #[error("its XML parts are too large")]
    XmlTooLarge,
    /// An XML part is neither UTF-8 nor UTF-16.
    #[error("an XML part is not text")]
    XmlNotText,
    /// An XML part does not parse.
    #[error("an XML part is malformed")]
    XmlMalformed,
}

impl ContentRejection {
    fn macros(media_type: MediaType, found: MacroSign) -> Self {
        Self::Unsupported(UnsupportedContent::Macros { media_type, found })
    }

    fn not_word(media_type: MediaType) -> Self {
        Self::Unsupported(UnsupportedContent::NotWord { media_type })
    }

    fn unreadable(media_type: MediaType, why: UnreadableContainer) -> Self {
        Self::Unsupported(UnsupportedContent::Unreadable { media_type, why })
    }
}

fn word_kind(media_type: MediaType) -> &'static str {
    match media_type {
        MediaType::Doc => "Word 97-2003 file",
        _ => "Word file",
    }
}

/// What the head decided; [`Sniffed::content_check`] confirms it over the
/// whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Sniffed {
    /// The type, as far as the head can tell.
    pub media_type: MediaType,
}

impl Sniffed {
    /// A checker for the whole file.
    pub fn content_check(&self) -> ContentCheck {
        let container = matches!(self.media_type, MediaType::Doc | MediaType::Docx);
        ContentCheck {
            media_type: self.media_type,
            spool: container.then(Vec::new),
        }
    }
}

/// Decides the type of an upload from its first bytes (at most
/// [`SNIFF_BYTES`] are looked at; give fewer only when the file is shorter).
///
/// # Errors
/// [`ContentRejection::Empty`] for no bytes, [`ContentRejection::Unsupported`]
/// for any type but JPEG, PNG, GIF, WebP, PDF, DOC and DOCX, and for any of
/// them that carries markup a browser would run.
pub fn sniff(head: &[u8]) -> Result<Sniffed, ContentRejection> {
    if head.is_empty() {
        return Err(ContentRejection::Empty);
    }
    let head = &head[..head.len().min(SNIFF_BYTES)];
    let lower = head.to_ascii_lowercase();
    if let Some(marker) = ACTIVE_MARKERS
        .iter()
        .find(|marker| memmem::find(&lower, marker.as_bytes()).is_some())
    {
        return Err(ContentRejection::Unsupported(
            UnsupportedContent::ActiveContent { marker },
        ));
    }
    let media_type = if infer::image::is_jpeg(head) {
        MediaType::Jpeg
    } else if infer::image::is_png(head) {
        MediaType::Png
    } else if infer::image::is_gif(head) {
        MediaType::Gif
    } else if infer::image::is_webp(head) {
        MediaType::Webp
    } else if head.starts_with(b"%PDF-") {
        // `infer` also accepts a PDF header further in; a file that opens
        // as something else first is a polyglot.
        MediaType::Pdf
    } else if head.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        MediaType::Doc
    } else if head.starts_with(b"PK\x03\x04") {
        MediaType::Docx
    } else {
        let detected = infer::get(head).map(|t| t.mime_type());
        return Err(ContentRejection::Unsupported(
            UnsupportedContent::TypeNotAccepted { detected },
        ));
    };
    Ok(Sniffed { media_type })
}

/// The whole-file part of sniffing: feed every chunk, then [`finish`].
///
/// A Word file is kept in memory until [`finish`] reads its structure, so
/// the caller bounds the size of what it feeds (uploads stop at their
/// limit); other types keep nothing.
///
/// [`finish`]: ContentCheck::finish
pub struct ContentCheck {
    media_type: MediaType,
    /// The whole file, for the containers whose structure is read.
    spool: Option<Vec<u8>>,
}

impl std::fmt::Debug for ContentCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentCheck")
            .field("media_type", &self.media_type)
            .field("spooled", &self.spool.as_ref().map(Vec::len))
            .finish()
    }
}

impl ContentCheck {
    /// Looks at the next chunk of the file.
    pub fn feed(&mut self, chunk: &[u8]) {
        if let Some(spool) = &mut self.spool {
            spool.extend_from_slice(chunk);
        }
    }

    /// Whether [`ContentCheck::finish`] reads a container: work worth doing
    /// off an async runtime's threads (a few milliseconds for a large file).
    pub fn reads_a_container(&self) -> bool {
        self.spool.is_some()
    }

    /// The verdict once every byte was fed.
    ///
    /// # Errors
    /// [`ContentRejection::Unsupported`] when a Word file lacks the parts a
    /// Word file has, carries a macro project (by part name, content type,
    /// relationship or OLE2 storage and stream names), or cannot be read
    /// within the limits (damaged, encrypted, or too many or too large parts
    /// to check).
    pub fn finish(self) -> Result<MediaType, ContentRejection> {
        let Some(data) = self.spool else {
            return Ok(self.media_type);
        };
        match self.media_type {
            MediaType::Docx => inspect_docx(&data)?,
            MediaType::Doc => inspect_doc(&data)?,
            _ => {}
        }
        Ok(self.media_type)
    }
}

/// Checks the ZIP package of a DOCX.
fn inspect_docx(data: &[u8]) -> Result<(), ContentRejection> {
    const KIND: MediaType = MediaType::Docx;
    let config = zip::read::Config {
        archive_offset: zip::read::ArchiveOffset::Known(0),
    };
    let mut archive = zip::ZipArchive::with_config(config, Cursor::new(data))
        .map_err(|_| ContentRejection::not_word(KIND))?;
    if archive.len() > MAX_CONTAINER_ENTRIES {
        return Err(ContentRejection::unreadable(
            KIND,
            UnreadableContainer::TooManyParts,
        ));
    }
    // Readers differ on whether they trust the local headers or the central
    // directory, so both must say the same (and name no part twice).
    archive
        .validate_header_consistency()
        .map_err(|_| ContentRejection::unreadable(KIND, UnreadableContainer::HeadersDisagree))?;

    let mut seen = HashSet::new();
    let mut content_types = None;
    let mut has_main_part = false;
    let mut relationship_parts = Vec::new();
    for index in 0..archive.len() {
        let name = archive
            .name_for_index(index)
            .and_then(Result::ok)
            .ok_or_else(|| {
                ContentRejection::unreadable(KIND, UnreadableContainer::PartNameUnreadable)
            })?;
        let part = part_name(&name);
        if !seen.insert(part.clone()) {
            return Err(ContentRejection::unreadable(
                KIND,
                UnreadableContainer::DuplicatePartName,
            ));
        }
        let file_name = part.rsplit('/').next().unwrap_or_default();
        if file_name.starts_with("vbaproject") || file_name == "vbadata.xml" {
            return Err(ContentRejection::macros(
                KIND,
                MacroSign::Part(name.to_string()),
            ));
        }
        if part == CONTENT_TYPES_PART {
            content_types = Some(index);
        } else if part == DOCX_MAIN_PART {
            has_main_part = true;
        } else if part.ends_with(".rels") {
            relationship_parts.push(index);
        }
    }
    let Some(content_types) = content_types.filter(|_| has_main_part) else {
        return Err(ContentRejection::not_word(KIND));
    };

    let mut budget = MAX_XML_TOTAL_BYTES;
    // Defaults (by extension) and overrides (by part) alike: either gives a
    // part the type Word loads it as.
    let xml = read_xml_part(&mut archive, content_types, &mut budget)?;
    for content_type in attribute_values(&xml, &["Default", "Override"], "ContentType")? {
        let lower = content_type.trim().to_ascii_lowercase();
        if MACRO_CONTENT_TYPES.iter().any(|m| lower.contains(m)) {
            return Err(ContentRejection::macros(
                KIND,
                MacroSign::ContentType(content_type.trim().to_owned()),
            ));
        }
    }
    for index in relationship_parts {
        let xml = read_xml_part(&mut archive, index, &mut budget)?;
        for kind in attribute_values(&xml, &["Relationship"], "Type")? {
            // `.../relationships/vbaProject`, `vbaProjectSignature` (and its
            // Agile and V3 forms) and `wordVbaData`.
            let last = kind
                .trim()
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if last.starts_with("vbaproject") || last == "wordvbadata" {
                return Err(ContentRejection::macros(
                    KIND,
                    MacroSign::Relationship(kind.trim().to_owned()),
                ));
            }
        }
    }
    Ok(())
}

/// An OPC part name as it compares: lowercase, `/`-separated, relative.
fn part_name(zip_name: &str) -> String {
    zip_name
        .replace('\\', "/")
        .trim_start_matches('/')
        .to_lowercase()
}

/// Inflates the XML part at `index`, within [`MAX_XML_PART_BYTES`] and what
/// is left of `budget`, and decodes it to text.
fn read_xml_part(
    archive: &mut zip::ZipArchive<Cursor<&[u8]>>,
    index: usize,
    budget: &mut u64,
) -> Result<String, ContentRejection> {
    const KIND: MediaType = MediaType::Docx;
    let limit = MAX_XML_PART_BYTES.min(*budget);
    let part = archive.by_index(index).map_err(|_| {
        ContentRejection::unreadable(KIND, UnreadableContainer::PartEncryptedOrDamaged)
    })?;
    let mut bytes = Vec::new();
    part.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|_| ContentRejection::unreadable(KIND, UnreadableContainer::PartDamaged))?;
    let read = bytes.len() as u64;
    if read > limit {
        return Err(ContentRejection::unreadable(
            KIND,
            UnreadableContainer::XmlTooLarge,
        ));
    }
    *budget -= read;
    xml_text(&bytes)
        .ok_or_else(|| ContentRejection::unreadable(KIND, UnreadableContainer::XmlNotText))
}

/// XML bytes as text: UTF-8, or UTF-16 (which OPC also allows) told by its
/// byte order mark or its first `<`.
fn xml_text(bytes: &[u8]) -> Option<String> {
    fn utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Option<String> {
        if !bytes.len().is_multiple_of(2) {
            return None;
        }
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|pair| unit([pair[0], pair[1]]))
            .collect();
        String::from_utf16(&units).ok()
    }
    if let Some(rest) = bytes.strip_prefix(b"\xEF\xBB\xBF") {
        String::from_utf8(rest.to_vec()).ok()
    } else if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
        utf16(rest, u16::from_le_bytes)
    } else if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
        utf16(rest, u16::from_be_bytes)
    } else if bytes.starts_with(b"<\0") {
        utf16(bytes, u16::from_le_bytes)
    } else if bytes.starts_with(b"\0<") {
        utf16(bytes, u16::from_be_bytes)
    } else {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// The values of `attribute` on every element named one of `elements`
/// (local names, any namespace prefix, compared case-insensitively), with
/// character and entity references resolved as an XML reader would.
fn attribute_values(
    xml: &str,
    elements: &[&str],
    attribute: &str,
) -> Result<Vec<String>, ContentRejection> {
    let malformed =
        || ContentRejection::unreadable(MediaType::Docx, UnreadableContainer::XmlMalformed);
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut values = Vec::new();
    loop {
        match reader.read_event().map_err(|_| malformed())? {
            Event::Start(element) | Event::Empty(element) => {
                let name = element.local_name();
                if !elements
                    .iter()
                    .any(|e| name.as_ref().eq_ignore_ascii_case(e.as_bytes()))
                {
                    continue;
                }
                for attr in element.attributes() {
                    let attr = attr.map_err(|_| malformed())?;
                    if attr
                        .key
                        .local_name()
                        .as_ref()
                        .eq_ignore_ascii_case(attribute.as_bytes())
                    {
                        let value = attr
                            .decoded_and_normalized_value(XmlVersion::Implicit1_0, reader.decoder())
                            .map_err(|_| malformed())?;
                        values.push(value.into_owned());
                    }
                }
            }
            Event::Eof => return Ok(values),
            _ => {}
        }
    }
}

/// Checks the OLE2 directory of a DOC: every storage and stream, at any
/// depth, by its UTF-16 name.
fn inspect_doc(data: &[u8]) -> Result<(), ContentRejection> {
    const KIND: MediaType = MediaType::Doc;
    let file =
        cfb::CompoundFile::open(Cursor::new(data)).map_err(|_| ContentRejection::not_word(KIND))?;
    let mut has_word_stream = false;
    for (count, entry) in file.walk().enumerate() {
        if count >= MAX_CONTAINER_ENTRIES {
            return Err(ContentRejection::unreadable(
                KIND,
                UnreadableContainer::TooManyEntries,
            ));
        }
        let name = entry.name().to_lowercase();
        let macro_entry = if entry.is_storage() {
            OLE_MACRO_STORAGES.contains(&name.as_str())
        } else {
            entry.is_stream() && OLE_MACRO_STREAMS.contains(&name.as_str())
        };
        if macro_entry {
            return Err(ContentRejection::macros(
                KIND,
                MacroSign::OleEntry(entry.path().display().to_string()),
            ));
        }
        if entry.is_stream()
            && name == OLE_WORD_DOCUMENT
            && entry.path().parent() == Some(Path::new("/"))
        {
            has_word_stream = true;
        }
    }
    if !has_word_stream {
        return Err(ContentRejection::not_word(KIND));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use zip::write::SimpleFileOptions;

    use super::*;

    #[test]
    fn a_png_head_is_a_png_and_svg_markup_is_refused() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(sniff(png).unwrap().media_type, MediaType::Png);
        assert!(matches!(
            sniff(b"<svg onload=alert(1)>"),
            Err(ContentRejection::Unsupported(_))
        ));
    }

    const CLEAN_CONTENT_TYPES: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>
<Override PartName="/word/styles.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.styles+xml"/>
</Types>"#;
    const PACKAGE_RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>
</Relationships>"#;
    const DOCUMENT: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>Take one tablet twice a day.</w:t></w:r></w:p></w:body></w:document>"#;
    const STYLES: &str = r#"<?xml version="1.0" encoding="UTF-8"?><w:styles xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"/>"#;
    const DOCUMENT_RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">
<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" Target="styles.xml"/>
</Relationships>"#;
    const MACRO_CONTENT_TYPES_XML: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">
<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>
<Default Extension="xml" ContentType="application/xml"/>
<Override PartName="/word/document.xml" ContentType="application/vnd.ms-word.document.macroEnabled.main+xml"/>
<Override PartName="/word/macros.bin" ContentType="application/vnd.ms-office.vbaProject"/>
</Types>"#;

    /// Relationships of the main part: styles, and one of type `kind` to
    /// `target`.
    fn document_rels_with(kind: &str, target: &str) -> String {
        DOCUMENT_RELS.replace(
            "</Relationships>",
            &format!(
                "<Relationship Id=\"rId9\" Type=\"http://schemas.microsoft.com/office/2006/relationships/{kind}\" Target=\"{target}\"/>\n</Relationships>"
            ),
        )
    }

    /// A real ZIP package (deflated) of `parts`.
    fn zip_of(parts: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, content) in parts {
            writer
                .start_file(*name, SimpleFileOptions::default())
                .unwrap();
            writer.write_all(content).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    /// A clean DOCX, with `content_types` and `document_rels` for its
    /// `[Content_Types].xml` and main part relationships, and `extra` parts.
    fn docx_with(content_types: &str, document_rels: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
        let mut parts: Vec<(&str, &[u8])> = vec![
            ("[Content_Types].xml", content_types.as_bytes()),
            ("_rels/.rels", PACKAGE_RELS.as_bytes()),
            ("word/document.xml", DOCUMENT.as_bytes()),
            ("word/styles.xml", STYLES.as_bytes()),
            ("word/_rels/document.xml.rels", document_rels.as_bytes()),
        ];
        parts.extend_from_slice(extra);
        zip_of(&parts)
    }

    fn clean_docx() -> Vec<u8> {
        docx_with(CLEAN_CONTENT_TYPES, DOCUMENT_RELS, &[])
    }

    /// A compound file with a stream at each of `streams` (`/`-separated
    /// paths; their storages are created on the way).
    fn ole_of(streams: &[&str]) -> Vec<u8> {
        let mut file = cfb::CompoundFile::create(Cursor::new(Vec::new())).unwrap();
        for path in streams {
            if let Some(parent) = Path::new(path)
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty())
            {
                file.create_storage_all(parent).unwrap();
            }
            let mut stream = file.create_stream(path).unwrap();
            stream.write_all(&[0x5a; 600]).unwrap();
        }
        file.flush().unwrap();
        file.into_inner().into_inner()
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
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<u8>, MediaType)> = vec![
            ("jpeg", b"\xFF\xD8\xFF\xE0\0\x10JFIF\0".to_vec(), MediaType::Jpeg),
            ("png",  b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(), MediaType::Png),
            ("gif",  b"GIF89a\x01\0\x01\0".to_vec(),             MediaType::Gif),
            ("webp", webp,                                       MediaType::Webp),
            ("pdf",  b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj".to_vec(), MediaType::Pdf),
            ("doc",  ole_of(&["WordDocument", "1Table", "\u{5}SummaryInformation"]), MediaType::Doc),
            ("docx", clean_docx(),                               MediaType::Docx),
        ];
        for (what, data, expected) in cases {
            assert_eq!(check_all(&data, 7), Ok(expected), "{what}");
        }
    }

    #[test]
    fn clean_word_files_pass_whatever_their_names_case_or_encoding() {
        let utf16: Vec<u8> = b"\xFF\xFE"
            .iter()
            .copied()
            .chain(
                CLEAN_CONTENT_TYPES
                    .replace("UTF-8", "UTF-16")
                    .encode_utf16()
                    .flat_map(u16::to_le_bytes),
            )
            .collect();
        let utf16_docx = zip_of(&[
            ("[Content_Types].xml", &utf16),
            ("_rels/.rels", PACKAGE_RELS.as_bytes()),
            ("word/document.xml", DOCUMENT.as_bytes()),
        ]);
        let upper_names = zip_of(&[
            ("[CONTENT_TYPES].XML", CLEAN_CONTENT_TYPES.as_bytes()),
            ("_RELS/.RELS", PACKAGE_RELS.as_bytes()),
            ("Word/Document.xml", DOCUMENT.as_bytes()),
        ]);
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<u8>, MediaType)> = vec![
            ("docx with UTF-16 content types", utf16_docx,                           MediaType::Docx),
            ("docx with upper-case names",     upper_names,                          MediaType::Docx),
            ("doc with an embedded sheet",     ole_of(&["WordDocument", "ObjectPool/_1/Workbook"]), MediaType::Doc),
            ("doc with lower-case names",      ole_of(&["worddocument"]),            MediaType::Doc),
        ];
        for (what, data, expected) in cases {
            assert_eq!(check_all(&data, 4096), Ok(expected), "{what}");
        }
    }

    #[test]
    fn word_files_with_macros_are_unsupported() {
        let macros_bin: &[u8] = b"\x01\x02VBA project";
        let vba_rels = document_rels_with("vbaProject", "macros.bin");
        let plain_bin_types = CLEAN_CONTENT_TYPES.replace(
            "<Default Extension=\"xml\"",
            "<Default Extension=\"bin\" ContentType=\"application/octet-stream\"/><Default Extension=\"xml\"",
        );
        let vba_by_extension = CLEAN_CONTENT_TYPES.replace(
            "<Default Extension=\"xml\"",
            "<Default Extension=\"bin\" ContentType=\"application/vnd.ms-office.vbaProject\"/><Default Extension=\"xml\"",
        );
        let escaped_docm = CLEAN_CONTENT_TYPES.replace(
            "wordprocessingml.document.main+xml",
            "wordprocessingml.document.macro&#69;nabled.main+xml",
        );
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("docm: macro-enabled type, vbaProject relationship to word/macros.bin",
                docx_with(MACRO_CONTENT_TYPES_XML, &vba_rels, &[("word/macros.bin", macros_bin)]), "macroEnabled"),
            ("a macro-enabled main part alone",
                docx_with(&MACRO_CONTENT_TYPES_XML.replace("<Override PartName=\"/word/macros.bin\" ContentType=\"application/vnd.ms-office.vbaProject\"/>", ""), DOCUMENT_RELS, &[]), "macroEnabled"),
            ("a macro-enabled type behind a character reference",
                docx_with(&escaped_docm, DOCUMENT_RELS, &[]), "macroEnabled"),
            ("a vbaProject default content type",
                docx_with(&vba_by_extension, &vba_rels, &[("word/macros.bin", macros_bin)]), "vnd.ms-office.vbaProject"),
            ("a vbaProject relationship alone",
                docx_with(&plain_bin_types, &vba_rels, &[("word/macros.bin", macros_bin)]), "relationships/vbaProject"),
            ("a vbaProjectSignature relationship",
                docx_with(&plain_bin_types, &document_rels_with("vbaProjectSignature", "sig.bin"), &[("word/sig.bin", macros_bin)]), "vbaProjectSignature"),
            ("a wordVbaData relationship",
                docx_with(CLEAN_CONTENT_TYPES, &document_rels_with("wordVbaData", "data.xml"), &[("word/data.xml", b"<wne:vbaSuppData/>")]), "wordVbaData"),
            ("a part word/VBAPROJECT.BIN",
                docx_with(CLEAN_CONTENT_TYPES, DOCUMENT_RELS, &[("word/VBAPROJECT.BIN", macros_bin)]), "word/VBAPROJECT.BIN"),
            ("a part word/vbaProject.bin",
                docx_with(CLEAN_CONTENT_TYPES, DOCUMENT_RELS, &[("word/vbaProject.bin", macros_bin)]), "word/vbaProject.bin"),
            ("doc with Macros/VBA/_VBA_PROJECT",
                ole_of(&["WordDocument", "Macros/VBA/_VBA_PROJECT", "Macros/VBA/dir", "Macros/PROJECT"]), "VBA"),
            ("doc with lower-case vba storage and streams",
                ole_of(&["WordDocument", "macros/vba/_vba_project"]), "vba"),
            ("doc with a PROJECT stream alone",
                ole_of(&["WordDocument", "Macros/PROJECT"]), "PROJECT"),
            ("doc embedding an object with macros",
                ole_of(&["WordDocument", "ObjectPool/_1/_VBA_PROJECT_CUR/VBA/ThisWorkbook"]), "VBA"),
        ];
        for (what, data, named) in cases {
            for chunk in [1000, data.len()] {
                match check_all(&data, chunk) {
                    Err(ContentRejection::Unsupported(reason)) => {
                        assert!(
                            matches!(reason, UnsupportedContent::Macros { .. }),
                            "{what}: {reason:?}"
                        );
                        let reason = reason.to_string();
                        assert!(reason.contains("macros"), "{what}: {reason}");
                        assert!(reason.contains(named), "{what}: {reason}");
                    }
                    other => panic!("{what}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn everything_else_is_unsupported() {
        let zip_of_a_spreadsheet = zip_of(&[
            ("[Content_Types].xml", CLEAN_CONTENT_TYPES.as_bytes()),
            ("xl/workbook.xml", b"<workbook/>"),
        ]);
        let zip_without_content_types = zip_of(&[("word/document.xml", DOCUMENT.as_bytes())]);
        let mut cut_docx = clean_docx();
        cut_docx.truncate(cut_docx.len() / 2);
        let mut cut_doc = ole_of(&["WordDocument"]);
        cut_doc.truncate(cut_doc.len() / 2);
        let same_name_twice = docx_with(
            CLEAN_CONTENT_TYPES,
            DOCUMENT_RELS,
            &[("WORD/DOCUMENT.XML", DOCUMENT.as_bytes())],
        );
        let malformed_rels = docx_with(
            CLEAN_CONTENT_TYPES,
            "<Relationships><Relationship Type=\"x",
            &[],
        );
        let unknown_entity = docx_with(
            &CLEAN_CONTENT_TYPES.replace("main+xml", "main+xml&macro;"),
            DOCUMENT_RELS,
            &[],
        );
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
            ("zip of a spreadsheet",    zip_of_a_spreadsheet),
            ("zip without content types", zip_without_content_types),
            ("ole2 that is not word",   ole_of(&["Workbook"])),
            ("word stream not at the root", ole_of(&["Other/WordDocument"])),
            ("truncated docx",          cut_docx),
            ("truncated doc",           cut_doc),
            ("zip magic, no zip",       b"PK\x03\x04 word/document.xml [Content_Types].xml".to_vec()),
            ("ole2 magic, no ole2",     b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1W\0o\0r\0d\0D\0o\0c\0u\0m\0e\0n\0t\0".to_vec()),
            ("one part name twice",     same_name_twice),
            ("malformed relationships", malformed_rels),
            ("undeclared xml entity",   unknown_entity),
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
    fn zip_bombs_are_refused_within_the_limits() {
        // One relationship part inflating past 1 MiB.
        let padding = " ".repeat(usize::try_from(MAX_XML_PART_BYTES).unwrap());
        let huge_rels = format!("{DOCUMENT_RELS}<!--{padding}-->");
        let inflating = docx_with(CLEAN_CONTENT_TYPES, &huge_rels, &[]);
        assert!(inflating.len() < 64 * 1024, "{}", inflating.len());
        // Relationship parts each within the limit, past the total together.
        let big_rels = format!("{DOCUMENT_RELS}<!--{}-->", &padding[..900 * 1024]);
        let names: Vec<String> = (0..10)
            .map(|i| format!("word/_rels/p{i}.xml.rels"))
            .collect();
        let many: Vec<(&str, &[u8])> = names
            .iter()
            .map(|name| (name.as_str(), big_rels.as_bytes()))
            .collect();
        let inflating_together = docx_with(CLEAN_CONTENT_TYPES, DOCUMENT_RELS, &many);
        // More entries than any document has.
        let names: Vec<String> = (0..=MAX_CONTAINER_ENTRIES)
            .map(|i| format!("word/media/{i}.png"))
            .collect();
        let crowded: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
        let crowded = docx_with(CLEAN_CONTENT_TYPES, DOCUMENT_RELS, &crowded);
        for (what, data) in [
            ("one inflating part", inflating),
            ("parts inflating together", inflating_together),
            ("10001 parts", crowded),
        ] {
            match check_all(&data, 64 * 1024) {
                Err(ContentRejection::Unsupported(reason)) => {
                    assert!(
                        matches!(reason, UnsupportedContent::Unreadable { .. }),
                        "{what}: {reason:?}"
                    );
                    let reason = reason.to_string();
                    assert!(reason.contains("cannot be checked"), "{what}: {reason}");
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let docx = clean_docx();
        let docm = docx_with(
            CLEAN_CONTENT_TYPES,
            DOCUMENT_RELS,
            &[("word/vbaProject.bin", b"VBA")],
        );
        for chunk in [1, 3, 17, 64, docx.len()] {
            assert_eq!(
                check_all(&docx, chunk),
                Ok(MediaType::Docx),
                "chunk {chunk}"
            );
            assert!(check_all(&docm, chunk).is_err(), "chunk {chunk}");
        }
    }

    #[test]
    fn only_word_files_are_kept_for_the_container_check() {
        let pdf = sniff(b"%PDF-1.4\n").unwrap().content_check();
        assert!(!pdf.reads_a_container());
        let docx = sniff(&clean_docx()).unwrap().content_check();
        assert!(docx.reads_a_container());
    }

    #[test]
    fn markers_beyond_the_head_do_not_matter() {
        let mut pdf = b"%PDF-1.4\n".to_vec();
        pdf.resize(SNIFF_BYTES + 10, b' ');
        pdf.extend_from_slice(b"<html>");
        assert_eq!(check_all(&pdf, 4096), Ok(MediaType::Pdf));
    }
}
