//! The exported web site (`scripts/build-site.sh`), served at `/` from memory.
//!
//! The export is small (a few pages, one JS glue file, one WebAssembly bundle), so it is read
//! whole at start and every compressible file is compressed once, with brotli and gzip. A
//! request can only ever name a file that was loaded then: there is no file system access, and
//! so no path traversal, after start.
//!
//! Paths resolve as poem's `StaticFilesEndpoint` with `index_file("index.html")` did for the
//! Perseus export: `/` is `index.html`, `/login` and `/login/` are `login/index.html`, and every
//! other file is served under its own path (`/.perseus/bundle.wasm`).
//!
//! The `Content-Security-Policy` is computed from the loaded HTML: the SHA-256 of every inline
//! `<script>` and `<style>` (Perseus inlines the loader and the page state), `'self'` for the
//! bundle and `'wasm-unsafe-eval'` to compile the WebAssembly.

use crate::{ErrorBody, ErrorCode};
use base64::Engine as _;
use bytes::Bytes;
use poem::{
    endpoint::BoxEndpoint,
    http::{header, HeaderMap, HeaderValue, Method, StatusCode},
    Body, Endpoint, EndpointExt, IntoResponse, Request, Response,
};
use poem_openapi::payload::Json;
use sha2::{Digest, Sha256};
use std::{
    collections::{BTreeSet, HashMap},
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

/// Where the exported site is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteSettings {
    pub dir: PathBuf,
}

impl SiteSettings {
    /// The same as [`site_endpoint`] on `self.dir`.
    pub fn endpoint(&self) -> io::Result<Option<BoxEndpoint<'static, Response>>> {
        site_endpoint(&self.dir)
    }
}

/// Loads the exported site in `dir` into memory and returns the endpoint serving it, or `None`
/// when `dir/index.html` does not exist (the site has not been built). An error means the site
/// is there but could not be read.
pub fn site_endpoint(dir: &Path) -> io::Result<Option<BoxEndpoint<'static, Response>>> {
    if !dir.join("index.html").is_file() {
        return Ok(None);
    }
    Ok(Some(Site::load(dir)?.boxed()))
}

/// Served for every asset: the names Perseus exports (`bundle.wasm`, `bundle.js`,
/// `login/index.html`) carry no content hash, so browsers must revalidate (cheap: `ETag`).
const CACHE_CONTROL: &str = "no-cache";
const VARY: &str = "Accept-Encoding";
const ALLOW: &str = "GET, HEAD";
/// Directories deeper than this are refused (a symlink loop would otherwise never end).
const MAX_DEPTH: usize = 16;
/// brotli's best quality and a 4 MiB window: slow, but it runs once per file at start.
const BROTLI_QUALITY: u32 = 11;
const BROTLI_LG_WINDOW: u32 = 22;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Coding {
    Brotli,
    Gzip,
    Identity,
}

impl Coding {
    fn header(self) -> Option<&'static str> {
        match self {
            Self::Brotli => Some("br"),
            Self::Gzip => Some("gzip"),
            Self::Identity => None,
        }
    }
}

/// One encoding of a file.
struct Variant {
    body: Bytes,
    /// Strong validator: a hash of exactly these bytes, so each encoding has its own.
    etag: HeaderValue,
}

impl Variant {
    fn new(body: Vec<u8>) -> Self {
        let digest = Sha256::digest(&body);
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            body: Bytes::from(body),
            etag: HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header"),
        }
    }
}

struct Asset {
    content_type: HeaderValue,
    identity: Variant,
    /// Present only when it is smaller than the identity encoding.
    gzip: Option<Variant>,
    brotli: Option<Variant>,
}

impl Asset {
    fn variant(&self, coding: Coding) -> Option<&Variant> {
        match coding {
            Coding::Brotli => self.brotli.as_ref(),
            Coding::Gzip => self.gzip.as_ref(),
            Coding::Identity => Some(&self.identity),
        }
    }
}

