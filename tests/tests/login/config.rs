//! The daemon's config file as a user meets it: a mistake names the key
//! and its line and stops the daemon before it serves; `--print-config`
//! says where each value came from.

use portd_e2e::portd_command;

use super::*;

/// `portd --config FILE` with `text` in FILE, on a socket of its own; the
/// daemon must exit by itself.
fn portd_with_config(text: &str, extra: &[&str]) -> (Output, TestDaemon) {
    let block = PortBlock::reserve();
    let d = TestDaemon::new(block.range());
    let file = d.dir().join("portd.toml");
    fs::write(&file, text).unwrap();
    let mut cmd = portd_command(d.socket(), d.db(), block.range());
    cmd.arg("--config").arg(&file).args(extra);
    (run(&mut cmd), d)
}

#[test]
fn an_unknown_key_stops_the_daemon_naming_the_key_and_its_line() {
    let (out, d) = portd_with_config("grace = \"2s\"\n\ncolour = \"red\"\n", &[]);
    assert!(!out.status.success(), "portd started with an unknown key");
    let said = stderr(&out);
    assert!(said.contains("colour") && said.contains("line 3"), "{said}");
    assert!(
        said.contains("portd.toml"),
        "the error names the file: {said}"
    );
    assert!(
        !d.socket().exists(),
        "portd bound its socket before failing"
    );
}

#[test]
fn a_bad_value_stops_the_daemon_naming_the_key_and_its_line() {
    let (out, d) = portd_with_config("# ports\nrange = \"9100-9000\"\n", &[]);
    assert!(!out.status.success(), "portd started with a reversed range");
    let said = stderr(&out);
    assert!(said.contains("range") && said.contains("line 2"), "{said}");
    assert!(!d.socket().exists());

    let (out, _d) = portd_with_config("grace = \"soon\"\n", &[]);
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(said.contains("grace") && said.contains("line 1"), "{said}");
}

#[test]
fn print_config_names_the_source_of_every_value() {
    let (out, d) = portd_with_config(
        "grace = \"2s\"\nevent_retention = \"7d\"\n",
        &["--print-config"],
    );
    let said = success(&out, "portd --print-config");
    let file = d.dir().join("portd.toml");
    let line = |key: &str| {
        said.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} line in:\n{said}"))
            .to_string()
    };
    let range = line("range");
    assert!(
        range.contains(&format!("\"{}\"", d.range())) && range.ends_with("# flag"),
        "{range}"
    );
    let grace = line("grace");
    assert!(
        grace.contains("\"2s\"") && grace.ends_with(&format!("# file {}", file.display())),
        "{grace}"
    );
    let level = line("log_level");
    assert!(level.ends_with("# default"), "{level}");
    assert!(line("event_retention").contains("# file "), "{said}");
    let socket = line("# socket");
    assert!(
        socket.contains(d.socket().to_str().unwrap()) && socket.ends_with("# flag"),
        "{socket}"
    );
    assert!(
        !d.socket().exists(),
        "--print-config must not start serving"
    );
}

#[test]
fn print_config_shows_the_name_ranges_and_that_an_explicit_range_turns_the_defaults_off() {
    let text = "[name_ranges]\nweb = \"4000-4099\"\n\"docs-*\" = \"4100-4199\"\n";
    let line = |said: &str, pattern: &str| -> Option<String> {
        said.lines()
            .find(|l| l.starts_with(&format!("\"{pattern}\" = ")))
            .map(str::to_string)
    };

    // Without --range: the defaults, and the file's patterns over them.
    let block = PortBlock::reserve();
    let d = TestDaemon::new(block.range());
    let file = d.dir().join("portd.toml");
    fs::write(&file, text).unwrap();
    let mut cmd = Command::new(portd_e2e::portd_bin());
    for name in portd_e2e::daemon::SCRUBBED_ENV {
        cmd.env_remove(name);
    }
    cmd.env("XDG_CONFIG_HOME", d.dir().join("config"))
        .arg("--socket")
        .arg(d.socket())
        .arg("--db")
        .arg(d.db())
        .arg("--config")
        .arg(&file)
        .arg("--print-config");
    let said = success(&run(&mut cmd), "portd --print-config without --range");
    let from_file = format!("# file {}", file.display());
    for (pattern, range, source) in [
        ("web", "4000-4099", from_file.as_str()),
        ("docs-*", "4100-4199", from_file.as_str()),
        ("frontend", "3000-3999", "# default"),
        ("ui", "3000-3999", "# default"),
        ("api", "8000-8999", "# default"),
        ("backend", "8000-8999", "# default"),
    ] {
        let found = line(&said, pattern).unwrap_or_else(|| panic!("no {pattern} in:\n{said}"));
        assert!(
            found.contains(&format!("= \"{range}\"")) && found.ends_with(source),
            "{found}"
        );
    }
    assert!(!d.socket().exists(), "--print-config must not serve");

    // With --range: the defaults are off, and it says why; the file's stay.
    let (out, _d) = portd_with_config(text, &["--print-config"]);
    let said = success(&out, "portd --print-config with --range");
    assert!(
        line(&said, "api").is_none() && line(&said, "ui").is_none(),
        "{said}"
    );
    assert!(line(&said, "docs-*").is_some(), "{said}");
    let heading = said
        .lines()
        .find(|l| l.starts_with("[name_ranges]"))
        .unwrap_or_else(|| panic!("no [name_ranges] in:\n{said}"));
    assert!(
        heading.ends_with("defaults off: --range is set"),
        "{heading}"
    );
}
