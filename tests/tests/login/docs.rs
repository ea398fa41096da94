//! `portctl completions` and `portctl man`: generated from the clap
//! definitions, so every verb the binary has is in them.

use super::*;

/// The verbs `portctl --help` lists (without `help`).
fn verbs() -> Vec<String> {
    let help = success(&run(portctl().arg("--help")), "portctl --help");
    let section = help
        .split("Commands:")
        .nth(1)
        .and_then(|rest| rest.split("Options:").next())
        .expect("a Commands section");
    section
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| *v != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completion_loads_and_completes_every_verb() {
    let script = success(
        &run(portctl().args(["completions", "bash"])),
        "completions bash",
    );
    let home = Home::new();
    let file = home.path("portctl.bash");
    fs::write(&file, &script).unwrap();
    // Load it, then complete `portctl <TAB>` the way bash would.
    let probe = format!(
        "source {}\ncomplete -p portctl\nCOMP_WORDS=(portctl '')\nCOMP_CWORD=1\nCOMP_LINE='portctl '\nCOMP_POINT=8\n_portctl portctl '' portctl\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        file.display()
    );
    let out = run(Command::new("bash").args(["--norc", "-c", &probe]));
    let said = success(&out, "bash with the completion loaded");
    assert!(said.starts_with("complete "), "{said}");
    let offered: Vec<&str> = said.lines().skip(1).collect();
    for verb in verbs() {
        assert!(
            offered.contains(&verb.as_str()),
            "`{verb}` is not offered: {offered:?}"
        );
    }
}

#[test]
fn zsh_and_fish_completions_name_every_verb() {
    for shell in ["zsh", "fish"] {
        let script = success(
            &run(portctl().args(["completions", shell])),
            &format!("completions {shell}"),
        );
        for verb in verbs() {
            assert!(script.contains(&verb), "{shell}: no `{verb}`");
        }
    }
    let out = run(portctl().args(["completions", "tcsh"]));
    assert_eq!(out.status.code(), Some(2), "an unknown shell is bad usage");
}

#[test]
fn man_writes_one_page_per_verb_and_prints_the_main_page() {
    let home = Home::new();
    let dir = home.path("man/man1");
    let said = success(
        &run(portctl().args(["man", "--dir"]).arg(&dir)),
        "portctl man --dir",
    );
    let mut expected = vec!["portctl.1".to_string()];
    expected.extend(verbs().iter().map(|v| format!("portctl-{v}.1")));
    for page in &expected {
        let path = dir.join(page);
        assert!(
            said.contains(&format!("wrote {}\n", path.display())),
            "{said}"
        );
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{page}: {e}"));
        let name = page.trim_end_matches(".1");
        assert!(
            text.contains(&format!(".TH {name} 1")),
            "{page} has no title line:\n{text}"
        );
    }
    let mut written: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    expected.sort();
    assert_eq!(written, expected);

    let install = fs::read_to_string(dir.join("portctl-install.1")).unwrap();
    assert!(install.contains("no\\-enable"), "{install}");

    // Without --dir: the main page on stdout, as written to the file.
    let page = success(&run(portctl().arg("man")), "portctl man");
    assert_eq!(page, fs::read_to_string(dir.join("portctl.1")).unwrap());

    // groff reads every page without a warning.
    if let Some(groff) = require_system_tool("groff", "groff-base") {
        for page in &expected {
            let out = run(Command::new(&groff)
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(dir.join(page)));
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "groff on {page}: {}",
                stderr(&out)
            );
        }
    }
}