struct Site {
    /// Keyed by the path without leading or trailing `/`; `""` and `login` are aliases of
    /// `index.html` and `login/index.html`.
    assets: HashMap<String, Arc<Asset>>,
    csp: HeaderValue,
}

impl Site {
    fn load(dir: &Path) -> io::Result<Self> {
        let mut files = Vec::new();
        collect_files(dir, "", 0, &mut files)?;
        let mut raw = Vec::with_capacity(files.len());
        for (_, path) in &files {
            raw.push(fs::read(path)?);
        }

        let mut inline = InlineContent::default();
        for ((name, _), bytes) in files.iter().zip(&raw) {
            if is_html(name) {
                inline.scan(&String::from_utf8_lossy(bytes));
            }
        }
        if inline.event_handler_attributes {
            tracing::warn!(
                "the web site's HTML has inline event handler attributes (onclick=...); the \
                 Content-Security-Policy blocks them"
            );
        }
        let csp = inline.content_security_policy();

        let compressible: Vec<bool> = files.iter().map(|(name, _)| content_type(name).1).collect();
        let compressed = compress_all(&raw, &compressible)?;

        let file_count = files.len();
        let (mut total, mut total_br, mut total_gz) = (0usize, 0usize, 0usize);
        let mut assets = HashMap::with_capacity(files.len() + 4);
        for (((name, _), bytes), [brotli, gzip]) in files.into_iter().zip(raw).zip(compressed) {
            total += bytes.len();
            total_br += brotli.as_ref().map_or(bytes.len(), Vec::len);
            total_gz += gzip.as_ref().map_or(bytes.len(), Vec::len);
            let asset = Arc::new(Asset {
                content_type: HeaderValue::from_static(content_type(&name).0),
                identity: Variant::new(bytes),
                gzip: gzip.map(Variant::new),
                brotli: brotli.map(Variant::new),
            });
            if name == "index.html" {
                assets.insert(String::new(), asset.clone());
            } else if let Some(dir) = name.strip_suffix("/index.html") {
                assets.insert(dir.to_owned(), asset.clone());
            }
            assets.insert(name, asset);
        }
        tracing::info!(
            files = file_count,
            bytes = total,
            brotli_bytes = total_br,
            gzip_bytes = total_gz,
            "web site loaded into memory"
        );
        Ok(Self {
            assets,
            csp: HeaderValue::from_str(&csp).map_err(io::Error::other)?,
        })
    }

    /// The asset a request path names, if any. Only `/`-separated, percent-decoded segments
    /// are looked up; `.` and `..` segments and encoded separators are refused outright.
    fn resolve(&self, raw_path: &str) -> Option<&Asset> {
        let lower = raw_path.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") || lower.contains("%00") {
            return None;
        }
        let decoded = percent_decode(raw_path)?;
        if decoded.contains('\\') || decoded.contains('\0') {
            return None;
        }
        let mut segments = Vec::new();
        for segment in decoded.split('/') {
            match segment {
                "" => continue,
                "." | ".." => return None,
                s => segments.push(s),
            }
        }
        self.assets.get(&segments.join("/")).map(|a| &**a)
    }

    fn respond(&self, req: &Request) -> Response {
        let head = req.method() == Method::HEAD;
        if !head && req.method() != Method::GET {
            let mut response = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                "the web site answers GET and HEAD only",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
            return response;
        }
        let Some(asset) = self.resolve(req.uri().path()) else {
            return error_response(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such page");
        };
        let Some(coding) = negotiate(req.headers(), asset) else {
            let mut response = error_response(
                StatusCode::NOT_ACCEPTABLE,
                ErrorCode::NotAcceptable,
                "no encoding of this file is acceptable (Accept-Encoding)",
            );
            response
                .headers_mut()
                .insert(header::VARY, HeaderValue::from_static(VARY));
            return response;
        };
        let variant = asset
            .variant(coding)
            .expect("negotiate picks an available variant");

        let not_modified = etag_matches(req.headers(), &variant.etag);
        let mut response = Response::default();
        if not_modified {
            response.set_status(StatusCode::NOT_MODIFIED);
        }
        let headers = response.headers_mut();
        headers.insert(header::ETAG, variant.etag.clone());
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL),
        );
        headers.insert(header::VARY, HeaderValue::from_static(VARY));
        headers.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        if not_modified {
            return response;
        }
        headers.insert(header::CONTENT_TYPE, asset.content_type.clone());
        headers.insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(variant.body.len()),
        );
        if let Some(encoding) = coding.header() {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        if !head {
            response.set_body(Body::from_bytes(variant.body.clone()));
        }
        response
    }
}

