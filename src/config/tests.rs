use super::*;

fn parse(text: &str) -> Result<Config> {
    Config::parse(text, Path::new("/etc/offsite/config.yaml"))
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let err = parse("host: a\nstore:\n  local: /x\n  bukket: y\n").unwrap_err();
    let msg = format!("{err:#}");
    assert!(crate::error::is_usage(&err));
    assert!(msg.contains("/etc/offsite/config.yaml"), "{msg}");
    assert!(msg.contains("bukket"), "{msg}");
    assert!(msg.contains("line 4"), "{msg}");
}

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let c = parse("host: a\nstore: { local: store }\nencryption: { recipients: [k/o.asc] }\ntrees: [{name: www, path: www, volume_size: 2MiB}]\n").unwrap();
    match &c.store {
        StoreConfig::Local(p) => assert_eq!(p, Path::new("/etc/offsite/store")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.encryption.unwrap().recipients[0],
        Path::new("/etc/offsite/k/o.asc")
    );
    assert_eq!(c.trees[0].volume_size, 2 << 20);
}

#[test]
fn passwords_in_urls_are_redacted() {
    let c = parse(
        "host: a\nstore: { local: s }\npostgres: [{ url: 'postgres://u:s3cret@db:5432/' }]\n",
    )
    .unwrap();
    assert_eq!(c.postgres[0].password.as_ref().unwrap().expose(), "s3cret");
    assert!(!c.postgres[0].url.contains("s3cret"));
    let printed = serde_json::to_string(&c).unwrap();
    assert!(!printed.contains("s3cret"), "{printed}");
}

#[test]
fn bad_values_are_usage_errors() {
    for text in [
        "store: { local: a, s3: { bucket: b } }\nhost: a\n",
        "host: a\nstore: { local: s }\ncompression: { algorithm: lz4 }\n",
        "host: a\nstore: { local: s }\nparallel: 0\n",
        "host: 'a/b'\nstore: { local: s }\n",
        "host: a\nstore: { local: s }\ntrees: [{name: w, path: /w, volume_size: 1KiB}]\n",
        "host: a\nstore: { local: s }\npostgres: [{ url: 'not a url' }]\n",
    ] {
        let err = parse(text).unwrap_err();
        assert!(crate::error::is_usage(&err), "{text}: {err:#}");
    }
}

#[test]
fn the_example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let c = Config::parse(&text, &path).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(c.host, "web1");
    let office = c.office.unwrap();
    assert_eq!(office.refresh[0].database, "shop_dev");
    assert_eq!(office.retention.unwrap().keep_daily, 14);
}

#[test]
fn password_query_parameters_are_secrets_too() {
    let (url, pw) =
        clean_url("postgres://u@db:5432/?sslmode=require&password=QuerySecret42").unwrap();
    assert!(!url.contains("QuerySecret42"), "{url}");
    assert!(url.contains("sslmode=require"), "{url}");
    assert_eq!(pw.unwrap().expose(), "QuerySecret42");
    let err = clean_url("postgres://u:Hidden9@[bad").unwrap_err();
    assert!(!format!("{err:#}").contains("Hidden9"), "{err:#}");
}

#[test]
fn scrub_days_defaults_to_30_and_refuses_0() {
    let c = parse("host: a\nstore: { local: s }\noffice: { offsite_dir: o }\n").unwrap();
    assert_eq!(c.office().unwrap().scrub_days, 30);
    let c = parse("host: a\nstore: { local: s }\noffice: { scrub_days: 7 }\n").unwrap();
    assert_eq!(c.office().unwrap().scrub_days, 7);
    let err = parse("host: a\nstore: { local: s }\noffice: { scrub_days: 0 }\n").unwrap_err();
    assert!(crate::error::is_usage(&err));
    assert!(format!("{err:#}").contains("office.scrub_days"), "{err:#}");
}

#[test]
fn download_part_size_defaults_to_64mib_and_refuses_less_than_1mib() {
    let c = parse("host: a\nstore: { local: s }\noffice: { offsite_dir: o }\n").unwrap();
    assert_eq!(c.office().unwrap().download_part_size, 64 << 20);
    let c = parse("host: a\nstore: { local: s }\noffice: { download_part_size: 8MiB }\n").unwrap();
    assert_eq!(c.office().unwrap().download_part_size, 8 << 20);
    for bad in ["512KiB", "6GiB", "lots"] {
        let err = parse(&format!(
            "host: a\nstore: {{ local: s }}\noffice: {{ download_part_size: {bad} }}\n"
        ))
        .unwrap_err();
        assert!(crate::error::is_usage(&err), "{bad}");
        assert!(
            format!("{err:#}").contains("office.download_part_size"),
            "{err:#}"
        );
    }
}

