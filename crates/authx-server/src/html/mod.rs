//! Server-rendered pages: templates in `templates/` (embedded in the binary at compile time),
//! one layout, text escaped by default, no script and no inline style.
//!
//! Each page is a struct deriving `askama::Template`; handlers fill it from what core returned and
//! hand it to `render`. A template never builds markup from a string: every `{{ value }}` is
//! escaped for element content and quoted attribute values.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

pub(crate) mod account;
pub(crate) mod console;
pub(crate) mod device;
pub(crate) mod display;
pub(crate) mod federation;
pub(crate) mod links;
pub(crate) mod oauth;
pub(crate) mod verify;

/// A requested scope and what it lets an application do, as consent pages list them.
pub(crate) struct Scope<'a> {
    pub(crate) name: &'a str,
    pub(crate) description: &'a str,
}

impl<'a> Scope<'a> {
    /// The scopes of a space-separated `scope` value, each described.
    pub(crate) fn list(scopes: impl IntoIterator<Item = &'a str>) -> Vec<Self> {
        scopes
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(|name| Scope {
                name,
                description: describe(name),
            })
            .collect()
    }
}

/// What a scope lets an application do, in the user's words.
fn describe(scope: &str) -> &str {
    match scope {
        "openid" => "Know who you are (your account id)",
        "email" => "See your email address",
        "profile" => "See your basic profile",
        "offline_access" => "Stay connected when you are not using it",
        other => other,
    }
}

/// The escaper of every `{{ value }}` in the templates (askama.toml): safe in element content
/// and in quoted attribute values.
#[derive(Clone, Copy)]
pub(crate) struct Escaper;

impl askama::filters::Escaper for Escaper {
    fn write_escaped_str<W: std::fmt::Write>(&self, mut dest: W, s: &str) -> std::fmt::Result {
        let mut last = 0;
        for (i, c) in s.char_indices() {
            let entity = match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#x27;",
                _ => continue,
            };
            dest.write_str(&s[last..i])?;
            dest.write_str(entity)?;
            last = i + 1;
        }
        dest.write_str(&s[last..])
    }
}