impl Endpoint for Site {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        Ok(self.respond(&req))
    }
}

fn error_response(status: StatusCode, code: ErrorCode, message: &str) -> Response {
    let mut response = Json(ErrorBody::new(code, message)).into_response();
    response.set_status(status);
    response
}

/// Every regular file under `dir` (following symlinks), as (`/`-joined relative path, path).
fn collect_files(
    dir: &Path,
    prefix: &str,
    depth: usize,
    out: &mut Vec<(String, PathBuf)>,
) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!(
            "{} is nested more than {MAX_DEPTH} directories deep (a symlink loop?)",
            dir.display()
        )));
    }
    let mut entries = fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            tracing::warn!(path = %path.display(), "skipping a file whose name is not UTF-8");
            continue;
        };
        let key = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let metadata = match fs::metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "skipping an unreadable entry");
                continue;
            }
        };
        if metadata.is_dir() {
            collect_files(&path, &key, depth + 1, out)?;
        } else if metadata.is_file() {
            out.push((key, path));
        }
    }
    Ok(())
}

fn extension(name: &str) -> String {
    let file = name.rsplit('/').next().unwrap_or(name);
    file.rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default()
}

fn is_html(name: &str) -> bool {
    matches!(extension(name).as_str(), "html" | "htm")
}

/// The `Content-Type` for a file name, and whether compressing it is worthwhile.
fn content_type(name: &str) -> (&'static str, bool) {
    match extension(name).as_str() {
        "html" | "htm" => ("text/html; charset=utf-8", true),
        "js" | "mjs" => ("text/javascript; charset=utf-8", true),
        // `WebAssembly.instantiateStreaming` insists on exactly this type.
        "wasm" => ("application/wasm", true),
        "css" => ("text/css; charset=utf-8", true),
        "json" | "map" => ("application/json", true),
        "webmanifest" => ("application/manifest+json", true),
        "svg" => ("image/svg+xml", true),
        "txt" => ("text/plain; charset=utf-8", true),
        "xml" => ("application/xml", true),
        "ico" => ("image/x-icon", false),
        "png" => ("image/png", false),
        "jpg" | "jpeg" => ("image/jpeg", false),
        "gif" => ("image/gif", false),
        "webp" => ("image/webp", false),
        "avif" => ("image/avif", false),
        "woff" => ("font/woff", false),
        "woff2" => ("font/woff2", false),
        _ => ("application/octet-stream", false),
    }
}