#[test]
fn abandon_after_defaults_to_48h_and_refuses_less_than_an_hour() {
    let hours = |c: &Config| c.office().unwrap().abandon_after.as_secs() / 3600;
    let c = parse("host: a\nstore: { local: s }\noffice: { offsite_dir: o }\n").unwrap();
    assert_eq!(hours(&c), 48);
    let c = parse("host: a\nstore: { local: s }\noffice: { abandon_after: 3D }\n").unwrap();
    assert_eq!(hours(&c), 72);
    // A push still writing would lose its objects to prune.
    let err = parse("host: a\nstore: { local: s }\noffice: { abandon_after: 10m }\n").unwrap_err();
    assert!(crate::error::is_usage(&err));
    assert!(
        format!("{err:#}").contains("office.abandon_after"),
        "{err:#}"
    );
}

#[test]
fn stall_timeouts_default_and_parse() {
    let c = parse("host: a\nstore: { s3: { bucket: b } }\npostgres: [{ url: 'postgres://u@db/' }]\nmysql: [{ url: 'mysql://u@db', dump_stall_timeout: 5m }]\n").unwrap();
    match &c.store {
        StoreConfig::S3(s) => assert_eq!(s.stall_timeout, DEFAULT_STALL_TIMEOUT),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.postgres[0].dump_stall_timeout, DEFAULT_DUMP_STALL_TIMEOUT);
    assert_eq!(
        c.mysql[0].dump_stall_timeout,
        std::time::Duration::from_secs(300)
    );
    let c = parse("host: a\nstore: { s3: { bucket: b, stall_timeout: 3s } }\n").unwrap();
    match &c.store {
        StoreConfig::S3(s) => assert_eq!(s.stall_timeout, std::time::Duration::from_secs(3)),
        other => panic!("{other:?}"),
    }
    let err = parse("host: a\nstore: { s3: { bucket: b, stall_timeout: 0s } }\n").unwrap_err();
    assert!(
        format!("{err:#}").contains("stall_timeout must be at least 1s"),
        "{err:#}"
    );
    let err = parse("host: a\nstore: { local: s }\npostgres: [{ url: 'postgres://u@db/', dump_stall_timeout: 10 }]\n").unwrap_err();
    assert!(
        format!("{err:#}").contains("postgres[0].dump_stall_timeout"),
        "{err:#}"
    );
}

#[test]
fn metrics_file_resolves_and_ping_urls_are_checked_and_never_printed() {
    let c = parse(
        "host: a\nstore: { local: s }\nmetrics_file: textfile/offsite.prom\nnotify: { ping: 'https://hc.example/ping/tok3n' }\noffice: { notify: { ping: 'https://hc.example/ping/0ffice-tok3n' } }\n",
    )
    .unwrap();
    assert_eq!(
        c.metrics_file.as_deref(),
        Some(Path::new("/etc/offsite/textfile/offsite.prom"))
    );
    assert_eq!(
        c.notify.ping.as_deref(),
        Some("https://hc.example/ping/tok3n")
    );
    let printed = serde_json::to_string(&c).unwrap();
    assert!(!printed.contains("tok3n"), "{printed}");
    assert!(printed.contains("https://hc.example/***"), "{printed}");

    let err =
        parse("host: a\nstore: { local: s }\nnotify: { ping: 'hc.example/x' }\n").unwrap_err();
    assert!(crate::error::is_usage(&err));
    assert!(format!("{err:#}").contains("notify.ping"), "{err:#}");
    let err = parse("host: a\nstore: { local: s }\noffice: { notify: { ping: 'ftp://h/x' } }\n")
        .unwrap_err();
    assert!(format!("{err:#}").contains("office.notify.ping"), "{err:#}");
}

#[test]
fn decryption_key_and_host_certs_take_one_file_or_a_list() {
    let c = parse("host: o\nstore: { local: s }\noffice: { decryption_key: k/o.asc, hosts: { web1: k/w.asc } }\n").unwrap();
    let o = c.office.as_ref().unwrap();
    assert_eq!(
        o.decryption_key.0,
        vec![PathBuf::from("/etc/offsite/k/o.asc")]
    );
    // One file prints as one path, as before.
    let printed = serde_json::to_value(o).unwrap();
    assert_eq!(printed["decryption_key"], "/etc/offsite/k/o.asc");
    assert_eq!(printed["hosts"]["web1"], "/etc/offsite/k/w.asc");

    let c = parse("host: o\nstore: { local: s }\noffice: { decryption_key: [k/new.asc, k/old.asc], hosts: { web1: [k/w2.asc, k/w.asc] } }\n").unwrap();
    let o = c.office.as_ref().unwrap();
    assert_eq!(
        o.decryption_key.0,
        vec![
            PathBuf::from("/etc/offsite/k/new.asc"),
            PathBuf::from("/etc/offsite/k/old.asc")
        ]
    );
    assert_eq!(o.hosts["web1"].len(), 2);
    assert_eq!(
        serde_json::to_value(o).unwrap()["decryption_key"][1],
        "/etc/offsite/k/old.asc"
    );

    let err = parse("host: o\nstore: { local: s }\noffice: { decryption_key: [] }\n").unwrap_err();
    assert!(crate::error::is_usage(&err));
    assert!(
        format!("{err:#}").contains("office.decryption_key"),
        "{err:#}"
    );
}