/// Renders `page` as the body of a `status` answer.
///
/// Rendering fails only if a value's `Display` fails, which none of the pages' values do; the
/// answer is then a bare 500 rather than half a page.
pub(crate) fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "page rendering failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// What a [`Message`] page says under its heading.
pub(crate) enum Paragraph<'a> {
    /// Nothing.
    None,
    /// A plain paragraph.
    Text(&'a str),
    /// An error paragraph announced to assistive technology (`role="alert"`).
    Alert(&'a str),
    /// An error paragraph of a refused request.
    Refusal(&'a str),
}

/// A page of a heading and at most one paragraph: errors, refusals, "signed out".
#[derive(Template)]
#[template(path = "message.html")]
pub(crate) struct Message<'a> {
    title: &'a str,
    heading: &'a str,
    body: Paragraph<'a>,
    back_to_login: bool,
}

impl<'a> Message<'a> {
    /// A page titled `title` with the heading `heading` and `body` under it.
    pub(crate) fn new(title: &'a str, heading: &'a str, body: Paragraph<'a>) -> Self {
        Self {
            title,
            heading,
            body,
            back_to_login: false,
        }
    }

    /// An error page whose title is its heading.
    pub(crate) fn error(title: &'a str, msg: &'a str) -> Self {
        Self::new(title, title, Paragraph::Alert(msg))
    }

    /// Adds a link back to the sign-in page.
    pub(crate) fn back_to_login(self) -> Self {
        Self {
            back_to_login: true,
            ..self
        }
    }

    /// The page as a `status` answer.
    pub(crate) fn response(&self, status: StatusCode) -> Response {
        render(status, self)
    }
}

/// The stylesheet served at `/assets/authx.css`.
pub const CSS: &str = "\
*{box-sizing:border-box}body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}\
main{max-width:44rem;margin:3rem auto;padding:2rem;background:#fff;border-radius:12px;box-shadow:0 1px 4px #0002}\
h1{margin-top:0;font-size:1.5rem}label{display:block;margin:.8rem 0 .2rem;font-weight:600}\
input[type=email],input[type=password],input[type=text]{width:100%;padding:.55rem;border:1px solid #b8bfcc;border-radius:6px;font:inherit}\
button{margin-top:1rem;padding:.55rem 1.1rem;border:0;border-radius:6px;background:#2b59c3;color:#fff;font:inherit;cursor:pointer}\
button.secondary{background:#e4e7ee;color:#1d2330}\
a.button{display:inline-block;margin-top:.5rem;padding:.55rem 1.1rem;border-radius:6px;background:#2b59c3;color:#fff;text-decoration:none}\
a.button.secondary{background:#e4e7ee;color:#1d2330}button.danger{background:#b3261e}\
.error{background:#fde8e7;color:#8c1d18;padding:.6rem .8rem;border-radius:6px}\
.notice{background:#e6f4ea;color:#1e5631;padding:.6rem .8rem;border-radius:6px}\
table{width:100%;border-collapse:collapse;margin:1rem 0}td,th{text-align:left;padding:.4rem;border-bottom:1px solid #e4e7ee;font-size:.9rem}\
tr.current td:first-child::after{content:' (this device)';color:#2b59c3}form.inline{display:inline}form.inline button{margin:0;padding:.25rem .6rem}\
nav{margin-bottom:1rem}nav a{margin-right:1rem}.muted{color:#5b6475;font-size:.9rem}\
a{color:#1f4ea3}:focus-visible{outline:3px solid #1f4ea3;outline-offset:2px}\
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:#fff;padding:.5rem}\
.sr-only{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%)}\
body.console main{max-width:76rem;margin:1rem auto}\
.console-nav{background:#1d2330;padding:.6rem 1rem}.console-nav nav{max-width:76rem;margin:0 auto;display:flex;flex-wrap:wrap;gap:.4rem 1.2rem}\
.console-nav a{color:#fff;margin:0}.console-nav a[aria-current=page]{font-weight:700;text-decoration:underline}\
.scroll{overflow-x:auto}.figures{display:grid;grid-template-columns:repeat(auto-fill,minmax(12rem,1fr));gap:1rem}\
.figures div,.profile div{background:#f5f6f8;border-radius:8px;padding:.6rem .8rem}.figures dt,.profile dt{font-size:.85rem;color:#4a5263}\
.figures dd{margin:0;font-size:1.6rem;font-weight:600}.profile{display:grid;grid-template-columns:repeat(auto-fill,minmax(16rem,1fr));gap:.6rem}.profile dd{margin:0;overflow-wrap:anywhere}\
.warnings{padding:0;list-style:none}.warning{background:#fff4d6;color:#5c4300;padding:.6rem .8rem;border-radius:6px;margin:.3rem 0}\
.actions{display:flex;flex-wrap:wrap;gap:.8rem;align-items:flex-end}.actions form{margin:0}.actions button{margin-top:.4rem}\
label.check{font-weight:400}fieldset{border:1px solid #d5dae3;border-radius:6px;margin:1rem 0}\
input[type=search],input[type=number],input:not([type]),textarea,select,input[type=datetime-local]{width:100%;padding:.5rem;border:1px solid #b8bfcc;border-radius:6px;font:inherit}\
.filters{display:grid;grid-template-columns:repeat(auto-fill,minmax(13rem,1fr));gap:.2rem 1rem;align-items:end}\
.search{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end}.search input{flex:1 1 16rem}\
.pager{display:flex;gap:1rem}tr.failure td:nth-child(3){color:#8c1d18;font-weight:600}td.detail code{font-size:.8rem;overflow-wrap:anywhere}\
.secret{background:#e6f4ea;padding:.6rem .8rem;border-radius:6px}.secret input{font-family:monospace}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_have_no_inline_script_or_style() {
        // The pages' CSP (`default-src 'none'; style-src 'self'`) would block either.
        let page = account::Login {
            csrf: "t",
            return_to: "/account",
            email: "",
            error: Some("e"),
            sign_up: true,
            magic_links: true,
            providers: vec![account::ProviderButton {
                name: "corp".into(),
                start: "/federation/corp/start".into(),
                label: "Corp".into(),
                return_to: "%2Faccount".into(),
            }],
            passkeys: false,
        };
        let html = page.render().unwrap();
        for banned in ["<script", "<style", " style=", " onclick=", " onload="] {
            assert!(!html.contains(banned), "{banned} in {html}");
        }
        assert!(html.starts_with("<!doctype html><html lang=\"en\"><head>"));
        assert!(html.contains("<link rel=\"stylesheet\" href=\"/assets/authx.css\">"));
    }

    #[test]
    fn the_passkey_button_loads_the_script_file_and_nothing_inline() {
        let page = account::Login {
            csrf: "t",
            return_to: "/account",
            email: "",
            error: None,
            sign_up: false,
            magic_links: false,
            providers: Vec::new(),
            passkeys: true,
        };
        let html = page.render().unwrap();
        assert!(html.contains("<script src=\"/assets/passkey.js\" defer></script>"));
        assert_eq!(html.matches("<script").count(), 1, "{html}");
        for banned in ["<style", " style=", " onclick=", " onload="] {
            assert!(!html.contains(banned), "{banned} in {html}");
        }
    }

    #[test]
    fn escapes_markup() {
        let html = Message::error("<b>", "<script>\"x\"&'").render().unwrap();
        assert!(html.contains("<title>&lt;b&gt; · authx</title>"), "{html}");
        assert!(
            html.contains(
                "<p class=\"error\" role=\"alert\">&lt;script&gt;&quot;x&quot;&amp;&#x27;</p>"
            ),
            "{html}"
        );
    }
}