/// Compresses every compressible file with brotli and gzip, on all cores. Each result is kept
/// only when it is smaller than the original: `[brotli, gzip]` per file.
fn compress_all(raw: &[Vec<u8>], compressible: &[bool]) -> io::Result<Vec<[Option<Vec<u8>>; 2]>> {
    let mut jobs: Vec<(usize, Coding)> = (0..raw.len())
        .filter(|&i| compressible[i] && !raw[i].is_empty())
        .flat_map(|i| [(i, Coding::Brotli), (i, Coding::Gzip)])
        .collect();
    // Largest first, so the big bundle does not start last.
    jobs.sort_by_key(|&(i, _)| std::cmp::Reverse(raw[i].len()));
    let results = Mutex::new(vec![[None, None]; raw.len()]);
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(jobs.len())
        .max(1);
    let (jobs_ref, results_ref, next_ref) = (&jobs, &results, &next);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(move |_| {
                scope.spawn(move || -> io::Result<()> {
                    while let Some(&(i, coding)) =
                        jobs_ref.get(next_ref.fetch_add(1, Ordering::Relaxed))
                    {
                        let original = &raw[i];
                        let (packed, slot) = match coding {
                            Coding::Brotli => (brotli_compress(original)?, 0),
                            _ => (gzip_compress(original)?, 1),
                        };
                        if packed.len() < original.len() {
                            results_ref
                                .lock()
                                .expect("no worker panics holding the lock")[i][slot] =
                                Some(packed);
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|handle| {
            handle
                .join()
                .map_err(|_| io::Error::other("compressing the web site panicked"))?
        })
    })?;
    Ok(results
        .into_inner()
        .expect("no worker panics holding the lock"))
}

fn gzip_compress(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 2),
        flate2::Compression::best(),
    );
    encoder.write_all(data)?;
    encoder.finish()
}

fn brotli_compress(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 2);
    {
        let mut writer =
            brotli::CompressorWriter::new(&mut out, 64 * 1024, BROTLI_QUALITY, BROTLI_LG_WINDOW);
        writer.write_all(data)?;
        // Dropping the writer finishes the stream (writing to a Vec cannot fail).
    }
    Ok(out)
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
fn percent_decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The client's `Accept-Encoding` weights, in thousandths.
#[derive(Default, Debug)]
struct AcceptEncoding {
    brotli: Option<u16>,
    gzip: Option<u16>,
    identity: Option<u16>,
    any: Option<u16>,
}

impl AcceptEncoding {
    /// `None` when the request has no `Accept-Encoding` header at all.
    fn parse(headers: &HeaderMap) -> Option<Self> {
        let mut values = headers.get_all(header::ACCEPT_ENCODING).iter().peekable();
        values.peek()?;
        let mut accept = Self::default();
        for element in values
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
        {
            let mut parts = element.split(';');
            let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            if coding.is_empty() {
                continue;
            }
            let mut q = Some(1000);
            for param in parts {
                if let Some((name, value)) = param.split_once('=') {
                    if name.trim().eq_ignore_ascii_case("q") {
                        q = parse_qvalue(value);
                    }
                }
            }
            let Some(q) = q else { continue };
            let slot = match coding.as_str() {
                "br" => &mut accept.brotli,
                "gzip" | "x-gzip" => &mut accept.gzip,
                "identity" => &mut accept.identity,
                "*" => &mut accept.any,
                _ => continue,
            };
            slot.get_or_insert(q);
        }
        Some(accept)
    }
}

/// An RFC 9110 qvalue (`0`, `0.5`, `1.000`) in thousandths.
fn parse_qvalue(value: &str) -> Option<u16> {
    let value = value.trim();
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut q: u16 = match whole {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    for (digit, scale) in fraction.bytes().zip([100, 10, 1]) {
        q += u16::from(digit - b'0') * scale;
    }
    (q <= 1000).then_some(q)
}

/// The encoding to send: the highest weight the client gives an available encoding, brotli
/// before gzip before identity on equal weights. No header means identity. `None` when nothing
/// available is acceptable (identity refused with `identity;q=0` or `*;q=0`).
fn negotiate(headers: &HeaderMap, asset: &Asset) -> Option<Coding> {
    let Some(accept) = AcceptEncoding::parse(headers) else {
        return Some(Coding::Identity);
    };
    let weight = |coding: Coding| match coding {
        Coding::Brotli => accept.brotli.or(accept.any).unwrap_or(0),
        Coding::Gzip => accept.gzip.or(accept.any).unwrap_or(0),
        // Unlisted identity stays acceptable, but as the last choice.
        Coding::Identity => accept.identity.or(accept.any).unwrap_or(1),
    };
    let mut best: Option<(u16, Coding)> = None;
    for coding in [Coding::Brotli, Coding::Gzip, Coding::Identity] {
        let q = weight(coding);
        if q > 0 && asset.variant(coding).is_some() && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, coding));
        }
    }
    best.map(|(_, coding)| coding)
}

