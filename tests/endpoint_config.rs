//! `[daemon] api_token_file` as the config reads it: resolved like an API key file
//! (`${CREDENTIALS_DIRECTORY}`, relative to the config's folder, trimmed), validated with
//! messages that name the file and never the token, skipped by commands that read no
//! secret, and the warnings about an endpoint open to the network.

mod common;

use common::KEY;
use jellyfin_export_scheduler::config::{Config, Secrets};
use std::path::Path;

const GOOD: &str = "6f1c0e2d9b8a7f3e4d5c6b7a8f9e0d1c";

fn config_text(daemon: &str) -> String {
    format!(
        "[daemon]\nstate_dir = \"/tmp/x\"\n{daemon}\n\n[[servers]]\nname = \"s\"\nurl = \"http://127.0.0.1:9\"\napi_key = \"{KEY}\"\nschedule = \"0 0 3 * * *\"\ntimezone = \"UTC\"\n"
    )
}

/// Load `daemon` lines from a config file in `dir` with these variables.
fn load(
    dir: &Path,
    daemon: &str,
    vars: &[(&str, &str)],
    secrets: Secrets,
) -> Result<Config, String> {
    let path = dir.join("config.toml");
    std::fs::write(&path, config_text(daemon)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    common::config::load(&path, vars, secrets)
}

#[test]
fn the_token_file_is_read_like_an_api_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("endpoint-token"), format!("  {GOOD}\n")).unwrap();
    std::fs::write(dir.path().join("relative-token"), GOOD).unwrap();
    let vars = [("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap())];
    for line in [
        "api_token_file = \"${CREDENTIALS_DIRECTORY}/endpoint-token\"",
        "api_token_file = \"$CREDENTIALS_DIRECTORY/endpoint-token\"",
        "api_token_file = \"relative-token\"",
    ] {
        let c = load(dir.path(), line, &vars, Secrets::Resolve).unwrap();
        let token = c.daemon.api_token.as_ref().expect(line);
        assert_eq!(token.expose(), GOOD, "{line}");
        assert!(!format!("{c:?}").contains(GOOD), "Debug shows the token");
        assert!(c.warnings.is_empty(), "{line}: {:?}", c.warnings);
    }
    let c = load(dir.path(), "", &vars, Secrets::Resolve).unwrap();
    assert!(c.daemon.api_token.is_none());

    // Commands that read no secret don't read it, nor need its variable.
    let c = load(
        dir.path(),
        "api_token_file = \"${CREDENTIALS_DIRECTORY}/missing\"",
        &[],
        Secrets::Skip,
    )
    .unwrap();
    let token = c.daemon.api_token.expect("named, not read");
    assert!(!token.is_resolved());
}

#[test]
fn a_bad_token_file_is_one_line_naming_the_file_never_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let cases = [
        (write("empty", "\n\n"), "is empty".to_owned()),
        (
            write("spaces", "correct horse battery staple 42"),
            "has characters a Bearer token cannot carry".to_owned(),
        ),
        (
            write("quote", "abcdefghijklmnop\"qrstuvwxyz"),
            "has characters a Bearer token cannot carry".to_owned(),
        ),
        (
            write("long", &"a".repeat(2000)),
            "has 2000 characters; use at most 1024".to_owned(),
        ),
        (
            dir.path().join("absent").display().to_string(),
            "cannot read API token file".to_owned(),
        ),
    ];
    // 16 characters is the minimum: one less is refused.
    let sixteen = write("sixteen", "s3cr3t-but-short");
    assert!(
        load(
            dir.path(),
            &format!("api_token_file = \"{sixteen}\""),
            &[],
            Secrets::Resolve
        )
        .is_ok()
    );
    let fifteen = write("fifteen", "s3cr3t-but-shor");
    let err = load(
        dir.path(),
        &format!("api_token_file = \"{fifteen}\""),
        &[],
        Secrets::Resolve,
    )
    .unwrap_err();
    assert!(err.contains("has 15 characters; use at least 16"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");
    for (path, want) in &cases {
        let err = load(
            dir.path(),
            &format!("api_token_file = \"{path}\""),
            &[],
            Secrets::Resolve,
        )
        .unwrap_err();
        assert!(err.contains("daemon.api_token_file"), "{err}");
        assert!(err.contains(want.as_str()), "{path}: {err}");
        if !path.ends_with("absent") {
            assert!(err.contains(path.as_str()), "the file is named: {err}");
            assert!(err.contains("openssl rand -hex 32"), "what to do: {err}");
        }
        for secret in ["horse", "abcdefghijklmnop", "aaaaaaaaaa"] {
            assert!(!err.contains(secret), "the token shows in: {err}");
        }
    }
    // An unset ${CREDENTIALS_DIRECTORY} says where it comes from.
    let err = load(
        dir.path(),
        "api_token_file = \"${CREDENTIALS_DIRECTORY}/endpoint-token\"",
        &[],
        Secrets::Resolve,
    )
    .unwrap_err();
    assert!(err.contains("LoadCredential="), "{err}");
    // Only a file gives it: no inline token, no variable.
    for line in [
        format!("api_token = \"{GOOD}\""),
        "api_token_env = \"TOKEN\"".to_owned(),
    ] {
        let err = load(dir.path(), &line, &[], Secrets::Resolve).unwrap_err();
        assert!(err.contains("unknown key"), "{line}: {err}");
    }
}

#[test]
fn an_open_endpoint_without_a_token_or_a_token_without_an_endpoint_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), GOOD).unwrap();
    let warnings = |daemon: &str| {
        load(dir.path(), daemon, &[], Secrets::Resolve)
            .unwrap()
            .warnings
            .join("\n")
    };
    let open = warnings("listen = \"0.0.0.0:9810\"");
    assert!(
        open.contains("is not a loopback address and no api_token_file is set")
            && open.contains("127.0.0.1:9810:9810"),
        "{open}"
    );
    assert_eq!(
        warnings("listen = \"0.0.0.0:9810\"\napi_token_file = \"token\""),
        "",
        "a token makes a network-facing endpoint fine"
    );
    assert_eq!(warnings("listen = \"[::1]:9810\""), "");
    assert_eq!(
        warnings("listen = \"127.0.0.1:9810\"\napi_token_file = \"token\""),
        "",
        "a token on loopback is allowed: it keeps other local users out"
    );
    let off = warnings("listen = \"\"\napi_token_file = \"token\"");
    assert!(off.contains("the token guards nothing"), "{off}");
}
