//! Headless Chromium, driven by playwright-core, on a real Vite dev server
//! behind the proxy: the page loads at `http://web.LABEL.localhost:PORT/`,
//! Vite's hot-reload WebSocket connects through the proxy (not around it),
//! and an edit to a source file reaches the page without a reload.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use portd_e2e::procs::cmdline;
use portd_e2e::skip::{require_node_package, require_system_tool};

use super::*;

/// The browser's side: loads the page, waits for Vite's "connected", marks
/// `window`, says `ready`; then waits for the edit to show and says `done`
/// with the mark (a reload would have lost it) and the WebSockets seen.
const BROWSER_JS: &str = r##"
const { chromium } = require(process.env.PLAYWRIGHT_CORE);
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");
(async () => {
  const context = await chromium.launchPersistentContext(process.env.PROFILE, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = context.pages()[0] || await context.newPage();
    const sockets = [], logs = [];
    let loads = 0;
    page.on("websocket", (ws) => sockets.push(ws.url()));
    page.on("console", (m) => logs.push(m.text()));
    page.on("load", () => loads++);
    const response = await page.goto(process.env.URL);
    await page.waitForFunction((want) => {
      const el = document.querySelector("#msg");
      return el && el.textContent === want;
    }, "before", { timeout: 30000 });
    const deadline = Date.now() + 30000;
    while (!logs.some((l) => l.includes("[vite] connected")) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    await page.evaluate(() => { window.portdMarker = "kept"; });
    say({ ready: true, status: response.status(), sockets, logs });
    await page.waitForFunction((want) => {
      const el = document.querySelector("#msg");
      return el && el.textContent === want;
    }, "after", { timeout: 30000 });
    const marker = await page.evaluate(() => window.portdMarker);
    say({ done: true, marker, loads, sockets, logs });
  } finally {
    await context.close();
  }
})().catch((e) => { say({ error: String((e && e.stack) || e) }); process.exit(1); });
"##;

const INDEX_HTML: &str = "<!doctype html>\n<html><head><title>through portd</title></head>\n\
<body><p id=\"msg\">loading</p><script type=\"module\" src=\"/main.js\"></script></body></html>\n";

const MAIN_JS: &str = "import { msg } from './msg.js';\n\
document.querySelector('#msg').textContent = msg;\n\
if (import.meta.hot) {\n\
  import.meta.hot.accept('./msg.js', (next) => {\n\
    document.querySelector('#msg').textContent = next.msg;\n\
  });\n\
}\n";

/// Chromium's processes run with the test's own profile directory on
/// their command line; any left when the test ends (it failed half way)
/// are killed. The test started them, through node and playwright.
struct Browsers(PathBuf);

impl Drop for Browsers {
    fn drop(&mut self) {
        let profile = self.0.to_string_lossy().into_owned();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
            let ours = cmdline(pid as u32).is_some_and(|words| {
                words.iter().any(|w| w.contains(&profile)) && words[0].contains("chromium")
            });
            if ours {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

#[test]
fn chromium_loads_a_vite_page_through_the_proxy_and_hot_reload_works_over_its_websocket() {
    let Some(vite) = require_node_package("vite") else {
        return;
    };
    let Some(playwright) = require_node_package("playwright-core") else {
        return;
    };
    let Some(node) = require_system_tool("node", "nodejs") else {
        return;
    };
    if require_system_tool("chromium", "chromium").is_none() {
        return;
    }
    let p = Proxied::start();
    let project = p.project("storefront");
    std::fs::write(project.join("index.html"), INDEX_HTML).unwrap();
    std::fs::write(project.join("main.js"), MAIN_JS).unwrap();
    std::fs::write(project.join("msg.js"), "export const msg = 'before';\n").unwrap();

    let vite_js = vite.join("bin/vite.js");
    let _vite = p.serve(
        &project,
        "web",
        &[
            node.as_os_str(),
            vite_js.as_os_str(),
            "--port".as_ref(),
            "{port}".as_ref(),
            "--strictPort".as_ref(),
            "--host".as_ref(),
            "127.0.0.1".as_ref(),
        ],
    );

    let url = format!("http://{}/", p.host("web", "storefront"));
    let profile = p.scratch.path("chromium-profile");
    let _browsers = Browsers(profile.clone());
    let script = p.scratch.path("browser.js");
    std::fs::write(&script, BROWSER_JS).unwrap();
    let mut browser = Command::new(&node);
    browser
        .arg(&script)
        .env("PLAYWRIGHT_CORE", &playwright)
        .env("PROFILE", &profile)
        .env("URL", &url)
        .env_remove(portd_api::LEASE_ENV)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut browser = ChildGuard::spawn(&mut browser);
    let said = lines(browser.child_mut().stdout.take().unwrap());

    let ready = next_line(&said, "ready");
    assert_eq!(ready["status"], 200, "{ready}");
    let sockets: Vec<&str> = ready["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    let through = format!("ws://{}/", p.host("web", "storefront"));
    assert!(
        !sockets.is_empty() && sockets.iter().all(|s| s.starts_with(&through)),
        "Vite's WebSocket did not go through the proxy ({through}): {ready}"
    );
    assert!(
        ready["logs"].to_string().contains("[vite] connected"),
        "Vite's client never said it connected: {ready}"
    );

    edit(&project.join("msg.js"), "export const msg = 'after';\n");
    let done = next_line(&said, "done");
    assert_eq!(done["marker"], "kept", "the page was reloaded: {done}");
    assert_eq!(done["loads"], 1, "the page loaded more than once: {done}");
    assert!(
        done["logs"].to_string().contains("[vite] hot updated"),
        "no hot update: {done}"
    );
    assert!(browser.wait_exit(DEADLINE).is_some_and(|s| s.success()));
}

/// Rewrites `path` in place, as an editor saves it.
fn edit(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// The child's stdout, line by line, on a thread.
fn lines(stdout: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The next JSON line, which must carry `key` (an `error` line fails the
/// test with the browser's own words).
fn next_line(said: &mpsc::Receiver<String>, key: &str) -> Value {
    let line = said
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("no '{key}' from the browser within 60 s: {e}"));
    let value: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert!(value.get(key).is_some(), "expected '{key}', got {value}");
    value
}