/// `If-None-Match` (weak comparison, as RFC 9110 §13.1.2 asks) against the selected variant.
fn etag_matches(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Ok(ours) = etag.to_str() else {
        return false;
    };
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == ours)
}

/// What the exported HTML inlines, for the `Content-Security-Policy`.
#[derive(Default, Debug)]
struct InlineContent {
    script_hashes: BTreeSet<String>,
    style_hashes: BTreeSet<String>,
    style_attributes: bool,
    event_handler_attributes: bool,
}

impl InlineContent {
    /// Records the inline `<script>`s and `<style>`s of one HTML document, and whether it uses
    /// `style="..."` or `on...="..."` attributes. A small tokenizer, enough for generated HTML:
    /// comments are skipped, attribute values may be quoted, and `script`/`style` contents run
    /// to their closing tag.
    fn scan(&mut self, html: &str) {
        let bytes = html.as_bytes();
        let mut i = 0;
        while let Some(offset) = html[i..].find('<') {
            i += offset + 1;
            let rest = &html[i..];
            if rest.starts_with("!--") {
                i += rest.find("-->").map_or(rest.len(), |end| end + 3);
                continue;
            }
            if !rest.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()) {
                // `</tag>`, `<!DOCTYPE>` or a stray `<`: nothing to record.
                continue;
            }
            let name_len = rest
                .bytes()
                .position(|b| !b.is_ascii_alphanumeric() && b != b'-')
                .unwrap_or(rest.len());
            let tag = rest[..name_len].to_ascii_lowercase();
            i += name_len;
            let mut has_src = false;
            // Attributes, up to the end of the start tag.
            loop {
                while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                match bytes.get(i) {
                    None => return,
                    Some(b'>') => {
                        i += 1;
                        break;
                    }
                    Some(b'/') => {
                        // `<script />` still opens a script in HTML: the slash means nothing.
                        i += 1;
                        continue;
                    }
                    Some(_) => {}
                }
                let start = i;
                while i < bytes.len()
                    && !bytes[i].is_ascii_whitespace()
                    && !matches!(bytes[i], b'=' | b'>' | b'/')
                {
                    i += 1;
                }
                let attribute = html[start..i].to_ascii_lowercase();
                while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                    i += 1;
                }
                if bytes.get(i) == Some(&b'=') {
                    i += 1;
                    while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                        i += 1;
                    }
                    match bytes.get(i) {
                        Some(&quote @ (b'"' | b'\'')) => {
                            i += 1;
                            while i < bytes.len() && bytes[i] != quote {
                                i += 1;
                            }
                            i += 1;
                        }
                        _ => {
                            while i < bytes.len()
                                && !bytes[i].is_ascii_whitespace()
                                && bytes[i] != b'>'
                            {
                                i += 1;
                            }
                        }
                    }
                }
                match attribute.as_str() {
                    "src" => has_src = true,
                    "style" => self.style_attributes = true,
                    a if a.len() > 2 && a.starts_with("on") => {
                        self.event_handler_attributes = true;
                    }
                    _ => {}
                }
            }
            if !matches!(tag.as_str(), "script" | "style") {
                continue;
            }
            // Raw text up to the closing tag (ASCII lowercase keeps byte offsets).
            let closing = format!("</{tag}");
            let end = html[i..]
                .to_ascii_lowercase()
                .find(&closing)
                .map_or(html.len(), |end| i + end);
            let content = &html[i..end];
            i = end;
            let hash = csp_hash(content);
            if tag == "style" {
                self.style_hashes.insert(hash);
            } else if !has_src {
                self.script_hashes.insert(hash);
            }
        }
    }

    fn content_security_policy(&self) -> String {
        let mut script_src = String::from("'self' 'wasm-unsafe-eval'");
        for hash in &self.script_hashes {
            script_src.push_str(&format!(" '{hash}'"));
        }
        let mut style_src = String::from("'self'");
        if self.style_attributes {
            // With a hash present browsers ignore 'unsafe-inline', so it replaces the hashes.
            style_src.push_str(" 'unsafe-inline'");
        } else {
            for hash in &self.style_hashes {
                style_src.push_str(&format!(" '{hash}'"));
            }
        }
        // `form-action 'none'`: every form of the site is handled in script. One the browser
        // submitted natively (Enter pressed before the app is live) would put its fields, the
        // password among them, in the URL, and so in history and in the proxy's access log.
        format!(
            "default-src 'none'; script-src {script_src}; style-src {style_src}; \
             img-src 'self' data:; font-src 'self'; connect-src 'self'; manifest-src 'self'; \
             object-src 'none'; base-uri 'self'; form-action 'none'; frame-ancestors 'none'"
        )
    }
}

