//! The browser harness itself: Chromium starts, loads a page from 127.0.0.1 and shuts down.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::thread;

use authx_testkit::browser::Browser;

const PAGE: &str = "<!doctype html><html><head><title>authx smoke</title></head>\
                    <body><p id=\"greeting\">hello</p></body></html>";

/// Serves `PAGE` for every request, one connection at a time, until the test process exits.
fn serve_page() -> std::io::Result<String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let url = format!("http://{}/", listener.local_addr()?);
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = answer(stream);
        }
    });
    Ok(url)
}

fn answer(mut stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    // Read the request head; the page is the same whatever was asked.
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
        PAGE.len()
    )?;
    stream.flush()
}

#[tokio::test]
async fn chromium_opens_a_local_page() {
    let Some(browser) = Browser::start().await.unwrap() else {
        return;
    };
    let url = serve_page().unwrap();
    browser.client.goto(&url).await.unwrap();
    assert_eq!(browser.client.title().await.unwrap(), "authx smoke");
    let greeting = browser
        .client
        .find(authx_testkit::browser::fantoccini::Locator::Css(
            "#greeting",
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(greeting, "hello");
    browser.close().await.unwrap();
}

#[tokio::test]
async fn hosts_beyond_this_machine_do_not_resolve() {
    let Some(browser) = Browser::start().await.unwrap() else {
        return;
    };
    // Navigation to a name that would resolve publicly must fail with a DNS error page.
    let _ = browser.client.goto("http://example.com/").await;
    let source = browser.client.source().await.unwrap();
    assert!(
        source.contains("ERR_NAME_NOT_RESOLVED"),
        "example.com was reachable: {source:.300}"
    );
    browser.close().await.unwrap();
}

#[tokio::test]
async fn dropping_the_browser_leaves_no_process() {
    let Some(browser) = Browser::start().await.unwrap() else {
        return;
    };
    let dir = browser.temp_dir().to_owned();
    let marker = dir.to_string_lossy().into_owned();
    assert!(
        !processes_mentioning(&marker).unwrap().is_empty(),
        "Chromium is not running"
    );
    drop(browser);
    assert!(!dir.exists(), "{} was not removed", dir.display());
    let left = processes_mentioning(&marker).unwrap();
    assert!(left.is_empty(), "processes left running: {left:?}");
}

/// Command lines of running processes that contain `needle`.
fn processes_mentioning(needle: &str) -> std::io::Result<Vec<String>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(cmdline);
            }
        }
    }
    Ok(found)
}
