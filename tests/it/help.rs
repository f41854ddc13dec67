//! Help that teaches: every subcommand's `--help` shows examples, and the shell completions and man
//! pages generated from the command definition work in bash and render with groff, without a config.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::cli::bin;

/// Runs offsite with no config anywhere it could look, and returns (exit code, stdout, stderr).
fn offsite(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env("OFFSITE_CONFIG", cwd.join("no-such-config.yaml"))
        .stdin(Stdio::null())
        .output()
        .expect("running offsite");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The subcommands `help` lists under "Commands:", without `help` itself.
fn listed_subcommands(help: &str) -> Vec<String> {
    help.split("\nCommands:\n")
        .nth(1)
        .map(|rest| {
            rest.lines()
                .take_while(|l| l.starts_with("  "))
                // A name starts at column 2; a wrapped description is indented further.
                .filter(|l| !l.starts_with("   "))
                .filter_map(|l| l.split_whitespace().next())
                .filter(|n| *n != "help")
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Every subcommand at every depth, walked through the binary's own help, each as its words.
fn all_subcommands(cwd: &Path) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let (code, help, err) = offsite(&args, cwd);
        assert_eq!(code, 0, "offsite {args:?}: {err}");
        for sub in listed_subcommands(&help) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p.clone());
            out.push(p);
        }
    }
    out
}

#[test]
fn every_subcommand_help_shows_an_example() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let subs = all_subcommands(tmp.path());
    let names: Vec<String> = subs.iter().map(|p| p.join(" ")).collect();
    for must in [
        "push",
        "office",
        "config check",
        "masking check",
        "completions",
        "man",
    ] {
        assert!(
            names.contains(&must.to_string()),
            "{must} not walked: {names:?}"
        );
    }
    for path in &subs {
        let name = path.join(" ");
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let (code, help, err) = offsite(&args, tmp.path());
        assert_eq!(code, 0, "offsite {name} --help: {err}");
        let examples = help
            .split("\nExamples:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("offsite {name} --help has no Examples block:\n{help}"));
        // At least one example line runs this very subcommand.
        let runs_it = examples
            .lines()
            .take_while(|l| l.starts_with("  "))
            .any(|l| l.contains("offsite ") && l.contains(&format!(" {name}")));
        assert!(
            runs_it,
            "no example of `offsite {name}` runs it:\n{examples}"
        );
    }
}

#[test]
fn bash_completion_parses_and_completes_subcommands() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (code, script, err) = offsite(&["completions", "bash"], tmp.path());
    assert_eq!(code, 0, "{err}");
    let file = tmp.path().join("offsite.bash");
    std::fs::write(&file, &script).expect("writing the script");
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("bash -n");
    assert!(
        syntax.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&syntax.stderr)
    );

    // Complete the way bash does on TAB: the function registered for `offsite`, with the words.
    let complete = |line: &str| -> Vec<String> {
        let probe = format!(
            r#"source {file}
spec=$(complete -p offsite) || exit 9
fn=$(sed -n 's/.*-F \([^ ]*\) .*/\1/p' <<<"$spec")
COMP_WORDS=({line})
[[ "{line}" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="{line}"
COMP_POINT=${{#COMP_LINE}}
"$fn" offsite "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
            file = file.display()
        );
        let out = Command::new("bash")
            .args(["-c", &probe])
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "completing {line:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let mut got = complete("offsite pu");
    got.sort();
    assert_eq!(got, ["pull", "push"]);
    let got = complete("offsite office --");
    assert!(got.contains(&"--host".to_string()), "{got:?}");
    assert!(got.contains(&"--no-prune".to_string()), "{got:?}");

    for shell in ["zsh", "fish"] {
        let (code, script, err) = offsite(&["completions", shell], tmp.path());
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(
            script.contains("offsite") && script.contains("push"),
            "{shell}"
        );
    }
    let (code, _, err) = offsite(&["completions", "tcsh"], tmp.path());
    assert_eq!(code, 2, "an unknown shell is a usage error: {err}");
}

/// Renders a man page to text with whichever of man and groff is installed.
fn render(page: &Path) -> String {
    let out = if Path::new("/usr/bin/man").exists() {
        Command::new("man")
            .arg("-l")
            .arg(page)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
    } else {
        Command::new("groff")
            .args(["-man", "-Tutf8"])
            .arg(page)
            .output()
    }
    .expect("man or groff is installed: run scripts/services");
    assert!(
        out.status.success(),
        "rendering {}: {}",
        page.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // Strip overstriking (bold/underline as char-backspace-char) from either renderer.
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut clean = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            clean.pop();
        } else {
            clean.push(c);
        }
    }
    clean
}

#[test]
fn man_pages_render_and_name_every_subcommand() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (code, page, err) = offsite(&["man"], tmp.path());
    assert_eq!(code, 0, "{err}");
    let file = tmp.path().join("offsite.1");
    std::fs::write(&file, &page).expect("writing the page");
    let text = render(&file);
    assert!(text.contains("NAME") && text.contains("SYNOPSIS"), "{text}");
    let top: Vec<String> = all_subcommands(tmp.path())
        .into_iter()
        .filter(|p| p.len() == 1)
        .map(|p| p[0].clone())
        .collect();
    assert!(top.len() > 15, "{top:?}");
    for sub in &top {
        assert!(
            text.contains(&format!("offsite-{sub}(1)"))
                || text.contains(&format!("\n       {sub}")),
            "offsite(1) does not name {sub}:\n{text}"
        );
    }

    let dir = tmp.path().join("man1");
    let (code, listed, err) = offsite(&["man", "--dir", dir.to_str().expect("utf-8")], tmp.path());
    assert_eq!(code, 0, "{err}");
    assert!(dir.join("offsite.1").is_file());
    for sub in &top {
        let page = dir.join(format!("offsite-{sub}.1"));
        assert!(
            page.is_file(),
            "{} missing; listed:\n{listed}",
            page.display()
        );
        assert!(listed.contains(&page.display().to_string()), "{listed}");
    }
    let push = render(&dir.join("offsite-push.1"));
    assert!(
        push.contains("--full") && push.contains("offsite push --full --wait"),
        "{push}"
    );
    assert!(dir.join("offsite-config-check.1").is_file());
}