/// The `Content-Security-Policy` of the API's Swagger UI page (`/api/docs`), from the page as
/// served: poem-openapi inlines Swagger UI's script, its stylesheet and the script starting it
/// with the document, so each is allowed by its SHA-256 and nothing else runs or loads. No other
/// origin: images only from the stylesheet's `data:` URLs, requests ("Try it out") only to this
/// origin. The site's own tokens live on this origin, so the page gets no more than it needs.
pub(crate) fn docs_content_security_policy(html: &str) -> String {
    let mut inline = InlineContent::default();
    inline.scan(html);
    if inline.event_handler_attributes {
        tracing::warn!(
            "the API docs page has inline event handler attributes (onclick=...); the \
             Content-Security-Policy blocks them"
        );
    }
    let mut script_src = String::new();
    for hash in &inline.script_hashes {
        script_src.push_str(&format!(" '{hash}'"));
    }
    let mut style_src = String::new();
    if inline.style_attributes {
        // With a hash present browsers ignore 'unsafe-inline', so it replaces the hashes.
        style_src.push_str(" 'unsafe-inline'");
    } else {
        for hash in &inline.style_hashes {
            style_src.push_str(&format!(" '{hash}'"));
        }
    }
    format!(
        "default-src 'none'; script-src{script_src}; style-src{style_src}; img-src data:; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

/// `sha256-<base64>` of an inline element's text as the browser sees it: the HTML parser turns
/// CRLF and lone CR into LF before the hash is taken.
fn csp_hash(content: &str) -> String {
    let normalized = content.replace("\r\n", "\n").replace('\r', "\n");
    let digest = Sha256::digest(normalized.as_bytes());
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(gzip: bool, brotli: bool) -> Asset {
        Asset {
            content_type: HeaderValue::from_static("text/plain"),
            identity: Variant::new(b"identity".to_vec()),
            gzip: gzip.then(|| Variant::new(b"gzip".to_vec())),
            brotli: brotli.then(|| Variant::new(b"br".to_vec())),
        }
    }

    fn pick(accept: Option<&str>, asset: &Asset) -> Option<Coding> {
        let mut headers = HeaderMap::new();
        if let Some(accept) = accept {
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(accept).unwrap(),
            );
        }
        negotiate(&headers, asset)
    }

    #[test]
    fn accept_encoding_is_negotiated() {
        let both = asset(true, true);
        assert_eq!(pick(None, &both), Some(Coding::Identity));
        assert_eq!(
            pick(Some("gzip, deflate, br, zstd"), &both),
            Some(Coding::Brotli)
        );
        assert_eq!(pick(Some("gzip"), &both), Some(Coding::Gzip));
        assert_eq!(pick(Some("br;q=0, gzip"), &both), Some(Coding::Gzip));
        assert_eq!(
            pick(Some("br;q=0.5, gzip;q=0.8"), &both),
            Some(Coding::Gzip)
        );
        assert_eq!(pick(Some("BR ; Q=1.0"), &both), Some(Coding::Brotli));
        assert_eq!(pick(Some("identity"), &both), Some(Coding::Identity));
        assert_eq!(pick(Some(""), &both), Some(Coding::Identity));
        assert_eq!(pick(Some("*"), &both), Some(Coding::Brotli));
        assert_eq!(pick(Some("*;q=0"), &both), None);
        assert_eq!(pick(Some("gzip;q=0, identity;q=0"), &both), None);
        assert_eq!(
            pick(Some("br, gzip"), &asset(false, false)),
            Some(Coding::Identity)
        );
        assert_eq!(pick(Some("br, identity;q=0"), &asset(false, false)), None);
        assert_eq!(pick(Some("gzip;q=2"), &both), Some(Coding::Identity));
    }

    #[test]
    fn paths_resolve_like_the_static_files_endpoint_and_never_escape() {
        let mut assets = HashMap::new();
        for key in [
            "",
            "index.html",
            "login",
            "login/index.html",
            ".perseus/bundle.wasm",
        ] {
            assets.insert(key.to_owned(), Arc::new(asset(false, false)));
        }
        let site = Site {
            assets,
            csp: HeaderValue::from_static("default-src 'none'"),
        };
        for found in [
            "/",
            "",
            "/index.html",
            "/login",
            "/login/",
            "//login//",
            "/%6cogin",
        ] {
            assert!(site.resolve(found).is_some(), "{found}");
        }
        assert!(site.resolve("/.perseus/bundle.wasm").is_some());
        for missing in [
            "/../index.html",
            "/login/../index.html",
            "/%2e%2e/index.html",
            "/.%2E/index.html",
            "/login%2findex.html",
            "/login%5Cindex.html",
            "/./index.html",
            "/%zz",
            "/%ff",
            "/nope",
        ] {
            assert!(site.resolve(missing).is_none(), "{missing}");
        }
    }

    #[test]
    fn inline_scripts_and_styles_are_hashed() {
        let mut inline = InlineContent::default();
        inline.scan(
            "<!DOCTYPE html><html><head><!-- <script>no</script> --><style>a{}</style>\
             <script type=\"module\">x()</script><SCRIPT src='/b.js'></SCRIPT>\
             <script>\r\ny()\r\n</script></head><body><div id=a></div></body></html>",
        );
        assert_eq!(
            inline.script_hashes,
            BTreeSet::from([csp_hash("x()"), csp_hash("\ny()\n")])
        );
        assert_eq!(inline.style_hashes, BTreeSet::from([csp_hash("a{}")]));
        assert!(!inline.style_attributes && !inline.event_handler_attributes);
        let csp = inline.content_security_policy();
        assert!(csp.contains(&format!("'{}'", csp_hash("x()"))), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(
            csp.contains("; form-action 'none';"),
            "no native submission: {csp}"
        );

        inline.scan("<p style=\"color:red\" onclick=\"go()\">hi</p>");
        assert!(inline.style_attributes && inline.event_handler_attributes);
        assert!(inline
            .content_security_policy()
            .contains("style-src 'self' 'unsafe-inline';"));
    }

    #[test]
    fn the_docs_policy_allows_exactly_the_pages_inline_code() {
        let csp = docs_content_security_policy(
            "<html><head><style charset=\"UTF-8\">a{}</style><script charset=\"UTF-8\">x()\
             </script></head><body><script>\n    y()\n</script></body></html>",
        );
        assert_eq!(
            csp,
            format!(
                "default-src 'none'; script-src '{}' '{}'; style-src '{}'; img-src data:; \
                 connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
                 frame-ancestors 'none'",
                // BTreeSet order: the hashes sorted.
                csp_hash("x()").min(csp_hash("\n    y()\n")),
                csp_hash("x()").max(csp_hash("\n    y()\n")),
                csp_hash("a{}")
            )
        );
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_qvalue("0"), Some(0));
        assert_eq!(parse_qvalue("0.25"), Some(250));
        assert_eq!(parse_qvalue("1.000"), Some(1000));
        assert_eq!(parse_qvalue("1.5"), None);
        assert_eq!(parse_qvalue("0.1234"), None);
        assert_eq!(parse_qvalue("x"), None);
    }
}
