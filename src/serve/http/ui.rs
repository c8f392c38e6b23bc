//! The status page served at `/ui`: one HTML document with its CSS and JavaScript inlined,
//! compiled into the binary from `ui/`, so it works on an air-gapped host (no CDN, no files to
//! install). The page reads `/status` and `/events` from the same origin every 1.5 s.
//!
//! This module only holds the assets; it must not render data server-side: the page is the same
//! bytes for every request, and everything it shows comes from the JSON endpoints.

/// The whole page: `ui/index.html` with `ui/style.css` and `ui/app.js` inlined in place of
/// their markers, built once at compile time.
pub const PAGE: &str = concat!(
    include_str!("../../../ui/head.html"),
    "<style>\n",
    include_str!("../../../ui/style.css"),
    "</style>\n",
    include_str!("../../../ui/body.html"),
    "<script>\n",
    include_str!("../../../ui/app.js"),
    "</script>\n</body>\n</html>\n"
);

/// The page's Content-Security-Policy: it may load nothing from anywhere, and talk only to the
/// guard that served it. Inline style and script are its own (the page is one document).
pub const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_self_contained() {
        assert!(PAGE.starts_with("<!doctype html>"));
        assert!(PAGE.contains("const STATUS = \"/status\""));
        // Nothing loaded from elsewhere: no external script, stylesheet, import or URL; the only
        // "http" is the SVG namespace name, which is never fetched.
        for remote in ["<script src", "rel=\"stylesheet\"", "@import", "url("] {
            assert!(!PAGE.contains(remote), "page refers to {remote}");
        }
        assert_eq!(
            PAGE.matches("http").count(),
            PAGE.matches("http://www.w3.org/2000/svg").count()
        );
    }
}
